//! The inference step of the epoch's settle pipeline: the epoch's misses
//! become next epoch's reliability tiers and reputation input, and each
//! model's serving set (the executor draw's candidates) is rebuilt from the
//! weights now in force.

use std::collections::BTreeMap;

use kiln_framework::{Address, Event, StateReadExt, StateWriteExt, TxResult};
use kiln_hosts::HostsExt;
use kiln_staking::StakingExt;
use kiln_state::StateWrite;

use crate::draw::reliability_bps;
use crate::keys;
use crate::state::{HostStats, InferenceExt, ServingEntry, ServingSet};

/// What the epoch's serving did to each host, for reputation (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServingOutcome {
    /// Whole percent of misses above 1% of the host's requests.
    pub excess_miss_percent: u64,
    /// Disputes over its work upheld this epoch.
    pub upheld_disputes: u64,
    /// It became INVALID this epoch.
    pub invalid: bool,
    /// Inferences it finished and missed this epoch (the downtime rule).
    pub completed: u64,
    pub missed: u64,
}

impl ServingOutcome {
    /// Whether the epoch's serving changes the host's reputation (SPEC §6).
    pub fn affects_reputation(&self) -> bool {
        self.excess_miss_percent > 0 || self.upheld_disputes > 0 || self.invalid
    }
}

/// `⌊miss rate in percent⌋ − 1` when the rate is above 1%, else 0: SPEC §6
/// "−1 for each full 1% of misses above that".
pub fn excess_miss_percent(completed: u64, missed: u64) -> u64 {
    let total = u128::from(completed) + u128::from(missed);
    if total == 0 {
        return 0;
    }
    let rate_bps = u128::from(missed) * 10_000 / total;
    u64::try_from(rate_bps.saturating_sub(100) / 100).unwrap_or(u64::MAX)
}

/// Closes the epoch's serving counts and rebuilds the serving sets. Run
/// after the settle has written the new weights in force.
pub fn end_epoch<S: StateWrite>(
    state: &mut S,
    epoch: u64,
    height: u64,
) -> TxResult<(BTreeMap<Address, ServingOutcome>, Vec<Event>)> {
    let mut outcomes = BTreeMap::new();
    let mut events = Vec::new();
    let all: Vec<(Vec<u8>, HostStats)> = state.prefix_values(keys::STATS_PREFIX)?;
    for (suffix, mut stats) in all {
        let Some(host) = Address::from_bytes(&suffix) else {
            continue;
        };
        let outcome = ServingOutcome {
            excess_miss_percent: excess_miss_percent(stats.epoch_completed, stats.epoch_missed),
            upheld_disputes: stats.epoch_invalidated,
            invalid: stats.invalid,
            completed: stats.epoch_completed,
            missed: stats.epoch_missed,
        };
        stats.reliability_bps = reliability_bps(stats.epoch_completed, stats.epoch_missed);
        events.push(
            Event::new("kiln.inference.v1.EventServingEpoch")
                .attr("epoch", epoch)
                .attr("host", host)
                .attr("completed", stats.epoch_completed)
                .attr("missed", stats.epoch_missed)
                .attr("validated", stats.epoch_validated)
                .attr("invalidated", stats.epoch_invalidated)
                .attr("invalid", stats.invalid)
                .attr("reliability_bps", stats.reliability_bps),
        );
        if stats.epoch_completed > 0 {
            state.put_u64(keys::served(epoch, &host), stats.epoch_completed);
        }
        stats.epoch_completed = 0;
        stats.epoch_missed = 0;
        stats.consecutive_misses = 0;
        stats.epoch_validated = 0;
        stats.epoch_invalidated = 0;
        stats.invalid = false;
        state.put_value(keys::stats(&host), &stats)?;
        if outcome.affects_reputation() || outcome.missed > 0 {
            outcomes.insert(host, outcome);
        }
    }
    // Validation duties: the period that closes counts its traffic; the
    // one before it (whose seeds were revealed during this one) is checked.
    let closing = crate::duties::current_period(state)?;
    if let Some(checked) = closing.checked_sub(1) {
        events.extend(crate::duties::recompute(state, checked)?);
    }
    crate::duties::count_traffic(state, closing)?;
    state.put_u64(keys::PERIOD.to_vec(), epoch);
    rebuild_serving_sets(state, height)?;
    Ok((outcomes, events))
}

/// Every model's serving set from the hosts that declare it and have weight
/// in force, with their reliability; draws seeded from `height` on use it,
/// and it is kept as the new serving period's duty weights.
pub fn rebuild_serving_sets<S: StateWrite>(state: &mut S, height: u64) -> TxResult<()> {
    let mut by_model: BTreeMap<String, Vec<ServingEntry>> = state
        .models()?
        .into_iter()
        .map(|m| (m.id, Vec::new()))
        .collect();
    for (host, weight) in state.weights_in_force()? {
        let Some(record) = state.host(&host)? else {
            continue;
        };
        let reliability = match state.get_value::<HostStats>(&keys::stats(&host))? {
            Some(s) => s.reliability_bps,
            None => 10_000,
        };
        for model in &record.models {
            // Declared models that are not registered are ignored.
            if let Some(entries) = by_model.get_mut(model) {
                if entries.last().is_some_and(|e| e.host == host) {
                    continue; // declared twice
                }
                entries.push(ServingEntry {
                    host,
                    weight,
                    reliability_bps: reliability,
                    dead_since: None,
                });
            }
        }
    }
    let period = crate::duties::current_period(state)?;
    for (model, entries) in by_model {
        let replaced = crate::state::SettlementExt::serving_set(state, &model)?;
        let set = ServingSet {
            since_height: height,
            entries,
            previous_since_height: replaced.since_height,
            previous_entries: replaced.entries,
        };
        crate::duties::keep_period_set(state, period, &model, &set)?;
        state.put_value(keys::serving(&model), &set)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::excess_miss_percent;

    #[test]
    fn misses_above_one_percent_cost_whole_percents() {
        assert_eq!(excess_miss_percent(0, 0), 0);
        assert_eq!(excess_miss_percent(99, 1), 0);
        assert_eq!(excess_miss_percent(98, 2), 1);
        assert_eq!(excess_miss_percent(965, 35), 2);
        assert_eq!(excess_miss_percent(0, 5), 99);
    }
}
