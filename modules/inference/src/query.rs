//! JSON queries: `/kiln.inference.v1.Query/Models` (every registered model
//! with its current price) and `/kiln.inference.v1.Query/Prices` (each
//! model's price and floor).

use kiln_framework::query::json;
use kiln_framework::TxResult;
use kiln_state::StateRead;
use serde_json::json as j;

use crate::state::InferenceExt;

pub const MODELS_PATH: &str = "/kiln.inference.v1.Query/Models";
pub const PRICES_PATH: &str = "/kiln.inference.v1.Query/Prices";

pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    _data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        MODELS_PATH => models(state),
        PRICES_PATH => prices(state),
        _ => return None,
    };
    Some(result)
}

fn models<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<u8>> {
    let mut out = Vec::new();
    for m in state.models()? {
        let price = state.price(&m.id)?;
        out.push(j!({
            "id": m.id,
            "gguf_sha256": m.gguf_sha256,
            "tokenizer_sha256": m.tokenizer_sha256,
            "validation_threshold_micro": m.validation_threshold_micro,
            "price_floor_pkiln": m.price_floor_pkiln,
            "price_pkiln": price,
        }));
    }
    json(&out)
}

fn prices<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<u8>> {
    let mut out = Vec::new();
    for m in state.models()? {
        out.push(j!({
            "model": m.id,
            "price_pkiln": state.price(&m.id)?,
            "price_floor_pkiln": m.price_floor_pkiln,
        }));
    }
    json(&out)
}
