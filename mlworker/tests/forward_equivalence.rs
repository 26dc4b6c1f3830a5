//! The optimised forward pass (fused residual matmuls, in-place SwiGLU,
//! complex / roll-based RoPE with the interleaved q/k head layout in f32,
//! two-pass RMSNorm, last-position pruning) equals the straightforward one
//! op-per-formula forward pass over SPEC's layout.

mod common;
use common::*;
use kiln_mlworker::device::ComputeDevice;
use kiln_mlworker::sprint::engine::SprintEngine;
use kiln_sprint_protocol::model::ModelConfig;
use tch::Kind;

#[test]
fn optimised_forward_matches_reference_forward() {
    let nonces: Vec<u64> = (0..48).map(|i| i * 131 + 5).collect();
    for (kind, tol) in [(Kind::Float, 1e-5), (Kind::BFloat16, TOL)] {
        let fast = engine(kind, Some(16)).distances(&nonces);
        let (seed, addr) = seed_addr();
        let dev = ComputeDevice {
            device: tch::Device::Cpu,
            kind,
        };
        let slow = SprintEngine::with_options(seed, addr, ModelConfig::DEVNET, dev, Some(16), true)
            .unwrap()
            .distances(&nonces);
        let worst = fast
            .iter()
            .zip(&slow)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!("{kind:?}: worst |optimised - reference| = {worst:.3e}");
        assert!(worst <= tol, "{kind:?}: {worst}");
    }
}
