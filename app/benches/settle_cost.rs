//! `make bench`: the epoch's tally work (committee assignment + settle
//! pipeline) at 1 000 committed hosts ÷ at 10, on an in-memory state (target
//! ≤ 100: linear in hosts, with O(log n) committee draws). Fixture:
//! `kiln_testkit::settle_cost`.

// A benchmark is not consensus code: it reads the wall clock and prints rates.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use kiln_testkit::settle_cost::{settle_fixture, time_settle};

fn best_of(hosts: usize, runs: usize) -> std::time::Duration {
    (0..runs)
        .map(|_| {
            let mut f = settle_fixture(hosts).expect("fixture");
            time_settle(&mut f).expect("settle").0
        })
        .min()
        .expect("at least one run")
}

fn main() {
    let small = best_of(10, 20);
    let large = best_of(1_000, 3);
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
    println!("settle 10 hosts: {small:?}");
    println!("settle 1000 hosts: {large:?}");
    println!("RESULT settle_cost_ratio_1000_over_10={ratio:.1} (target <= 100)");
}
