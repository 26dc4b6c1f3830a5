//! The validator set the chain has given CometBFT, and the one place that
//! emits validator updates.
//!
//! CometBFT only knows consensus keys and powers. The chain records, per
//! consensus key, the power it last gave CometBFT and the host it stands
//! for (`staking/validator/{key}`): that is exactly CometBFT's next validator
//! set, since every update the chain returns is applied to it. At the end of
//! a block in which the weights in force changed (a settle) or a host
//! rotated its consensus key, [`end_block_updates`] compares that record
//! with the set the weights in force describe (each host with weight, under
//! its *current* key, at power = weight) and returns the difference, one
//! update per key:
//!
//! * a rotation of a host with weight gives `{old key, 0}` and
//!   `{new key, weight}` in the same list, so the old key stops signing and
//!   the new key starts at the same height (`H + 2`): both never hold power
//!   together, and a compromised old key leaves the set at `H + 2`;
//! * a removal is only ever for a key in the record, so CometBFT always has
//!   the validator it is asked to remove;
//! * several rotations in one block, or a rotation back to an earlier key,
//!   collapse into the net change (possibly none).
//!
//! The history of the last two changes answers which keys sign at a height
//! ([`StakingExt::consensus_validators`](crate::StakingExt::consensus_validators)):
//! updates returned at `H` take effect at `H + 2`.

use std::collections::BTreeMap;

use kiln_framework::{Address, Event, StateWriteExt, TxError, TxResult};
use kiln_hosts::HostsExt;
use kiln_state::{StateRead, StateWrite};

use crate::keys;
use crate::settle::PowerUpdate;
use crate::state::{ConsensusValidator, StakingExt, ValidatorSetChangeRecord};

/// CometBFT's `MaxTotalVotingPower` (`i64::MAX / 8`): a validator set whose
/// total power is above it is a block execution error.
pub const MAX_TOTAL_VOTING_POWER: u64 = (i64::MAX / 8) as u64;

/// How many past changes the history keeps: enough to answer every height
/// from the state's own height on (updates take effect two blocks later).
const HISTORY_LEN: usize = 2;

/// The set the weights in force describe: each host with weight, under its
/// current consensus key, at power = weight. Hosts without a record or a
/// 32-byte key are left out (the registry never stores such a host).
pub fn desired_validator_set<S: StateRead + ?Sized>(
    state: &S,
) -> TxResult<BTreeMap<Vec<u8>, ConsensusValidator>> {
    let mut out = BTreeMap::new();
    for (owner, power) in state.weights_in_force()? {
        let Some(host) = state.host(&owner)? else {
            continue;
        };
        let key = host.consensus_key_bytes();
        if key.len() != 32 {
            continue;
        }
        out.insert(key, ConsensusValidator { owner, power });
    }
    Ok(out)
}

/// Writes the set given to CometBFT at genesis (InitChain's answer): no
/// history, since nothing signed before it.
pub fn init_given_set<S: StateWrite>(
    state: &mut S,
) -> TxResult<BTreeMap<Vec<u8>, ConsensusValidator>> {
    let desired = desired_validator_set(state)?;
    for (key, validator) in &desired {
        state.put_value(keys::validator(key), validator)?;
    }
    Ok(desired)
}

/// The validator updates of this block: runs when the weights in force
/// changed (`settled`, or a jail in this block) or a host rotated its key; otherwise nothing changed
/// and nothing is read. Returns the updates (one per key, in key order) and
/// an event per update.
pub fn end_block_updates<S: StateWrite>(
    state: &mut S,
    height: u64,
    settled: bool,
) -> TxResult<(Vec<PowerUpdate>, Vec<Event>)> {
    let rotated = kiln_hosts::state::take_key_rotations(state)?;
    let jailed = crate::jail::take_validator_set_dirty(state)?;
    if !settled && !jailed && rotated.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let given = state.given_validators()?;
    let desired = desired_validator_set(state)?;
    let mut updates = Vec::new();
    let mut events = Vec::new();
    let mut all_keys: Vec<&Vec<u8>> = given.keys().chain(desired.keys()).collect();
    all_keys.sort();
    all_keys.dedup();
    for key in all_keys {
        let old = given.get(key);
        let new = desired.get(key);
        if old == new {
            continue;
        }
        // A key keeps its power but changes hands only if one host rotated to
        // a key another host just left; CometBFT needs no update then.
        let (host, power) = match new {
            Some(v) => (v.owner, v.power),
            None => (old.map_or(Address([0; 20]), |v| v.owner), 0),
        };
        match new {
            Some(v) => state.put_value(keys::validator(key), v)?,
            None => state.delete_raw(keys::validator(key)),
        }
        if old.map(|v| v.power) == Some(power) {
            continue;
        }
        updates.push(PowerUpdate {
            host,
            consensus_pubkey: key.clone(),
            power,
        });
        events.push(
            Event::new("kiln.staking.v1.EventValidatorUpdate")
                .attr("host", host)
                .attr("consensus_pubkey", hex::encode(key))
                .attr("power", power)
                .attr("previous", old.map_or(0, |v| v.power)),
        );
    }
    if given != desired {
        let mut history = state.validator_history()?;
        history.changes.push(ValidatorSetChangeRecord {
            height,
            before: given,
        });
        let excess = history.changes.len().saturating_sub(HISTORY_LEN);
        history.changes.drain(..excess);
        state.put_value(keys::VALIDATOR_HISTORY.to_vec(), &history)?;
    }
    Ok((updates, events))
}

/// Refuses a weight set CometBFT could not hold (total above
/// [`MAX_TOTAL_VOTING_POWER`]).
pub fn check_total_power(weights: &BTreeMap<Address, u64>) -> TxResult<u64> {
    let total = weights
        .values()
        .try_fold(0u64, |a, w| a.checked_add(*w))
        .filter(|t| *t <= MAX_TOTAL_VOTING_POWER)
        .ok_or_else(|| {
            TxError::invalid_request(format!(
                "total weight is above CometBFT's max total voting power {MAX_TOTAL_VOTING_POWER}"
            ))
        })?;
    Ok(total)
}
