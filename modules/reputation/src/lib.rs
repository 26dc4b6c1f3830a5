//! kiln-reputation: the host reputation of SPEC §6.
//!
//! Each host has a counter `good_epochs`; `reputation = min(100,
//! ⌊100 · good_epochs / epochs_to_max⌋)`. Its inputs are a small explicit
//! interface, [`EpochOutcome`], applied once per host per epoch at settle by
//! whichever modules observed the epoch (the sprint today; inference misses and
//! disputes later feed the same function).
//!
//! Keys (all under `reputation/`): `reputation/params` ([`ReputationParams`],
//! a versioned stored value), `reputation/good/{addr 20}` (u64 BE).
//! Query: `/kiln.reputation.v1.Query/Reputation` (data: bech32 address).
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use kiln_framework::{
    stored_value, Address, Component, ComputeOutcome, Event, GenesisCtx, StateReadExt,
    StateWriteExt, TxError, TxResult,
};
use kiln_state::{StateRead, StateWrite};

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"reputation/";
pub const PARAMS_KEY: &[u8] = b"reputation/params";
pub const QUERY_PATH: &str = "/kiln.reputation.v1.Query/Reputation";

pub fn good_epochs_key(addr: &Address) -> Vec<u8> {
    [b"reputation/good/".as_slice(), addr.as_bytes()].concat()
}

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
#[serde(deny_unknown_fields)]
pub struct ReputationParams {
    /// Good epochs needed for reputation 100 (30 mainnet-like, 3 devnet).
    pub epochs_to_max: u64,
}

stored_value!(ReputationParams, "reputation params", 1);
kiln_framework::governed_params!(
    ReputationParams,
    "reputation",
    PARAMS_KEY,
    b"reputation/pending_params",
    |p| p.validate()
);

impl Default for ReputationParams {
    fn default() -> Self {
        ReputationParams { epochs_to_max: 30 }
    }
}

impl ReputationParams {
    pub fn devnet() -> Self {
        ReputationParams { epochs_to_max: 3 }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.epochs_to_max == 0 {
            return Err("reputation.params.epochs_to_max must be positive".into());
        }
        Ok(())
    }
}

/// What happened to one host in one epoch, as far as reputation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EpochOutcome {
    /// Its sprint was accepted.
    pub accepted: bool,
    /// It committed but was rejected by validators, or never opened.
    pub rejected_or_unopened: bool,
    /// Sprint votes it committed and did not reveal.
    pub unrevealed_votes: u64,
    /// Its `invalid` sprint votes the all-weight escalation overturned, and
    /// its `valid` votes on hosts the escalation rejected. Either resets
    /// `good_epochs` like a rejection: an honest validator's binomial test
    /// (alpha 1e-7) practically never disagrees with the whole network, so
    /// disagreeing is treated as misbehaviour.
    pub overturned_invalid_votes: u64,
    pub valid_votes_on_rejected: u64,
    /// Sprint votes it owed as a committee member and never committed.
    pub missed_votes: u64,
    /// Inference misses above 1%, in whole percent.
    pub excess_miss_percent: u64,
    /// Upheld inference disputes over its work: no good epoch this epoch.
    pub upheld_disputes: u64,
    /// INVALID for the epoch (inference): resets `good_epochs` like a rejection.
    pub invalid: bool,
}

impl From<ComputeOutcome> for EpochOutcome {
    fn from(o: ComputeOutcome) -> Self {
        EpochOutcome {
            accepted: o.accepted,
            rejected_or_unopened: o.rejected_or_unopened,
            unrevealed_votes: o.unrevealed_votes,
            overturned_invalid_votes: o.overturned_invalid_votes,
            valid_votes_on_rejected: o.valid_votes_on_rejected,
            missed_votes: o.missed_votes,
            ..Default::default()
        }
    }
}

pub fn good_epochs<S: StateRead + ?Sized>(state: &S, addr: &Address) -> TxResult<u64> {
    Ok(state.get_u64(&good_epochs_key(addr))?.unwrap_or(0))
}

pub fn params<S: StateRead + ?Sized>(state: &S) -> TxResult<ReputationParams> {
    Ok(state.get_value(PARAMS_KEY)?.unwrap_or_default())
}

/// The score in [0, 100].
pub fn reputation<S: StateRead + ?Sized>(state: &S, addr: &Address) -> TxResult<u64> {
    let good = good_epochs(state, addr)?;
    let to_max = params(state)?.epochs_to_max.max(1);
    Ok(good
        .saturating_mul(100)
        .checked_div(to_max)
        .unwrap_or(0)
        .min(100))
}

/// Applies one epoch's outcome (SPEC §6) and returns an event describing it.
pub fn apply_outcome<S: StateWrite>(
    state: &mut S,
    epoch: u64,
    addr: &Address,
    outcome: &EpochOutcome,
) -> TxResult<Event> {
    let before = good_epochs(state, addr)?;
    let mut good = before;
    let overruled = outcome.overturned_invalid_votes > 0 || outcome.valid_votes_on_rejected > 0;
    if outcome.invalid || outcome.rejected_or_unopened || overruled {
        good = 0;
    } else {
        if outcome.accepted && outcome.excess_miss_percent == 0 && outcome.upheld_disputes == 0 {
            good = good.saturating_add(1);
        }
        good = good.saturating_sub(outcome.excess_miss_percent);
    }
    // SPEC §6: each sprint vote committed and not revealed costs one good
    // epoch; so does each vote owed and never cast (a silent member is no
    // better than one that hides its vote).
    good = good
        .saturating_sub(outcome.unrevealed_votes)
        .saturating_sub(outcome.missed_votes);
    state.put_u64(good_epochs_key(addr), good);
    let score = reputation(state, addr)?;
    Ok(Event::new("kiln.reputation.v1.EventReputationUpdated")
        .attr("epoch", epoch)
        .attr("host", addr)
        .attr("good_epochs_before", before)
        .attr("good_epochs", good)
        .attr("overturned_invalid_votes", outcome.overturned_invalid_votes)
        .attr("valid_votes_on_rejected", outcome.valid_votes_on_rejected)
        .attr("reputation", score))
}

/// The answer of the reputation query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReputationAnswer {
    pub address: Address,
    pub good_epochs: u64,
    /// In [0, 100].
    pub reputation: u64,
}

/// The reputation query (data: bech32 address).
pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    if path != QUERY_PATH {
        return None;
    }
    Some(kiln_framework::query::address_arg(data).and_then(|a| {
        let good = good_epochs(state, &a)?;
        let score = reputation(state, &a)?;
        kiln_framework::query::json(
            &serde_json::json!({"address": a, "good_epochs": good, "reputation": score}),
        )
    }))
}

/// `app_state.reputation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReputationGenesis {
    #[serde(default)]
    pub params: ReputationParams,
}

/// Reputation as a component: genesis here; its settle step is [`apply_outcome`].
pub struct Reputation;

impl Component for Reputation {
    const NAME: &'static str = "reputation";
    type Genesis = ReputationGenesis;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &ReputationGenesis,
        _ctx: &GenesisCtx,
    ) -> TxResult<()> {
        genesis
            .params
            .validate()
            .map_err(TxError::invalid_request)?;
        state.put_value(PARAMS_KEY.to_vec(), &genesis.params)
    }
}

#[cfg(test)]
fn init_genesis<S: StateWrite>(state: &mut S, params: &ReputationParams) -> TxResult<()> {
    let ctx = GenesisCtx {
        chain_id: "test".into(),
        initial_height: 1,
    };
    Reputation::init_genesis(
        state,
        &ReputationGenesis {
            params: params.clone(),
        },
        &ctx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_state::{EmptyState, Overlay};

    #[test]
    fn accepted_epochs_raise_rejection_resets_unrevealed_votes_cost_one() {
        let mut s = Overlay::new(EmptyState);
        init_genesis(&mut s, &ReputationParams::devnet()).unwrap();
        let a = Address([3; 20]);
        let ok = EpochOutcome {
            accepted: true,
            ..Default::default()
        };
        apply_outcome(&mut s, 1, &a, &ok).unwrap();
        assert_eq!(reputation(&s, &a).unwrap(), 33);
        apply_outcome(&mut s, 2, &a, &ok).unwrap();
        apply_outcome(&mut s, 3, &a, &ok).unwrap();
        apply_outcome(&mut s, 4, &a, &ok).unwrap();
        assert_eq!(reputation(&s, &a).unwrap(), 100, "capped at 100");
        assert_eq!(good_epochs(&s, &a).unwrap(), 4);
        apply_outcome(
            &mut s,
            5,
            &a,
            &EpochOutcome {
                accepted: true,
                unrevealed_votes: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(good_epochs(&s, &a).unwrap(), 3);
        apply_outcome(
            &mut s,
            6,
            &a,
            &EpochOutcome {
                accepted: true,
                missed_votes: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            good_epochs(&s, &a).unwrap(),
            2,
            "+1 accepted, −2 missed votes"
        );
        apply_outcome(
            &mut s,
            7,
            &a,
            &EpochOutcome {
                rejected_or_unopened: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(reputation(&s, &a).unwrap(), 0);
    }

    #[test]
    fn votes_the_escalation_overruled_reset_reputation() {
        let mut s = Overlay::new(EmptyState);
        init_genesis(&mut s, &ReputationParams::devnet()).unwrap();
        let (a, b) = (Address([4; 20]), Address([5; 20]));
        let ok = EpochOutcome {
            accepted: true,
            ..Default::default()
        };
        for e in 1..=3 {
            apply_outcome(&mut s, e, &a, &ok).unwrap();
            apply_outcome(&mut s, e, &b, &ok).unwrap();
        }
        let overturned = EpochOutcome {
            accepted: true,
            overturned_invalid_votes: 1,
            ..Default::default()
        };
        let vouched = EpochOutcome {
            accepted: true,
            valid_votes_on_rejected: 1,
            ..Default::default()
        };
        apply_outcome(&mut s, 4, &a, &overturned).unwrap();
        apply_outcome(&mut s, 4, &b, &vouched).unwrap();
        assert_eq!(good_epochs(&s, &a).unwrap(), 0);
        assert_eq!(good_epochs(&s, &b).unwrap(), 0);
    }
}
