//! The vocabulary of the epoch's settle pipeline (see `app/src/components.rs`):
//! raw weights (sprint) → effective weights (staking) → validator set →
//! reputation → rewards (later) → slashing (later). Each step is a module
//! function; these types are what flows between them, so no module needs to
//! know the next one.

use std::collections::BTreeMap;

use kiln_state::StateWrite;

use crate::address::Address;
use crate::error::TxResult;
use crate::event::Event;

/// What one host did in the epoch's proof of compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ComputeOutcome {
    /// Its sprint was accepted.
    pub accepted: bool,
    /// It committed but was rejected by validators, never opened, or did not
    /// reveal its secret.
    pub rejected_or_unopened: bool,
    /// Votes it committed as a committee member and did not reveal.
    pub unrevealed_votes: u64,
    /// Its `invalid` votes on hosts the all-weight escalation accepted
    /// (forcing everyone into an escalation is not free).
    pub overturned_invalid_votes: u64,
    /// Its `valid` votes (committee or escalation) on hosts the escalation
    /// rejected (vouching for a fabricated claim is not free).
    pub valid_votes_on_rejected: u64,
    /// Openings it was on the committee of and neither committed nor
    /// revealed a vote for (it counts as not voting).
    pub missed_votes: u64,
}

/// The first step's answer: raw weight per accepted host and what happened
/// to every host the epoch involved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawWeights {
    /// Raw weight of each accepted host (hosts with 0 are absent).
    pub weights: BTreeMap<Address, u64>,
    /// Every host that committed or was on a committee, in address order.
    pub outcomes: BTreeMap<Address, ComputeOutcome>,
    pub events: Vec<Event>,
}

/// A source of raw weight for an epoch (the sprint today). Called once, at
/// the epoch's settle block; it may write its own per-epoch records.
pub trait RawWeightSource {
    fn settle_raw_weights<S: StateWrite>(state: &mut S, epoch: u64) -> TxResult<RawWeights>;
}
