//! The registry and prices as stored, and the reads every caller uses.

use kiln_framework::{stored_value, StateReadExt, TxError, TxResult};
use kiln_state::StateRead;

use crate::keys;
use crate::params::InferenceParams;

/// A model the network serves (SPEC §5 "Models").
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct Model {
    /// The name requests use (`"model": ...`), e.g. `smollm2-135m`.
    pub id: String,
    /// SHA-256 of the GGUF file every host serving it must load (hex).
    pub gguf_sha256: String,
    /// SHA-256 of the tokenizer (the GGUF's token list and merges; hex).
    pub tokenizer_sha256: String,
    /// A validation score below this (millionths) opens a dispute.
    pub validation_threshold_micro: u64,
    /// The price never falls below this (pkiln per token).
    pub price_floor_pkiln: u64,
}

stored_value!(Model, "model", 1);
stored_value!(InferenceParams, "inference params", 1);

/// Reads of the inference state, for any state view.
pub trait InferenceExt: StateRead {
    fn inference_params(&self) -> TxResult<InferenceParams> {
        Ok(self.get_value(keys::PARAMS)?.unwrap_or_default())
    }

    fn model(&self, id: &str) -> TxResult<Option<Model>> {
        self.get_value(&keys::model(id))
    }

    /// Every registered model, by id.
    fn models(&self) -> TxResult<Vec<Model>> {
        Ok(self
            .prefix_values::<Model>(keys::MODEL_PREFIX)?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }

    /// The model's price per token in pkiln.
    fn price(&self, id: &str) -> TxResult<u64> {
        self.get_u64(&keys::price(id))?.ok_or_else(|| {
            TxError::key_not_found(format!("no price for model {id}: is it registered?"))
        })
    }
}

impl<S: StateRead + ?Sized> InferenceExt for S {}
