//! The registry and prices as stored, and the reads every caller uses.

use kiln_framework::{stored_value, Address, StateReadExt, TxError, TxResult};
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

/// Where an inference stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Escrowed, waiting for the executor's `MsgFinishInference`.
    Open,
    /// The executor was paid and the requester refunded the rest.
    Finished,
    /// Not finished within `inference_timeout_blocks`: fully refunded, a
    /// miss for the executor.
    Expired,
    /// Finished, then an upheld dispute found the work invalid: the
    /// executor's pay went back to the requester.
    Invalidated,
}

/// One inference as the chain settles it: hashes and token counts, never
/// the payload.
#[derive(Debug, Clone, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct InferenceRecord {
    pub id: [u8; 32],
    pub requester: Address,
    pub transfer_agent: Address,
    pub executor: Address,
    pub model: String,
    /// SHA-256 of the request body the requester signed.
    pub prompt_hash: [u8; 32],
    pub prompt_tokens: u64,
    pub max_tokens: u64,
    /// The price per token (pkiln) when it started: what it is charged at.
    pub price_pkiln: u64,
    /// ukiln taken from the requester at the start.
    pub escrow: u128,
    pub start_height: u64,
    /// Unix seconds the requester signed at: the record (which refuses a
    /// replay of the signature) is not pruned while the signature is fresh.
    pub request_timestamp: i64,
    /// The last height a finish is accepted; expires at the end of it.
    pub deadline: u64,
    pub status: Status,
    pub completion_tokens: u64,
    pub response_hash: [u8; 32],
    pub top_logprobs_hash: [u8; 32],
    pub paid: u128,
    pub refunded: u128,
    /// The height it finished or expired (0 while open).
    pub end_height: u64,
    /// The serving period it finished in (its validation duties' period).
    pub period: u64,
}

stored_value!(InferenceRecord, "inference record", 1);

/// A finish posted before its start (SPEC: either order): kept until the
/// start arrives or `inference_timeout_blocks` pass.
#[derive(Debug, Clone, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct EarlyFinish {
    pub response_hash: [u8; 32],
    pub completion_tokens: u64,
    pub top_logprobs_hash: [u8; 32],
    pub height: u64,
}

stored_value!(EarlyFinish, "early inference finish", 1);

/// One candidate executor of a model.
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
pub struct ServingEntry {
    pub host: Address,
    pub weight: u64,
    pub reliability_bps: u64,
    /// The height from which draws skip it (it missed `dead_after_misses`
    /// requests in a row); `None` while alive.
    pub dead_since: Option<u64>,
}

/// The candidates of a model's executor draw, fixed at each settle (and at
/// genesis) so the chain re-derives the draw a transfer agent made from the
/// same table: the hosts with weight in force that declare the model, with
/// last epoch's reliability. Only dead marks change it between settles, and
/// they carry their height.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct ServingSet {
    /// The block that built it: draws seeded before it used the previous set.
    pub since_height: u64,
    /// By address.
    pub entries: Vec<ServingEntry>,
    /// The set this one replaced, kept so a request drawn just before the
    /// settle (seed below `since_height`, at or after
    /// `previous_since_height`) still lands; empty at genesis and in the
    /// per-period copies the duties keep.
    #[serde(default)]
    pub previous_since_height: u64,
    #[serde(default)]
    pub previous_entries: Vec<ServingEntry>,
}

stored_value!(ServingSet, "serving set", 1);

impl ServingSet {
    /// The draw's candidates for a seed taken at `seed_height`: this set's
    /// from `since_height` on, the previous set's before it (None when the
    /// seed is older than the previous set too).
    pub fn candidates_for_seed(&self, seed_height: u64) -> Option<Vec<crate::draw::Candidate>> {
        if seed_height >= self.since_height {
            return Some(self.candidates_at(seed_height));
        }
        if self.previous_entries.is_empty() || seed_height < self.previous_since_height {
            return None;
        }
        let previous = ServingSet {
            since_height: self.previous_since_height,
            entries: self.previous_entries.clone(),
            ..Default::default()
        };
        Some(previous.candidates_at(seed_height))
    }

    /// The draw's candidates for a seed taken at `seed_height`.
    pub fn candidates_at(&self, seed_height: u64) -> Vec<crate::draw::Candidate> {
        self.entries
            .iter()
            .filter(|e| e.dead_since.is_none_or(|d| d > seed_height))
            .map(|e| crate::draw::Candidate {
                host: e.host,
                weight: e.weight,
                reliability_bps: e.reliability_bps,
            })
            .collect()
    }
}

/// A host's serving record: this epoch's counts (which set next epoch's
/// reliability and reputation) and lifetime totals (the stats query).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct HostStats {
    pub epoch_completed: u64,
    pub epoch_missed: u64,
    pub consecutive_misses: u64,
    /// From last epoch's completion rate (SPEC §6 tiers); 10 000 for a host
    /// that has not served yet.
    pub reliability_bps: u64,
    pub total_completed: u64,
    pub total_missed: u64,
    /// Prompt + completion tokens of finished inferences.
    pub total_tokens: u128,
    /// ukiln earned as executor (net of pay taken back by upheld disputes).
    pub total_earned: u128,
    /// This epoch: validations of its work that passed, and upheld disputes
    /// against it (the INVALID tests read both).
    pub epoch_validated: u64,
    pub epoch_invalidated: u64,
    /// INVALID for the rest of the epoch (SPEC §5): no more requests, no
    /// reputation gain, no reward share.
    pub invalid: bool,
    pub total_invalidated: u64,
}

stored_value!(HostStats, "host serving stats", 1);

/// Reads of the settlement state.
pub trait SettlementExt: StateRead {
    fn record(&self, id: &[u8; 32]) -> TxResult<Option<InferenceRecord>> {
        self.get_value(&keys::record(id))
    }

    fn serving_set(&self, model: &str) -> TxResult<ServingSet> {
        Ok(self.get_value(&keys::serving(model))?.unwrap_or_default())
    }

    fn host_stats(&self, host: &Address) -> TxResult<HostStats> {
        Ok(self.get_value(&keys::stats(host))?.unwrap_or(HostStats {
            reliability_bps: 10_000,
            ..Default::default()
        }))
    }

    /// ukiln held for open inferences: the escrow account's balance.
    fn escrow_total(&self) -> TxResult<u128> {
        kiln_bank::state::balance_readonly(
            self,
            &Address::module(keys::ESCROW_ACCOUNT),
            kiln_framework::BASE_DENOM,
        )
    }
}

impl<S: StateRead + ?Sized> SettlementExt for S {}

/// `⌈tokens × price / 10⁶⌉` ukiln (prices are pkiln per token); `None` on
/// overflow (impossible for u64 inputs, kept checked anyway).
pub fn charge(tokens: u64, price_pkiln: u64) -> Option<u128> {
    u128::from(tokens)
        .checked_mul(u128::from(price_pkiln))?
        .checked_add(u128::from(crate::PKILN_PER_UKILN - 1))
        .map(|n| n / u128::from(crate::PKILN_PER_UKILN))
}

/// An open dispute over a finished inference (a validation scored it below
/// the model's threshold): the model's hosts vote by weight.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct Dispute {
    pub id: [u8; 32],
    /// The validator whose score opened it, and that score (millionths).
    pub opened_by: Address,
    pub score_micro: u64,
    pub opened_height: u64,
    /// Tallied at the end of this height at the latest.
    pub deadline: u64,
    /// Weight of the model's hosts other than the executor when it opened:
    /// a side wins with more than half of it.
    pub eligible_weight: u64,
    pub invalid_weight: u64,
    pub valid_weight: u64,
}

stored_value!(Dispute, "inference dispute", 1);

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(byte: u8, weight: u64) -> ServingEntry {
        ServingEntry {
            host: Address([byte; 20]),
            weight,
            reliability_bps: 10_000,
            dead_since: None,
        }
    }

    /// A draw seeded just before a settle is judged by the set it saw; one
    /// seeded before the set before that is refused.
    #[test]
    fn a_seed_before_the_settle_draws_from_the_replaced_set() {
        let set = ServingSet {
            since_height: 100,
            entries: vec![entry(1, 10)],
            previous_since_height: 40,
            previous_entries: vec![entry(2, 10), entry(3, 5)],
        };
        let hosts = |c: Option<Vec<crate::draw::Candidate>>| {
            c.map(|c| c.iter().map(|c| c.host.0[0]).collect::<Vec<_>>())
        };
        assert_eq!(hosts(set.candidates_for_seed(100)), Some(vec![1]));
        assert_eq!(hosts(set.candidates_for_seed(99)), Some(vec![2, 3]));
        assert_eq!(hosts(set.candidates_for_seed(40)), Some(vec![2, 3]));
        assert_eq!(hosts(set.candidates_for_seed(39)), None);
        let genesis = ServingSet {
            since_height: 1,
            entries: vec![entry(1, 10)],
            ..Default::default()
        };
        assert_eq!(hosts(genesis.candidates_for_seed(0)), None);
    }
}
kiln_framework::governed_params!(
    InferenceParams,
    "inference",
    crate::keys::PARAMS,
    b"inference/pending_params",
    |p| p.validate()
);
