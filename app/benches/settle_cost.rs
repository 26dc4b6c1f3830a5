//! `make bench`: the epoch's tally work at 1 000 committed hosts ÷ at 10 (and
//! ÷ at 100), thread CPU time, the median of several runs (the 10-host block
//! takes ~0.1 ms and its best run moved the ratio by ±20% from one process to
//! the next). The state is committed in the node's store and each block runs
//! in a fresh overlay over it, as in the node. Two blocks, reported apart:
//! - the **settle** block (escalation check + raw weights → power cap →
//!   validator set → reputation), issue 9 item 10's target (≤ 100): one
//!   committee record and one member-vote record per host, whatever the
//!   committee's size;
//! - the **committee assignment** at the first vote-commit block: h ·
//!   committee writes, and committees grow by design with ⌈log₃ h⌉ (9 members
//!   — everyone, no draw — at 10 hosts, 16 drawn at 1 000), so ≈ 100 · 16/9
//!   plus the draws is its floor.
//!
//! - the **settle with delegators** (issue 13): 20 hosts whose pools hold 10
//!   or 10 000 delegations; the rewards step credits each pool once (F1), so
//!   the target is a ratio ≤ 1.5.
//!
//! Fixture: `kiln_testkit::settle_cost`.

// A benchmark is not consensus code: it reads the wall clock and prints rates.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use kiln_testkit::settle_cost::{
    settle_fixture, settle_fixture_with_delegators, time_settle, TallyTimes,
};
use std::time::Duration;

/// The median of `runs` runs of each block.
fn median_of(hosts: usize, runs: usize) -> TallyTimes {
    let mut assignment = Vec::with_capacity(runs);
    let mut settle = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut f = settle_fixture(hosts, None).expect("fixture");
        let (t, accepted) = time_settle(&mut f).expect("settle");
        assert_eq!(accepted, hosts, "every host is voted valid");
        assignment.push(t.assignment);
        settle.push(t.settle);
    }
    assignment.sort();
    settle.sort();
    TallyTimes {
        assignment: assignment[runs / 2],
        settle: settle[runs / 2],
        rewarded: hosts,
    }
}

/// The median settle time at 20 hosts with `delegators` delegators and
/// `bystanders` funded accounts that delegate nothing.
fn settle_with_delegators(delegators: usize, bystanders: usize, runs: usize) -> Duration {
    let mut settle = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut f =
            settle_fixture_with_delegators(20, None, delegators, bystanders).expect("fixture");
        let (t, accepted) = time_settle(&mut f).expect("settle");
        assert_eq!(accepted, 20, "every host is voted valid");
        assert_eq!(t.rewarded, 20, "every host's pool is credited");
        settle.push(t.settle);
    }
    settle.sort();
    settle[runs / 2]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn main() {
    let ten = median_of(10, 41);
    let hundred = median_of(100, 21);
    let thousand = median_of(1_000, 11);
    for (n, t) in [(10, ten), (100, hundred), (1000, thousand)] {
        println!(
            "{n} hosts: settle {:?}, committee assignment {:?}",
            t.settle, t.assignment
        );
    }
    println!(
        "RESULT settle_cost_ratio_1000_over_10={:.1} (medians; target <= 100; 1000/100 = {:.1}, linear 10)",
        ratio(thousand.settle, ten.settle),
        ratio(thousand.settle, hundred.settle)
    );
    // Issue 13: F1 rewards make the settle O(hosts), not O(delegators).
    // The control: 10 delegators among 9 990 funded accounts that delegate
    // nothing — the same number of accounts, so the same store depth.
    let few = settle_with_delegators(10, 0, 21);
    let many = settle_with_delegators(10_000, 0, 15);
    let control = settle_with_delegators(10, 9_990, 15);
    println!(
        "20 hosts: settle with 10 delegators {few:?}, with 10 000 delegators {many:?}, with 10 delegators among 10 000 accounts {control:?}"
    );
    println!(
        "RESULT settle_delegators_ratio_10000_over_10={:.2} (medians, 20 hosts with pools; target <= 1.5; against 10 delegators in a store of the same size: {:.2})",
        ratio(many, few),
        ratio(many, control)
    );
    println!(
        "RESULT committee_assignment_ratio_1000_over_10={:.1} (committees grow 9 -> 16 members; 1000/100 = {:.1})",
        ratio(thousand.assignment, ten.assignment),
        ratio(thousand.assignment, hundred.assignment)
    );
}
