//! `app_state.inference`: params and the models registered at genesis (the
//! devnet registers SmolLM2-135M-Instruct), and the component's end-of-block
//! price step.

use kiln_framework::{
    BlockInfo, Component, EpochInfo, Event, GenesisCtx, StateReadExt, StateWriteExt, TxError,
    TxResult,
};
use kiln_state::StateWrite;

use crate::keys;
use crate::params::InferenceParams;
use crate::state::{InferenceExt, Model};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceGenesis {
    #[serde(default)]
    pub params: InferenceParams,
    #[serde(default)]
    pub models: Vec<ModelSpec>,
}

/// A genesis model: the registry record and its starting price.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub id: String,
    pub gguf_sha256: String,
    pub tokenizer_sha256: String,
    /// Millionths (SPEC's 0.98 is 980 000).
    #[serde(default = "default_threshold")]
    pub validation_threshold_micro: u64,
    pub price_floor_pkiln: u64,
    /// The first block's price (default: the floor).
    #[serde(default)]
    pub initial_price_pkiln: Option<u64>,
}

fn default_threshold() -> u64 {
    980_000
}

/// Longest model id.
pub const MAX_MODEL_ID_LEN: usize = 64;

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ModelSpec {
    pub fn model(&self) -> Model {
        Model {
            id: self.id.clone(),
            gguf_sha256: self.gguf_sha256.clone(),
            tokenizer_sha256: self.tokenizer_sha256.clone(),
            validation_threshold_micro: self.validation_threshold_micro,
            price_floor_pkiln: self.price_floor_pkiln,
        }
    }

    pub fn initial_price(&self) -> u64 {
        self.initial_price_pkiln.unwrap_or(self.price_floor_pkiln)
    }

    /// The checks a model passes to be registered (at genesis or by governance).
    pub fn validate(&self) -> Result<(), String> {
        let m = self;
        if m.id.is_empty()
            || m.id.len() > MAX_MODEL_ID_LEN
            || !m
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(format!(
                "id must be 1..={MAX_MODEL_ID_LEN} characters of a-z, 0-9, '.', '_' or '-'"
            ));
        }
        if !is_sha256_hex(&m.gguf_sha256) || !is_sha256_hex(&m.tokenizer_sha256) {
            return Err("gguf_sha256 and tokenizer_sha256 must be 64 lowercase hex digits".into());
        }
        if m.validation_threshold_micro == 0 || m.validation_threshold_micro > 1_000_000 {
            return Err(format!(
                "validation_threshold_micro must be in 1..=1000000, got {}",
                m.validation_threshold_micro
            ));
        }
        if m.price_floor_pkiln == 0 {
            return Err("price_floor_pkiln must be at least 1 (inference is never free)".into());
        }
        if m.initial_price() < m.price_floor_pkiln {
            return Err(format!(
                "initial_price_pkiln {} is below the floor {}",
                m.initial_price(),
                m.price_floor_pkiln
            ));
        }
        Ok(())
    }
}

impl InferenceGenesis {
    pub fn validate(&self) -> Result<(), String> {
        self.params.validate()?;
        let mut ids = std::collections::BTreeSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let at = format!("inference.models[{i}] ({})", m.id);
            m.validate().map_err(|e| format!("{at}: {e}"))?;
            if !ids.insert(m.id.as_str()) {
                return Err(format!("{at}: registered twice"));
            }
        }
        Ok(())
    }
}

pub struct Inference;

impl Component for Inference {
    const NAME: &'static str = "inference";
    type Genesis = InferenceGenesis;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &InferenceGenesis,
        _ctx: &GenesisCtx,
    ) -> TxResult<()> {
        genesis.validate().map_err(TxError::invalid_request)?;
        state.put_value(keys::PARAMS.to_vec(), &genesis.params)?;
        for m in &genesis.models {
            state.put_value(keys::model(&m.id), &m.model())?;
            state.put_u64(keys::price(&m.id), m.initial_price());
        }
        // The genesis hosts with weight serve from the first block.
        crate::settle::rebuild_serving_sets(state, 0)
    }

    /// Timeouts, dropped early finishes, pruning and the draw window's block
    /// hashes ([`crate::handler::end_block`]); then each model's price takes
    /// one step toward the utilisation band ([`crate::price::next_price`])
    /// from the tokens the block's requests took, and the block's count is
    /// cleared.
    fn end_block<S: StateWrite>(
        state: &mut S,
        block: &BlockInfo,
        _epoch: &EpochInfo,
    ) -> TxResult<Vec<Event>> {
        let mut ctx = kiln_framework::ExecCtx::new(block);
        crate::handler::end_block(state, &mut ctx)?;
        let mut events = ctx.events;
        let params = state.inference_params()?;
        for model in state.models()? {
            let used_key = keys::used(&model.id);
            let used = state.get_u64(&used_key)?;
            if used.is_some() {
                state.delete_raw(used_key);
            }
            let price = state.price(&model.id)?;
            let next = crate::price::next_price(
                price,
                model.price_floor_pkiln,
                used.unwrap_or(0),
                &params,
            );
            if next != price {
                state.put_u64(keys::price(&model.id), next);
                events.push(
                    Event::new("kiln.inference.v1.EventPriceChanged")
                        .attr("model", &model.id)
                        .attr("height", block.height)
                        .attr("price_pkiln", next)
                        .attr("previous_pkiln", price)
                        .attr("used_tokens", used.unwrap_or(0)),
                );
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ModelSpec {
        ModelSpec {
            id: "smollm2-135m".into(),
            gguf_sha256: "b".repeat(64),
            tokenizer_sha256: "c".repeat(64),
            validation_threshold_micro: 980_000,
            price_floor_pkiln: 1_000,
            initial_price_pkiln: None,
        }
    }

    #[test]
    fn bad_models_are_refused_with_the_reason() {
        let with = |f: &dyn Fn(&mut ModelSpec)| {
            let mut m = spec();
            f(&mut m);
            InferenceGenesis {
                params: InferenceParams::default(),
                models: vec![m],
            }
            .validate()
        };
        assert!(with(&|_| {}).is_ok());
        for (what, f, needle) in [
            (
                "id",
                &(|m: &mut ModelSpec| m.id = "Big Model".into()) as &dyn Fn(&mut ModelSpec),
                "id must be",
            ),
            (
                "hash",
                &|m: &mut ModelSpec| m.gguf_sha256 = "xyz".into(),
                "64 lowercase hex",
            ),
            (
                "threshold",
                &|m: &mut ModelSpec| m.validation_threshold_micro = 2_000_000,
                "validation_threshold_micro",
            ),
            (
                "floor",
                &|m: &mut ModelSpec| m.price_floor_pkiln = 0,
                "never free",
            ),
            (
                "initial",
                &|m: &mut ModelSpec| m.initial_price_pkiln = Some(5),
                "below the floor",
            ),
        ] {
            let err = with(f).unwrap_err();
            assert!(err.contains(needle), "{what}: {err}");
        }
        let twice = InferenceGenesis {
            params: InferenceParams::default(),
            models: vec![spec(), spec()],
        };
        assert!(twice.validate().unwrap_err().contains("registered twice"));
    }
}
