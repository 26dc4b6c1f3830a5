//! Shares are defined by the f32 forward pass on every device.
//!
//! A bf16 forward pass (CUDA's default) lands up to 8.3e-4 away from the f32
//! one near `r_target` (`mlworker/tests/precision.rs`), while two f32
//! implementations agree to ~5e-8. If the share predicate followed each
//! prover's precision, validators would have to accept distances up to the
//! bf16 error above the share bound — free weight for anyone claiming near
//! misses (3.3% of the weight on devnet, ≈ 30% on the mainnet-like preset).
//! So the predicate is f32's, and the bf16 sweep only finds candidates: every
//! nonce whose bf16 distance lies within [`RECHECK_MARGIN_MICRO`] of the share
//! bound is recomputed in f32 and claimed (or not) on the f32 distance.
//! Validators recompute opened leaves in f32 directly. The chain then only
//! needs a share slack covering f32-vs-f32 disagreement
//! ([`kiln_sprint_protocol::verdict::SHARE_SLACK_MICRO_DEFAULT`]).

use kiln_sprint_protocol::verdict::{distance_to_micro, share_bound_micro};

/// How close (in millionths) to the share bound a low-precision distance must
/// be for the nonce to be recomputed in f32: the measured worst bf16-vs-f32
/// gap (832µ over 2 000 devnet nonces) with 2.4× headroom, and equal to the
/// default sprint tolerance, beyond which a claim mismatches anyway.
pub const RECHECK_MARGIN_MICRO: u64 = 2_000;

/// True when a distance computed in a precision other than f32 is too close
/// to the share bound to decide the share on.
pub fn needs_f32_recheck(distance: f64, r_target_micro: u64) -> bool {
    distance_to_micro(distance).abs_diff(share_bound_micro(r_target_micro)) <= RECHECK_MARGIN_MICRO
}

/// Replace the distances of the near-boundary nonces by their f32
/// recomputation (`exact` maps nonces to f32 distances, in order). Returns how
/// many were recomputed. A short answer from `exact` leaves the remaining
/// distances as they were, marked unusable (NaN never claims a share).
pub fn recheck_near_boundary(
    nonces: &[u64],
    distances: &mut [f64],
    r_target_micro: u64,
    exact: impl FnOnce(&[u64]) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<usize> {
    let near: Vec<usize> = distances
        .iter()
        .enumerate()
        .filter(|(_, &d)| needs_f32_recheck(d, r_target_micro))
        .map(|(i, _)| i)
        .collect();
    if near.is_empty() {
        return Ok(0);
    }
    let picked: Vec<u64> = near.iter().map(|&i| nonces[i]).collect();
    let exact = exact(&picked)?;
    for (k, &i) in near.iter().enumerate() {
        distances[i] = exact.get(k).copied().unwrap_or(f64::NAN);
    }
    Ok(near.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_near_boundary_nonces_are_recomputed() {
        let r = 1_346_000; // share bound 1_345_950
        let nonces = [10, 11, 12, 13, 14];
        let mut d = [1.2, 1.3449, 1.3465, 1.3480, 1.5];
        let n = recheck_near_boundary(&nonces, &mut d, r, |ns| {
            assert_eq!(ns, &[11, 12]);
            Ok(vec![1.34596, 1.34594])
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(d, [1.2, 1.34596, 1.34594, 1.3480, 1.5]);
    }

    #[test]
    fn a_short_exact_answer_never_claims() {
        let mut d = [1.3459, 1.3460];
        recheck_near_boundary(&[1, 2], &mut d, 1_346_000, |_| Ok(vec![1.3458])).unwrap();
        assert_eq!(d[0], 1.3458);
        assert!(d[1].is_nan());
    }
}
