//! Staking's steps of the settle pipeline: effective weights from raw
//! weights, then the validator set.

use std::collections::{BTreeMap, BTreeSet};

use kiln_framework::{Address, Event, StateWriteExt, TxResult};
use kiln_state::StateWrite;

use crate::keys;
use crate::state::{apply_power_cap, StakingExt};
use crate::validators::MAX_TOTAL_VOTING_POWER;

/// A consensus power change: the host's ed25519 key and its new power (0 removes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerUpdate {
    pub host: Address,
    pub consensus_pubkey: Vec<u8>,
    pub power: u64,
}

/// What the validator-set step changed. The validator updates themselves
/// are emitted at the end of the block ([`crate::validators::end_block_updates`]),
/// together with any key rotation of the same block, so CometBFT gets one
/// update per key per block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidatorSetChange {
    pub events: Vec<Event>,
    /// Whether the weights in force changed (the end of the block must
    /// emit validator updates).
    pub weights_changed: bool,
}

/// Step 2 of the settle of `epoch`: effective weight of each host from its
/// raw weight — SPEC §7's collateral rule once `epoch > grace_epochs`
/// ([`crate::pools::backed_weight`] with the pool's tokens as backing),
/// then the power cap of SPEC §4. Jailed hosts get none.
pub fn effective_weights<S: StateWrite>(
    state: &S,
    epoch: u64,
    raw: &BTreeMap<Address, u64>,
) -> TxResult<BTreeMap<Address, u64>> {
    use crate::jail::JailExt;
    use crate::pools::PoolsExt;
    let params = state.staking_params()?;
    // A jailed host earns no weight until it unjails.
    let mut free = BTreeMap::new();
    for (host, weight) in raw {
        if !state.is_jailed(host)? {
            free.insert(*host, *weight);
        }
    }
    let raw = &free;
    let backed = if epoch > params.grace_epochs {
        let mut out = BTreeMap::new();
        for (host, weight) in raw {
            let backing = state.pool(host)?.tokens;
            out.insert(
                *host,
                crate::pools::backed_weight(
                    *weight,
                    backing,
                    params.free_share_bps,
                    params.collateral_per_weight,
                ),
            );
        }
        out
    } else {
        raw.clone()
    };
    Ok(apply_power_cap(
        &backed,
        params.min_hosts_for_cap,
        params.max_power_share_bps,
    ))
}

/// Step 3 of the settle: the effective weights become the weights in force
/// (CometBFT gets the matching validator updates at the end of this block,
/// and applies them at `height + 2`). When no host has weight, or the total
/// is above what CometBFT can hold, the weights in force are kept (a chain
/// never empties its validator set nor hands CometBFT a set it refuses) and
/// an event says so.
pub fn apply_validator_set<S: StateWrite>(
    state: &mut S,
    epoch: u64,
    _height: u64,
    effective: &BTreeMap<Address, u64>,
) -> TxResult<ValidatorSetChange> {
    let mut change = ValidatorSetChange::default();
    let total = effective.values().try_fold(0u64, |a, w| a.checked_add(*w));
    let reason = match total {
        Some(0) => Some("no host was accepted this epoch"),
        Some(t) if t <= MAX_TOTAL_VOTING_POWER => None,
        _ => Some("total weight is above CometBFT's max total voting power"),
    };
    if let Some(reason) = reason {
        change.events.push(
            Event::new("kiln.sprint.v1.EventWeightsKept")
                .attr("epoch", epoch)
                .attr("reason", reason),
        );
        return Ok(change);
    }
    let previous = state.weights_in_force()?;
    let mut everyone: BTreeSet<Address> = previous.keys().copied().collect();
    everyone.extend(effective.keys().copied());
    let mut with_weight: u64 = 0;
    for host in everyone {
        let new = effective.get(&host).copied().unwrap_or(0);
        let old = previous.get(&host).copied().unwrap_or(0);
        // Zero weights are deleted, not stored: the table every committee
        // draw and query reads holds only hosts with weight.
        if new == 0 {
            state.delete_raw(keys::weight(&host));
        } else {
            state.put_u64(keys::weight(&host), new);
            with_weight += 1;
        }
        change.weights_changed |= new != old;
        change.events.push(
            Event::new("kiln.sprint.v1.EventWeightSet")
                .attr("epoch", epoch)
                .attr("host", host)
                .attr("weight", new)
                .attr("previous", old),
        );
    }
    state.put_u64(keys::HOSTS_WITH_WEIGHT.to_vec(), with_weight);
    Ok(change)
}
