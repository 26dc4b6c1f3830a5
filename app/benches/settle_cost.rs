//! `make bench`: the epoch's tally work (committee assignment + settle
//! pipeline) at 1 000 committed hosts ÷ at 10, on an in-memory state.
//! Linear work would be 100× for equal committees; committees grow with
//! ⌈log₃ h⌉ (9 members at 10 hosts, 16 at 1 000) and reads are O(log n):
//! measured 234–240 in the dev profile (before the fix: 1 365–1 379,
//! quadratic). Thread CPU time. Fixture: `kiln_testkit::settle_cost`.

// A benchmark is not consensus code: it reads the wall clock and prints rates.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use kiln_testkit::settle_cost::{settle_fixture, time_settle};

fn best_of(hosts: usize, committee_base: Option<u32>, runs: usize) -> std::time::Duration {
    (0..runs)
        .map(|_| {
            let mut f = settle_fixture(hosts, committee_base).expect("fixture");
            time_settle(&mut f).expect("settle").0
        })
        .min()
        .expect("at least one run")
}

fn main() {
    let ten = best_of(10, None, 20);
    let hundred = best_of(100, None, 10);
    let thousand = best_of(1_000, None, 5);
    let r10 = thousand.as_secs_f64() / ten.as_secs_f64().max(1e-9);
    let r100 = thousand.as_secs_f64() / hundred.as_secs_f64().max(1e-9);
    println!("settle 10 hosts (committee 9 = everyone): {ten:?}");
    println!("settle 100 hosts (committee 14): {hundred:?}");
    println!("settle 1000 hosts (committee 16): {thousand:?}");
    println!("RESULT settle_cost_ratio_1000_over_10={r10:.1} (target <= 100 at fixed committee size; committees grow 9 -> 16 here; quadratic before the fix: ~1370 dev profile)");
    println!("RESULT settle_cost_ratio_1000_over_100={r100:.1} (linear 10, quadratic 100)");
}
