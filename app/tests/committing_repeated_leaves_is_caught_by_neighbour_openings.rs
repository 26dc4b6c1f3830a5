//! SPEC §4 "Challenge and opening": the repeated-leaf attack. A host with S
//! real shares commits a tree of S·2^m leaves made of runs of each real
//! share. When nonce order is checked only between the sampled leaves, the
//! opening passes whenever no two sampled indices fall in one run —
//! probability ≈ exp(−C(k,2)·(2^m−1)/(2^m·S−1)), i.e. ≈ exp(−k²/4S) for m = 1
//! (the k distinct indices are drawn without replacement, so a sampled leaf
//! has 2^m − 1 run mates among the other 2^m·S − 1 leaves) — and the host
//! claims 2^m times its compute. Opening each sampled index together with its right-hand
//! neighbour (strictly increasing nonces across all opened leaves by index)
//! exposes a run at almost every sampled index: a run of length 2^m passes
//! only when the sampled index is its last leaf.
//!
//! The simulation prints the attack's acceptance rate before (pairs off) and
//! after (pairs on) for devnet (k = 16) and mainnet-like (k = 200) parameters
//! with the real challenge sampling and the chain's ordering rule, plus the
//! residual partial-duplication attack; the chain scenario shows the opening
//! refused on chain.

// A statistics simulation, not consensus code: acceptance rates are floats.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use common::{at, Net};
use kiln_epochs::Stage;
use kiln_sprint::handler::codes;
use kiln_sprint::msgs::MsgSprintOpen;
use kiln_sprint_protocol::challenge::{opening_indices, ordered_opening, sample_indices};
use kiln_testkit::any_of;
use kiln_testkit::sprint::{commit_msg, host_challenge, opened_leaves, reveal_msg, tree};
use sha2::{Digest, Sha256};

fn challenge(trial: u64, label: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(label.as_bytes())
        .chain_update(trial.to_le_bytes())
        .finalize()
        .into()
}

/// Fraction of `trials` random challenges under which a tree whose leaf `j`
/// has nonce `nonce_of(j)` passes the ordering rule, with or without pairs.
fn acceptance(
    count: u32,
    k: u32,
    trials: u64,
    pairs: bool,
    label: &str,
    nonce_of: impl Fn(u32) -> u64,
) -> f64 {
    let mut passed = 0u64;
    for t in 0..trials {
        let sampled = sample_indices(&challenge(t, label), count, k);
        let opened = if pairs {
            opening_indices(&sampled, count)
        } else {
            sampled
        };
        let leaves: Vec<(u64, u64)> = opened
            .iter()
            .map(|&i| (u64::from(i), nonce_of(i)))
            .collect();
        if ordered_opening(&leaves).is_some() {
            passed += 1;
        }
    }
    passed as f64 / trials as f64
}

#[test]
fn repeated_leaf_attack_acceptance_before_and_after_neighbour_openings() {
    const TRIALS: u64 = 2_000;
    // (name, k = sprint_samples, S = real shares); the tree doubles them (m = 1).
    let cases = [
        ("devnet", 16u32, 600u32),
        ("mainnet-like", 200, 20_000),
        ("mainnet-like", 200, 100_000),
    ];
    for (name, k, s) in cases {
        let count = 2 * s;
        let runs = |j: u32| u64::from(j >> 1) * 3 + 1; // run of 2 per real share
        let before = acceptance(count, k, TRIALS, false, name, runs);
        let after = acceptance(count, k, TRIALS, true, name, runs);
        let pairs_of_samples = f64::from(k) * f64::from(k - 1) / 2.0;
        let predicted = (-pairs_of_samples / (2.0 * f64::from(s) - 1.0)).exp();
        println!(
            "repeated leaves ({name}, k = {k}, S = {s}, tree of 2S): accepted {:.1}% before (pairs off; exp(-C(k,2)/(2S-1)) = {:.1}%), {:.3}% after (pairs on; bound 2^-k = {:.1e}) over {TRIALS} challenges",
            100.0 * before,
            100.0 * predicted,
            100.0 * after,
            0.5f64.powi(k as i32)
        );
        assert!(
            (before - predicted).abs() < 0.05,
            "{name}: the attack passed {before} of the time without pairs, expected ≈ {predicted}"
        );
        assert_eq!(
            after, 0.0,
            "{name}: no repeated-leaf tree may pass with pairs"
        );
    }

    // Residual: duplicating only a fraction r of the shares (each once) gains
    // r of extra weight and passes when no sampled index is the first leaf of
    // a duplicated pair: ≈ (1 − r/(1+r))^k. Printed for the README.
    for (name, k, s, r_permille) in [
        ("devnet", 16u32, 600u32, 100u32),
        ("mainnet-like", 200, 50_000, 10),
    ] {
        // Leaf list: every (1000 / r_permille)-th real share appears twice.
        let mut nonces = Vec::new();
        for i in 0..s {
            nonces.push(u64::from(i));
            if i % (1000 / r_permille) == 0 {
                nonces.push(u64::from(i));
            }
        }
        let count = nonces.len() as u32;
        let after = acceptance(count, k, TRIALS, true, "partial", |j| nonces[j as usize]);
        let r = f64::from(r_permille) / 1000.0;
        let predicted = (1.0 - r / (1.0 + r)).powi(k as i32);
        println!(
            "residual ({name}, k = {k}): duplicating {:.0}% of the shares passes {:.1}% of openings (≈ (1 − r/(1+r))^k = {:.1}%)",
            100.0 * r,
            100.0 * after,
            100.0 * predicted
        );
        assert!(
            (after - predicted).abs() < 0.05,
            "{name}: {after} vs {predicted}"
        );
    }
}

#[test]
fn committing_repeated_leaves_is_caught_by_neighbour_openings() {
    // One host (its own committee on a one-host devnet) with 2 000 real
    // shares commits each one twice.
    let mut net = Net::new("repeated", 1, 16);
    let addr = net.hosts[0].addr();
    let real: Vec<(u64, u32)> = (0..2_000u64)
        .map(|i| (i * 5 + 1, 12_000 + (i % 900) as u32))
        .collect();
    let doubled: Vec<(u64, u32)> = real.iter().flat_map(|l| [*l, *l]).collect();
    net.deliver_ok(vec![
        net.exec(0, vec![any_of(&commit_msg(&addr, 1, &doubled))])
    ]);
    net.until(at(Stage::SecretReveal));
    net.deliver_ok(vec![net.exec(0, vec![any_of(&reveal_msg(&addr, 1))])]);
    net.until(at(Stage::Open));

    let challenge = host_challenge(&net.d.app.latest_view(), 1, &addr);
    let count = doubled.len() as u32;
    let sampled = sample_indices(&challenge, count, 16);
    let sampled_only: Vec<(u64, u64)> = sampled
        .iter()
        .map(|&i| (u64::from(i), doubled[i as usize].0))
        .collect();
    println!(
        "this challenge's 16 sampled leaves alone {} the repeat",
        if ordered_opening(&sampled_only).is_some() {
            "would hide"
        } else {
            "expose"
        }
    );

    // The old shape (sampled leaves only) is no longer a valid opening.
    let t = tree(&doubled);
    let old = MsgSprintOpen {
        host: addr.to_bech32(),
        ml_node: String::new(),
        epoch: 1,
        leaves: sampled
            .iter()
            .map(|&i| kiln_sprint::msgs::OpenedLeaf {
                index: u64::from(i),
                nonce: doubled[i as usize].0,
                distance_q: doubled[i as usize].1,
                proof: t
                    .proof(u64::from(i))
                    .unwrap()
                    .iter()
                    .map(|p| p.to_vec())
                    .collect(),
            })
            .collect(),
    };
    let r = net.send(0, any_of(&old));
    assert_eq!(
        (r.codespace.as_str(), r.code),
        ("sprint", codes::WRONG_LEAF_COUNT),
        "{}",
        r.log
    );
    // With neighbours, each with a valid proof, the repeat shows.
    let paired = MsgSprintOpen {
        host: addr.to_bech32(),
        ml_node: String::new(),
        epoch: 1,
        leaves: opened_leaves(&doubled, &challenge, 16),
    };
    let r = net.send(0, any_of(&paired));
    assert_eq!(
        (r.codespace.as_str(), r.code),
        ("sprint", codes::REPEATED_NONCE),
        "{}",
        r.log
    );
    // The host ends the epoch unopened, with no weight.
    net.until(at(Stage::Settle) + 1);
    let result = net.result(addr);
    assert_eq!(
        (result.accepted, result.reason.as_str()),
        (false, "unopened")
    );
}
