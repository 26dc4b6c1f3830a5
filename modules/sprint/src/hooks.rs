//! The settle hook (SPEC §4 "Weight"): tally the commit-revealed votes, set
//! raw and effective weights (power cap), feed reputation, and produce the
//! validator-set changes for consensus.

use std::collections::BTreeMap;

use kiln_framework::{Address, Event, StateWriteExt, TxResult};
use kiln_reputation::EpochOutcome;
use kiln_state::StateWrite;

use crate::handler::committee_of;
use crate::keys;
use crate::state::{self, EpochResult};

/// A consensus power change: the host's ed25519 key and its new power (0 removes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerUpdate {
    pub host: Address,
    pub consensus_pubkey: Vec<u8>,
    pub power: u64,
}

pub struct SettleOutput {
    pub events: Vec<Event>,
    pub power_updates: Vec<PowerUpdate>,
}

/// Settles `epoch`. Called once, at the epoch's settle block `height`.
pub fn settle<S: StateWrite>(state: &mut S, epoch: u64, height: u64) -> TxResult<SettleOutput> {
    let mut events = Vec::new();
    let params = state::sprint_params(state)?;
    let previous = state::weights(state)?;
    let mut raw: BTreeMap<Address, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<Address, EpochOutcome> = BTreeMap::new();
    let mut results: BTreeMap<Address, EpochResult> = BTreeMap::new();

    for host in state::committed_hosts(state, epoch)? {
        let Some(commit) = state::commitment(state, epoch, &host)? else {
            continue;
        };
        let committee = committee_of(state, epoch, &host)?;
        let mut committee_weight: u64 = 0;
        let mut valid_weight: u64 = 0;
        let mut valid_count: u64 = 0;
        for validator in &committee {
            // Every member counts with its weight in force (1 when none is set yet).
            let w = previous.get(validator).copied().unwrap_or(1);
            committee_weight = committee_weight.saturating_add(w);
            let committed = state
                .get_raw(&keys::vote_commit(epoch, &host, validator))?
                .is_some();
            match state.get_raw(&keys::vote_reveal(epoch, &host, validator))? {
                Some(v) if v.first() == Some(&1) => {
                    valid_weight = valid_weight.saturating_add(w);
                    valid_count += 1;
                }
                Some(_) => {}
                None if committed => outcomes.entry(*validator).or_default().unrevealed_votes += 1,
                None => {}
            }
        }
        let opened = state::opened(state, epoch, &host)?.is_some();
        let accepted =
            opened && committee_weight > 0 && valid_weight.saturating_mul(2) > committee_weight;
        let reason = if !opened {
            "unopened"
        } else if accepted {
            ""
        } else {
            "rejected"
        };
        let outcome = outcomes.entry(host).or_default();
        outcome.accepted = accepted;
        outcome.rejected_or_unopened = !accepted;
        if accepted {
            raw.insert(host, commit.count);
        }
        results.insert(
            host,
            EpochResult {
                accepted,
                reason: reason.to_string(),
                raw_weight: if accepted { commit.count } else { 0 },
                effective_weight: 0,
                valid_vote_weight: valid_weight,
                committee_weight,
            },
        );
        events.push(
            Event::new("kiln.sprint.v1.EventSprintTally")
                .attr("epoch", epoch)
                .attr("host", host)
                .attr("accepted", accepted)
                .attr("reason", reason)
                .attr("valid_votes", valid_count)
                .attr("valid_weight", valid_weight)
                .attr("committee_weight", committee_weight),
        );
    }

    let effective =
        state::apply_power_cap(&raw, params.min_hosts_for_cap, params.max_power_share_bps);
    for (host, result) in results.iter_mut() {
        result.effective_weight = effective.get(host).copied().unwrap_or(0);
        state.put_json(keys::result(epoch, host), result)?;
    }

    let mut power_updates = Vec::new();
    let total: u64 = effective.values().sum();
    if total == 0 {
        // Never empty the validator set: keep the weights in force and say so.
        events.push(
            Event::new("kiln.sprint.v1.EventWeightsKept")
                .attr("epoch", epoch)
                .attr("reason", "no host was accepted this epoch"),
        );
    } else {
        // CometBFT applies these updates two blocks later; remember what signs until then.
        state.put_json(
            keys::POWER_SCHEDULE.to_vec(),
            &state::PowerSchedule {
                settle_height: height,
                effective_height: height.saturating_add(2),
                previous: previous.clone(),
            },
        )?;
        let mut everyone: std::collections::BTreeSet<Address> = previous.keys().copied().collect();
        everyone.extend(effective.keys().copied());
        for host in everyone {
            let new = effective.get(&host).copied().unwrap_or(0);
            let old = previous.get(&host).copied().unwrap_or(0);
            state.put_u64(keys::weight(&host), new);
            if new != old {
                if let Some(record) = state::host(state, &host)? {
                    power_updates.push(PowerUpdate {
                        host,
                        consensus_pubkey: record.consensus_key_bytes(),
                        power: new,
                    });
                }
            }
            events.push(
                Event::new("kiln.sprint.v1.EventWeightSet")
                    .attr("epoch", epoch)
                    .attr("host", host)
                    .attr("weight", new)
                    .attr("previous", old),
            );
        }
    }

    for (addr, outcome) in &outcomes {
        events.push(kiln_reputation::apply_outcome(state, epoch, addr, outcome)?);
    }
    Ok(SettleOutput {
        events,
        power_updates,
    })
}
