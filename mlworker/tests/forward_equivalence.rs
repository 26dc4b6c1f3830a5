//! The optimised forward pass (fused residual matmuls, in-place SwiGLU,
//! roll-based RoPE, two-pass RMSNorm, last-position pruning) equals the
//! straightforward one op-per-formula forward pass.

mod common;
use common::*;
use tch::Kind;

#[test]
fn optimised_forward_matches_reference_forward() {
    let nonces: Vec<u64> = (0..48).map(|i| i * 131 + 5).collect();
    for (kind, tol) in [(Kind::Float, 1e-5), (Kind::BFloat16, TOL)] {
        let mut e = engine(kind, Some(16));
        let fast = e.distances(&nonces);
        e.reference_forward = true;
        let slow = e.distances(&nonces);
        let worst = fast
            .iter()
            .zip(&slow)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!("{kind:?}: worst |optimised - reference| = {worst:.3e}");
        assert!(worst <= tol, "{kind:?}: {worst}");
    }
}
