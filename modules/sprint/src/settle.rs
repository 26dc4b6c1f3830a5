//! The sprint's steps of the settle pipeline (SPEC §4 "Weight"): tally the
//! commit-revealed votes into raw weights ([`RawWeightSource`]), and record
//! the effective weights staking derived from them in each host's result.
//! It knows nothing of reputation or the validator set: it reports what
//! happened ([`ComputeOutcome`]) and the app hands that on.

use std::collections::BTreeMap;

use kiln_framework::{
    Address, ComputeOutcome, Event, RawWeightSource, RawWeights, StateWriteExt, TxResult,
};
use kiln_staking::StakingExt;
use kiln_state::StateWrite;

use crate::genesis::Sprint;
use crate::handler::committee_of;
use crate::keys;
use crate::state::{self, EpochResult};

impl RawWeightSource for Sprint {
    /// Tallies `epoch` at its settle block: a host is accepted when it opened
    /// and voters holding more than half of its committee's weight (weights in
    /// force; 1 for a member without weight) revealed `valid`. Writes each
    /// committed host's [`EpochResult`] (effective weight 0 until
    /// [`record_effective_weights`]).
    fn settle_raw_weights<S: StateWrite>(state: &mut S, epoch: u64) -> TxResult<RawWeights> {
        let in_force = state.weights_in_force()?;
        let mut out = RawWeights::default();

        for host in state::committed_hosts(state, epoch)? {
            let Some(commit) = state::commitment(state, epoch, &host)? else {
                continue;
            };
            let committee = committee_of(state, epoch, &host)?;
            let opened = state::opened(state, epoch, &host)?.is_some();
            let mut committee_weight: u64 = 0;
            let mut valid_weight: u64 = 0;
            let mut valid_count: u64 = 0;
            for voter in &committee {
                // Every member counts with its weight in force (1 when none is set yet).
                let w = in_force.get(voter).copied().unwrap_or(1);
                committee_weight = committee_weight.saturating_add(w);
                let committed = state
                    .get_raw(&keys::vote_commit(epoch, &host, voter))?
                    .is_some();
                match state.get_raw(&keys::vote_reveal(epoch, &host, voter))? {
                    Some(v) if v.first() == Some(&1) => {
                        valid_weight = valid_weight.saturating_add(w);
                        valid_count += 1;
                    }
                    Some(_) => {}
                    // No reveal: the member did not vote (never an invalid
                    // vote), and it owed one only when there was an opening.
                    None if committed => {
                        let o: &mut ComputeOutcome = out.outcomes.entry(*voter).or_default();
                        o.unrevealed_votes += 1;
                    }
                    None if opened => {
                        let o: &mut ComputeOutcome = out.outcomes.entry(*voter).or_default();
                        o.missed_votes += 1;
                    }
                    None => {}
                }
            }
            let revealed = crate::beacon::revealed_secret(state, epoch, &host)?.is_some();
            let accepted =
                opened && committee_weight > 0 && valid_weight.saturating_mul(2) > committee_weight;
            let reason = if !revealed {
                // It could not open: its secret is missing from the beacon.
                "unrevealed"
            } else if !opened {
                "unopened"
            } else if accepted {
                ""
            } else {
                "rejected"
            };
            let outcome = out.outcomes.entry(host).or_default();
            outcome.accepted = accepted;
            outcome.rejected_or_unopened = !accepted;
            if accepted {
                out.weights.insert(host, commit.count);
            }
            state.put_value(
                keys::result(epoch, &host),
                &EpochResult {
                    accepted,
                    reason: reason.to_string(),
                    raw_weight: if accepted { commit.count } else { 0 },
                    effective_weight: 0,
                    valid_vote_weight: valid_weight,
                    committee_weight,
                },
            )?;
            out.events.push(
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
        Ok(out)
    }
}

/// Records in each committed host's result of `epoch` the effective weight
/// the staking step gave it (0 for hosts it left out).
pub fn record_effective_weights<S: StateWrite>(
    state: &mut S,
    epoch: u64,
    effective: &BTreeMap<Address, u64>,
) -> TxResult<()> {
    for host in state::committed_hosts(state, epoch)? {
        if let Some(mut result) = state::result(state, epoch, &host)? {
            result.effective_weight = effective.get(&host).copied().unwrap_or(0);
            state.put_value(keys::result(epoch, &host), &result)?;
        }
    }
    Ok(())
}
