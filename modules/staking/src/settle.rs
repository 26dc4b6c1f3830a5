//! Staking's steps of the settle pipeline: effective weights from raw
//! weights, then the validator set.

use std::collections::{BTreeMap, BTreeSet};

use kiln_framework::{Address, Event, StateWriteExt, TxResult};
use kiln_hosts::HostsExt;
use kiln_state::StateWrite;

use crate::keys;
use crate::state::{apply_power_cap, PowerSchedule, StakingExt};

/// A consensus power change: the host's ed25519 key and its new power (0 removes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerUpdate {
    pub host: Address,
    pub consensus_pubkey: Vec<u8>,
    pub power: u64,
}

/// What the validator-set step changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidatorSetChange {
    pub events: Vec<Event>,
    /// For CometBFT's `FinalizeBlock.validator_updates`, in address order.
    pub updates: Vec<PowerUpdate>,
}

/// Step 2 of the settle: effective weight of each host from its raw weight.
/// Today that is the power cap of SPEC §4; collateral (§7) joins here.
pub fn effective_weights<S: StateWrite>(
    state: &S,
    raw: &BTreeMap<Address, u64>,
) -> TxResult<BTreeMap<Address, u64>> {
    let params = state.staking_params()?;
    Ok(apply_power_cap(
        raw,
        params.min_hosts_for_cap,
        params.max_power_share_bps,
    ))
}

/// Step 3 of the settle: the effective weights become the weights in force
/// and the validator set. When no host has weight the set is kept (a chain
/// never empties its validator set) and an event says so.
pub fn apply_validator_set<S: StateWrite>(
    state: &mut S,
    epoch: u64,
    height: u64,
    effective: &BTreeMap<Address, u64>,
) -> TxResult<ValidatorSetChange> {
    let mut change = ValidatorSetChange::default();
    let total: u64 = effective.values().fold(0u64, |a, w| a.saturating_add(*w));
    if total == 0 {
        change.events.push(
            Event::new("kiln.sprint.v1.EventWeightsKept")
                .attr("epoch", epoch)
                .attr("reason", "no host was accepted this epoch"),
        );
        return Ok(change);
    }
    let previous = state.weights_in_force()?;
    // CometBFT applies these updates two blocks later; remember what signs until then.
    state.put_value(
        keys::POWER_SCHEDULE.to_vec(),
        &PowerSchedule {
            settle_height: height,
            effective_height: height.saturating_add(2),
            previous: previous.clone(),
        },
    )?;
    let mut everyone: BTreeSet<Address> = previous.keys().copied().collect();
    everyone.extend(effective.keys().copied());
    for host in everyone {
        let new = effective.get(&host).copied().unwrap_or(0);
        let old = previous.get(&host).copied().unwrap_or(0);
        // Zero weights are deleted, not stored: the table every committee
        // draw and query reads holds only hosts with weight.
        if new == 0 {
            state.delete_raw(keys::weight(&host));
        } else {
            state.put_u64(keys::weight(&host), new);
        }
        if new != old {
            if let Some(record) = state.host(&host)? {
                change.updates.push(PowerUpdate {
                    host,
                    consensus_pubkey: record.consensus_key_bytes(),
                    power: new,
                });
            }
        }
        change.events.push(
            Event::new("kiln.sprint.v1.EventWeightSet")
                .attr("epoch", epoch)
                .attr("host", host)
                .attr("weight", new)
                .attr("previous", old),
        );
    }
    Ok(change)
}
