//! The sprint's steps of the settle pipeline (SPEC §4 "Weight"): tally the
//! commit-revealed votes into raw weights ([`RawWeightSource`]), settle the
//! commitment bonds, and record the effective weights staking derived from
//! them in each host's result. It knows nothing of reputation or the
//! validator set: it reports what happened ([`kiln_framework::ComputeOutcome`]) and the app
//! hands that on.
//!
//! Cost: the weights in force are read once; the epoch's per-host records
//! (commitments, openings, committees, member votes, escalation marks,
//! revealed secrets, bonds) are each read by one ordered scan of their
//! prefix and merged by host ([`HostScan`]) instead of one point lookup per
//! host, so the reads stay linear in hosts however large the state is; an
//! escalated host also costs its escalation votes. No committee is redrawn
//! here.

use std::collections::BTreeMap;

use kiln_bank::state::BankExt;
use kiln_framework::{
    Address, Coin, Coins, Event, RawWeightSource, RawWeights, StateReadExt, StateWriteExt,
    StoredValue, TxError, TxResult, BASE_DENOM,
};
use kiln_staking::StakingExt;
use kiln_state::StateWrite;

use crate::genesis::Sprint;
use crate::handler::member_votes_of;
use crate::keys;
use crate::state::{self, CommitteeVerdict, EpochResult};

impl RawWeightSource for Sprint {
    /// Tallies `epoch` at its settle block. A host that opened is accepted
    /// when its committee accepts ([`state::committee_verdict`]) or, if a
    /// member revealed `invalid`, when more than half of the weight revealed
    /// in its escalation voted `valid` ([`state::escalation_accepts`]). Its
    /// raw weight is its count limited by the growth cap
    /// ([`state::capped_raw_weight`]). Bonds are returned to accepted hosts
    /// and burned for the others. Writes each committed host's
    /// [`EpochResult`] (effective weight 0 until [`record_effective_weights`]).
    fn settle_raw_weights<S: StateWrite>(state: &mut S, epoch: u64) -> TxResult<RawWeights> {
        let in_force = state.weights_in_force()?;
        let params = state::sprint_params(state)?;
        let mut out = RawWeights::default();

        let commits = UnitScan::of(state, &keys::commits_of_epoch(epoch), true)?;
        // Only whether a unit opened, a host escalated or a unit revealed
        // matters here: those scans keep no values (an opening alone is 16 leaves).
        let mut opens = UnitScan::of(state, &keys::opens_of_epoch(epoch), false)?;
        let mut committees = HostScan::of(state, &keys::committees_of_epoch(epoch))?;
        let mut member_votes = HostScan::of(state, &keys::member_votes_of_epoch(epoch))?;
        let mut escalations = HostScan::presence(state, &keys::escalated_of_epoch(epoch))?;
        let mut secrets = UnitScan::of(state, &keys::secrets_of_epoch(epoch), false)?;
        let mut bonds = HostScan::of(state, &keys::bonds_of_epoch(epoch))?;

        for (host, unit_commits) in commits.groups {
            let opened_units = opens.take(&host);
            let revealed_units = secrets.take(&host);
            let mut units = Vec::with_capacity(unit_commits.len());
            for (node, bytes) in unit_commits {
                let count = state::Commitment::decode_value(&bytes)?.count;
                let opened = opened_units.iter().any(|(n, _)| *n == node);
                let revealed = revealed_units.iter().any(|(n, _)| *n == node);
                units.push((node, count, revealed, opened));
            }
            let claimed_count = units.iter().fold(0u64, |sum, u| sum.saturating_add(u.1));
            // What the host proved: the counts of the units that opened
            // (an opening needs its unit's revealed secret).
            let opened_count = units
                .iter()
                .filter(|u| u.3)
                .fold(0u64, |sum, u| sum.saturating_add(u.1));
            let opened = !opened_units.is_empty();
            let members = if opened {
                let committee = match committees.take(&host) {
                    Some(b) => state::AssignedCommittee::decode_value(&b)?,
                    None => state::AssignedCommittee::default(),
                };
                let votes = member_votes.take(&host).unwrap_or_default();
                member_votes_of(committee, &votes)
            } else {
                Vec::new()
            };
            let mut committee_weight: u64 = 0;
            let mut valid_weight: u64 = 0;
            let mut valid_count: u64 = 0;
            for m in &members {
                committee_weight = committee_weight.saturating_add(m.weight);
                if m.vote == Some(true) {
                    valid_weight = valid_weight.saturating_add(m.weight);
                    valid_count += 1;
                }
                // No reveal: the member did not vote (never an invalid
                // vote); committing without revealing and not voting at all
                // both cost reputation.
                if m.vote.is_none() {
                    let o = out.outcomes.entry(m.voter).or_default();
                    if m.committed {
                        o.unrevealed_votes += 1;
                    } else {
                        o.missed_votes += 1;
                    }
                }
            }
            let verdict = state::committee_verdict(members.iter().map(|m| (m.weight, m.vote)));
            let escalated = escalations.take(&host).is_some() && opened;
            let (mut esc_valid, mut esc_revealed) = (0u128, 0u128);
            let accepted = if escalated {
                let reveals = state::escalation_reveals(state, epoch, &host)?;
                for (voter, valid) in &reveals {
                    let w = u128::from(in_force.get(voter).copied().unwrap_or(0));
                    esc_revealed += w;
                    if *valid {
                        esc_valid += w;
                    }
                }
                let accepted = state::escalation_accepts(esc_valid, esc_revealed);
                // Whoever the escalation proved wrong pays in reputation.
                for m in &members {
                    let o = out.outcomes.entry(m.voter).or_default();
                    match m.vote {
                        Some(false) if accepted => o.overturned_invalid_votes += 1,
                        Some(true) if !accepted => o.valid_votes_on_rejected += 1,
                        _ => {}
                    }
                }
                for (voter, valid) in &reveals {
                    let o = out.outcomes.entry(*voter).or_default();
                    match (valid, accepted) {
                        (false, true) => o.overturned_invalid_votes += 1,
                        (true, false) => o.valid_votes_on_rejected += 1,
                        _ => {}
                    }
                }
                for voter in state::escalation_committers(state, epoch, &host)? {
                    if !reveals.iter().any(|(v, _)| *v == voter) {
                        out.outcomes.entry(voter).or_default().unrevealed_votes += 1;
                    }
                }
                accepted
            } else {
                opened && verdict == CommitteeVerdict::Accepted
            };
            let revealed = !revealed_units.is_empty();
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
            let previous = in_force.get(&host).copied().unwrap_or(0);
            let raw = if accepted {
                state::capped_raw_weight(
                    opened_count,
                    previous,
                    params.max_weight_growth_bps,
                    params.new_host_weight_cap,
                )
            } else {
                0
            };
            let outcome = out.outcomes.entry(host).or_default();
            outcome.accepted = accepted;
            outcome.rejected_or_unopened = !accepted;
            if raw > 0 {
                out.weights.insert(host, raw);
            }
            let bond = match bonds.take(&host) {
                Some(b) => u128::from_be_bytes(
                    <[u8; 16]>::try_from(b.as_slice())
                        .map_err(|_| TxError::internal("corrupt bond record"))?,
                ),
                None => 0,
            };
            let (returned, burned) =
                settle_bond(state, epoch, &host, bond, accepted, &mut out.events)?;
            state.put_value(
                keys::result(epoch, &host),
                &EpochResult {
                    accepted,
                    reason: reason.to_string(),
                    raw_weight: raw,
                    effective_weight: 0,
                    valid_vote_weight: valid_weight,
                    committee_weight,
                    claimed_count,
                    escalated,
                    escalation_valid_weight: u64::try_from(esc_valid).unwrap_or(u64::MAX),
                    escalation_revealed_weight: u64::try_from(esc_revealed).unwrap_or(u64::MAX),
                    bond_returned: returned,
                    bond_burned: burned,
                    nodes: node_split(&units, raw, opened_count),
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
                    .attr("committee_weight", committee_weight)
                    .attr("escalated", escalated)
                    .attr("escalation_valid_weight", esc_valid)
                    .attr("escalation_revealed_weight", esc_revealed)
                    .attr("claimed_count", claimed_count)
                    .attr("raw_weight", raw),
            );
        }
        Ok(out)
    }
}

/// One epoch's records under `prefix`, keyed by host, read by one ordered
/// scan. [`HostScan::take`] must be asked for hosts in increasing address
/// order (settle walks the committed hosts in that order), so merging costs
/// O(records) in total rather than a point lookup per host.
struct HostScan {
    entries: Vec<(Address, Vec<u8>)>,
    next: usize,
}

impl HostScan {
    fn of<S: kiln_state::StateRead + ?Sized>(state: &S, prefix: &[u8]) -> TxResult<Self> {
        Self::scan(state, prefix, true)
    }

    /// The hosts that have a record under `prefix`; [`HostScan::take`]
    /// answers `Some(empty)` for them (the values are not copied).
    fn presence<S: kiln_state::StateRead + ?Sized>(state: &S, prefix: &[u8]) -> TxResult<Self> {
        Self::scan(state, prefix, false)
    }

    fn scan<S: kiln_state::StateRead + ?Sized>(
        state: &S,
        prefix: &[u8],
        keep_values: bool,
    ) -> TxResult<Self> {
        let mut entries = Vec::new();
        state.for_each_under(prefix, |suffix, value| {
            // Only `{prefix}{host}` records; longer keys (none today) are skipped.
            if let Some(host) = Address::from_bytes(suffix) {
                let value = if keep_values {
                    value.to_vec()
                } else {
                    Vec::new()
                };
                entries.push((host, value));
            }
            Ok(())
        })?;
        Ok(HostScan { entries, next: 0 })
    }

    /// The record of `host`, skipping (for good) every record of a smaller
    /// address.
    fn take(&mut self, host: &Address) -> Option<Vec<u8>> {
        while let Some((a, value)) = self.entries.get_mut(self.next) {
            match (*a).cmp(host) {
                std::cmp::Ordering::Less => self.next += 1,
                std::cmp::Ordering::Equal => {
                    self.next += 1;
                    return Some(std::mem::take(value));
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

/// One epoch's per-unit records under `prefix` (`{prefix}{host}{node id}`),
/// grouped by host in address order, read by one ordered scan (a host's
/// units are adjacent). [`UnitScan::take`] follows [`HostScan::take`]'s
/// rule: hosts in increasing order.
struct UnitScan {
    groups: Vec<(Address, Vec<UnitRecord>)>,
    next: usize,
}

/// One sprint unit's record: its ML node id (empty for the host's own
/// worker) and the stored value (empty for a presence scan).
type UnitRecord = (String, Vec<u8>);

impl UnitScan {
    fn of<S: kiln_state::StateRead + ?Sized>(
        state: &S,
        prefix: &[u8],
        keep_values: bool,
    ) -> TxResult<Self> {
        let mut groups: Vec<(Address, Vec<UnitRecord>)> = Vec::new();
        state.for_each_under(prefix, |suffix, value| {
            let (host, node) = state::split_unit(suffix)?;
            let value = if keep_values {
                value.to_vec()
            } else {
                Vec::new()
            };
            match groups.last_mut() {
                Some((h, units)) if *h == host => units.push((node, value)),
                _ => groups.push((host, vec![(node, value)])),
            }
            Ok(())
        })?;
        Ok(UnitScan { groups, next: 0 })
    }

    /// The units of `host` (empty when it has none), skipping for good every
    /// group of a smaller address.
    fn take(&mut self, host: &Address) -> Vec<UnitRecord> {
        while let Some((a, units)) = self.groups.get_mut(self.next) {
            match (*a).cmp(host) {
                std::cmp::Ordering::Less => self.next += 1,
                std::cmp::Ordering::Equal => {
                    self.next += 1;
                    return std::mem::take(units);
                }
                std::cmp::Ordering::Greater => return Vec::new(),
            }
        }
        Vec::new()
    }
}

/// The per-unit split of a host's result, when it sprinted with ML nodes
/// (empty when only its own worker did). `units`: (node id, count,
/// revealed, opened). The raw weight is split in proportion to the opened
/// units' counts, by integer division; the remainder goes to the last
/// opened unit, so the parts always sum to `raw`.
fn node_split(
    units: &[(String, u64, bool, bool)],
    raw: u64,
    opened_count: u64,
) -> Vec<state::NodeResult> {
    if units.len() == 1 && units[0].0.is_empty() {
        return Vec::new();
    }
    let last_opened = units.iter().rposition(|u| u.3);
    let mut given: u64 = 0;
    units
        .iter()
        .enumerate()
        .map(|(i, (node, count, revealed, opened))| {
            let raw_weight = if !*opened || opened_count == 0 {
                0
            } else if Some(i) == last_opened {
                raw.saturating_sub(given)
            } else {
                let part = u128::from(raw) * u128::from(*count) / u128::from(opened_count);
                let part = u64::try_from(part).unwrap_or(u64::MAX);
                given = given.saturating_add(part);
                part
            };
            state::NodeResult {
                ml_node: node.clone(),
                claimed_count: *count,
                revealed: *revealed,
                opened: *opened,
                raw_weight,
            }
        })
        .collect()
}

/// Returns the host's bond from escrow (accepted) or burns it (rejected or
/// unopened); deletes the record. Returns (returned, burned) in ukiln.
fn settle_bond<S: StateWrite>(
    state: &mut S,
    epoch: u64,
    host: &Address,
    amount: u128,
    accepted: bool,
    events: &mut Vec<Event>,
) -> TxResult<(u64, u64)> {
    if amount == 0 {
        return Ok((0, 0));
    }
    state.delete_raw(keys::bond(epoch, host));
    let escrow = Address::module(keys::BOND_ESCROW);
    let coins = Coins::normalize(vec![Coin::new(BASE_DENOM, amount)])?;
    let shown = u64::try_from(amount).unwrap_or(u64::MAX);
    if accepted {
        state.sub_coins(&escrow, &coins)?;
        state.add_coins(host, &coins)?;
        events.push(
            Event::new("kiln.sprint.v1.EventBondReturned")
                .attr("epoch", epoch)
                .attr("host", host)
                .attr("amount", amount),
        );
        Ok((shown, 0))
    } else {
        state.burn(&escrow, &coins)?;
        events.push(
            Event::new("kiln.sprint.v1.EventBondBurned")
                .attr("epoch", epoch)
                .attr("host", host)
                .attr("amount", amount),
        );
        Ok((0, shown))
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
