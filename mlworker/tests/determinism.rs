//! Determinism: the same seed, address and nonces give identical weights (see
//! the protocol crate's tests for thread counts of the generator) and
//! identical quantised distances across runs, torch thread counts and batch
//! sizes. One test function on purpose: torch's thread count is global.

mod common;
use common::*;
use kiln_mlworker::sprint::engine::prepare_batch;
use kiln_sprint_protocol::leaf::quantize_distance;
use kiln_sprint_protocol::model::{input, ModelConfig};
use tch::Kind;

#[test]
fn same_results_across_runs_threads_and_batches() {
    let nonces: Vec<u64> = (0..96).chain([1_000_000, 1u64 << 40, u64::MAX]).collect();
    let mut runs: Vec<(String, Vec<u32>, Vec<f64>)> = Vec::new();
    // (threads, batch, intra_op): threads = CPU batch streams by default, or
    // torch intra-op threads of a single stream with intra_op.
    for (threads, batch, intra_op) in [
        (2, 32, false),
        (2, 32, false),
        (1, 32, false),
        (2, 7, false),
        (1, 99, false),
        (2, 32, true),
        (3, 17, true),
    ] {
        tch::set_num_threads(threads);
        let mut e = engine(Kind::Float, Some(batch)); // a fresh model every time
        if intra_op {
            e.use_intra_op_threads(threads as usize);
        } else {
            assert_eq!(e.workers(), threads as usize);
        }
        let d = e.distances(&nonces);
        let q: Vec<u32> = d.iter().map(|&x| quantize_distance(x)).collect();
        runs.push((
            format!("threads={threads} batch={batch} intra_op={intra_op}"),
            q,
            d,
        ));
    }
    tch::set_num_threads(2);
    for (name, q, d) in &runs[1..] {
        assert_eq!(
            q, &runs[0].1,
            "quantised distances differ: {name} vs {}",
            runs[0].0
        );
        let worst = d
            .iter()
            .zip(&runs[0].2)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!("{name}: identical d_q; max |Δd| vs first run = {worst:.3e}");
    }
    // Same run twice (same threads, same batch) is bit-identical in f64.
    assert_eq!(runs[0].2, runs[1].2);
    // Inputs generated in a batch equal the per-nonce generator.
    let (seed, addr) = seed_addr();
    let b = prepare_batch(&seed, &addr, &ModelConfig::DEVNET, vec![5, 9]);
    let xs = ModelConfig::DEVNET.seq_len * ModelConfig::DEVNET.dim;
    assert_eq!(
        &b.x[..xs],
        &input(&seed, &addr, 5, &ModelConfig::DEVNET)[..]
    );
    assert_eq!(
        &b.x[xs..],
        &input(&seed, &addr, 9, &ModelConfig::DEVNET)[..]
    );
}
