//! Cheat detection by simulation over many challenges, with leaves recorded
//! from real engine runs:
//! - the prover sweeps nonces with the f32 engine and keeps its real shares;
//!   a cheater replaces 5% of its leaves with fabricated ones (nonces it never
//!   computed, claimed distances below r_target);
//! - the validator recomputes every leaf with the bf16 engine (the GPU
//!   precision), so honest leaves carry the real cross-precision noise;
//! - each simulated challenge derives the challenge seed from a block hash and
//!   the address, samples k = 200 indices exactly as the chain does, counts
//!   mismatches (integer rule) and applies the exact binomial verdict at the
//!   Kiln p0 = 1e-4 (SPEC: 5e-4), alpha = 1e-7.
//!
//! Results are checked against the exact hypergeometric probability of the
//! same setup, and the large-count limit (≈ binomial) is reported too.

mod common;
use common::*;
use kiln_sprint_protocol::challenge::{challenge_seed, sample_indices};
use kiln_sprint_protocol::leaf::quantize_distance;
use kiln_sprint_protocol::seed::sha256;
use kiln_sprint_protocol::stream::Stream;
use kiln_sprint_protocol::verdict::{
    critical_count, distance_to_micro, invalid_by_critical, is_mismatch, ALPHA_DEFAULT, P0_DEFAULT,
    SHARE_SLACK_MICRO_DEFAULT, TOLERANCE_MICRO_DEFAULT,
};
use tch::Kind;

const R_TARGET: u64 = 1_346_000; // devnet
const K: u32 = 200;
const HONEST: usize = 380;
const FABRICATED: usize = 20; // 5% of 400

fn ln_fact(n: usize, t: &mut Vec<f64>) -> f64 {
    while t.len() <= n {
        let i = t.len();
        let prev = *t.last().unwrap_or(&0.0);
        t.push(if i == 0 { 0.0 } else { prev + (i as f64).ln() });
    }
    t[n]
}

/// P[X ≥ c], X ~ Hypergeometric(population n_pop, successes k_bad, draws n).
fn hyper_tail(n_pop: usize, k_bad: usize, n: usize, c: usize) -> f64 {
    let mut t = Vec::new();
    let ln_c =
        |a: usize, b: usize, t: &mut Vec<f64>| ln_fact(a, t) - ln_fact(b, t) - ln_fact(a - b, t);
    let total = ln_c(n_pop, n, &mut t);
    (c..=n.min(k_bad))
        .filter(|&x| n - x <= n_pop - k_bad)
        .map(|x| (ln_c(k_bad, x, &mut t) + ln_c(n_pop - k_bad, n - x, &mut t) - total).exp())
        .sum()
}

/// Fraction of `challenges` simulated challenges that vote invalid, for
/// per-leaf mismatch flags `flags`.
fn simulate(flags: &[bool], addr: &[u8; 20], challenges: u32, tag: &str) -> (u32, u32) {
    let count = flags.len() as u32;
    let k = count.min(K);
    let critical = critical_count(k, P0_DEFAULT, ALPHA_DEFAULT).unwrap();
    let mut flagged = 0;
    for i in 0..challenges {
        let block = sha256(format!("{tag}/challenge-block/{i}").as_bytes());
        let ch = challenge_seed(&block, addr);
        let idx = sample_indices(&ch, count, K);
        let m = idx.iter().filter(|&&j| flags[j as usize]).count() as u32;
        flagged += invalid_by_critical(m, critical) as u32;
    }
    (flagged, challenges)
}

#[test]
fn fabricated_shares_flagged_and_honest_never() {
    let (_, addr) = seed_addr();
    // 1. Honest prover run (f32): record real shares.
    let prover = engine(Kind::Float, None);
    let mut honest: Vec<(u64, u32)> = Vec::new();
    let mut non_shares: Vec<u64> = Vec::new();
    let found = std::cell::Cell::new(0usize);
    let swept = prover.sweep(
        0,
        |_| found.get() < HONEST,
        |ns, ds| {
            for (&n, &d) in ns.iter().zip(ds) {
                if d * 1e6 < R_TARGET as f64 {
                    honest.push((n, quantize_distance(d)));
                    found.set(found.get() + 1);
                } else {
                    non_shares.push(n);
                }
            }
        },
    );
    honest.truncate(HONEST);
    // Only nonces up to the last kept share, so the fabricated set does not
    // depend on how far the sweep ran past it.
    let last = honest.last().map(|l| l.0).unwrap_or(0);
    non_shares.retain(|&n| n < last);
    println!("prover swept {swept} nonces for {HONEST} shares");
    // 2. Fabricated leaves: nonces the cheater skipped, with invented distances below r_target.
    let mut s = Stream::new(&sha256(b"cheater"));
    let fabricated: Vec<(u64, u32)> = non_shares
        .iter()
        .step_by(non_shares.len() / FABRICATED)
        .take(FABRICATED)
        .map(|&n| (n, 12_800 + s.next_below(660)))
        .collect();
    assert_eq!(fabricated.len(), FABRICATED);
    // 3. Validator recomputation in bf16.
    let validator = engine(Kind::BFloat16, None);
    let recompute = |leaves: &[(u64, u32)]| -> Vec<bool> {
        let ds = validator.distances(&leaves.iter().map(|l| l.0).collect::<Vec<_>>());
        leaves
            .iter()
            .zip(ds)
            .map(|(l, d)| {
                is_mismatch(
                    distance_to_micro(d),
                    l.1,
                    R_TARGET,
                    TOLERANCE_MICRO_DEFAULT,
                    SHARE_SLACK_MICRO_DEFAULT,
                )
            })
            .collect()
    };
    let honest_flags = recompute(&honest);
    let fab_flags = recompute(&fabricated);
    let honest_mm = honest_flags.iter().filter(|&&b| b).count();
    let fab_mm = fab_flags.iter().filter(|&&b| b).count();
    println!("per-leaf mismatches: honest {honest_mm}/{HONEST} (bf16 validator vs f32 prover), fabricated {fab_mm}/{FABRICATED}");
    assert!(
        fab_mm >= FABRICATED - 1,
        "fabricated leaves should (almost) all mismatch"
    );

    // 4. Cheater: 400 leaves in nonce order, 5% fabricated.
    let mut cheater: Vec<((u64, u32), bool)> = honest
        .iter()
        .copied()
        .zip(honest_flags.iter().copied())
        .chain(fabricated.iter().copied().zip(fab_flags.iter().copied()))
        .collect();
    cheater.sort_by_key(|l| l.0 .0);
    assert!(cheater.windows(2).all(|w| w[0].0 .0 < w[1].0 .0));
    let flags: Vec<bool> = cheater.iter().map(|l| l.1).collect();
    let (f, n) = simulate(&flags, &addr, 4000, "cheater");
    let rate = f as f64 / n as f64;
    let c = critical_count(K, P0_DEFAULT, ALPHA_DEFAULT)
        .unwrap()
        .unwrap() as usize;
    let bad = flags.iter().filter(|&&b| b).count();
    let exact = hyper_tail(flags.len(), bad, K as usize, c);
    println!("cheater (count {}, {bad} mismatching leaves, k {K}, critical {c}): flagged {f}/{n} = {rate:.4}; exact {exact:.4}", flags.len());
    let sigma = (exact * (1.0 - exact) / n as f64).sqrt();
    assert!(
        (rate - exact).abs() <= 5.0 * sigma + 1e-3,
        "simulation disagrees with exact probability"
    );
    assert!(
        rate >= 0.99,
        "5% fabricated shares flagged in only {rate:.4} of challenges"
    );

    // 5. Honest prover: never flagged in 10 000 challenges.
    let (hf, hn) = simulate(&honest_flags, &addr, 10_000, "honest");
    println!("honest (count {HONEST}): flagged {hf}/{hn}");
    assert_eq!(hf, 0);

    // 6. Large-count limit (count ≫ k: sampling is ~binomial). Recorded
    // flags tiled to 20 000 leaves, 5% fabricated, positions shuffled.
    let big_n = 20_000usize;
    let n_bad = big_n / 20;
    let mut big: Vec<bool> = (0..big_n)
        .map(|i| {
            if i < n_bad {
                fab_flags[i % FABRICATED]
            } else {
                honest_flags[i % HONEST]
            }
        })
        .collect();
    let mut s = Stream::new(&sha256(b"shuffle"));
    for i in (1..big.len()).rev() {
        let j = s.next_below(i as u32 + 1) as usize;
        big.swap(i, j);
    }
    let (bf, bn) = simulate(&big, &addr, 4000, "big");
    let bad = big.iter().filter(|&&b| b).count();
    let exact_big = hyper_tail(big_n, bad, K as usize, c);
    let rate_big = bf as f64 / bn as f64;
    println!(
        "large count {big_n} ({bad} mismatching): flagged {bf}/{bn} = {rate_big:.4}; exact {exact_big:.4}"
    );
    let sigma = (exact_big * (1.0 - exact_big) / bn as f64).sqrt();
    assert!((rate_big - exact_big).abs() <= 5.0 * sigma + 1e-3);
    assert!(
        exact_big >= 0.99,
        "large-count detection {exact_big:.4} below 99%"
    );
    assert!(
        rate_big >= 0.985,
        "large-count simulated detection {rate_big:.4}"
    );
    let (hb, _) = simulate(
        &big.iter().map(|_| false).collect::<Vec<_>>(),
        &addr,
        100,
        "none",
    );
    assert_eq!(hb, 0);

    // 7. Honest prover whose validators disagree at exactly the honest rate
    // p0 = 1e-4 (2 of 20 000 leaves mismatch, placed at random): still never
    // flagged in 10 000 challenges (it cannot reach the critical count 4).
    let mut noisy = vec![false; big_n];
    let mut s = Stream::new(&sha256(b"honest noise"));
    let mut placed = 0;
    while placed < big_n / 10_000 {
        let j = s.next_below(big_n as u32) as usize;
        if !noisy[j] {
            noisy[j] = true;
            placed += 1;
        }
    }
    let (nf, nn) = simulate(&noisy, &addr, 10_000, "noisy-honest");
    println!(
        "honest with p0-rate disagreement (count {big_n}, {placed} mismatching): flagged {nf}/{nn}"
    );
    assert_eq!(nf, 0);
}
