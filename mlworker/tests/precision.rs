//! f32 vs bf16 on the CPU (devnet preset): distances agree within
//! sprint_tolerance (2e-3) on at least 99.9% of nonces. Prints the observed
//! worst case and the distribution of differences.

mod common;
use common::*;
use tch::Kind;

const N: u64 = 2000;

#[test]
fn f32_and_bf16_agree_within_tolerance() {
    let nonces: Vec<u64> = (0..N).map(|i| i * 7919 + 3).collect();
    let t0 = std::time::Instant::now();
    let f = engine(Kind::Float, None).distances(&nonces);
    let t1 = std::time::Instant::now();
    let b = engine(Kind::BFloat16, None).distances(&nonces);
    let t2 = std::time::Instant::now();
    let mut diffs: Vec<f64> = f.iter().zip(&b).map(|(x, y)| (x - y).abs()).collect();
    let within = diffs.iter().filter(|&&d| d <= TOL).count();
    diffs.sort_by(|a, b| a.total_cmp(b));
    let (worst_i, worst) = f
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold((0, 0.0), |acc, (i, d)| if d > acc.1 { (i, d) } else { acc });
    println!(
        "f32 vs bf16 over {N} nonces: {within} within {TOL} ({:.3}%), median {:.2e}, p99 {:.2e}, p99.9 {:.2e}, worst {:.3e} (nonce {}, f32 {:.6} bf16 {:.6}); f32 {:.1}s, bf16 {:.1}s",
        100.0 * within as f64 / N as f64,
        diffs[diffs.len() / 2],
        diffs[diffs.len() * 99 / 100],
        diffs[diffs.len() * 999 / 1000],
        worst,
        nonces[worst_i],
        f[worst_i],
        b[worst_i],
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
    assert!(
        within as f64 >= 0.999 * N as f64,
        "only {within}/{N} within tolerance"
    );
}
