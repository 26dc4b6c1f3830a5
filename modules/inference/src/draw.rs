//! Who executes a request (SPEC §5 "Request path", §6 reliability): a draw
//! by weight × reliability among the hosts serving the model, seeded by
//! `SHA256(block hash ‖ request signature)`. The transfer agent cannot pick
//! the executor, and the chain re-derives the draw and refuses a settlement
//! for anyone else. Integer arithmetic only.

use kiln_framework::Address;
use sha2::{Digest, Sha256};

/// A host that may execute: its weight in force and its reliability factor
/// in basis points ([`reliability_bps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub host: Address,
    pub weight: u64,
    pub reliability_bps: u64,
}

/// SPEC §6's tiers from last epoch's completion rate: ≥ 99.5% → 1.0, ≥ 98%
/// → 0.9, ≥ 96% → 0.8, else 0.5 (in basis points). A host with no finished
/// or missed request yet counts as fully reliable.
pub fn reliability_bps(completed: u64, missed: u64) -> u64 {
    let total = u128::from(completed) + u128::from(missed);
    if total == 0 {
        return 10_000;
    }
    // The completion rate in basis points, rounded down.
    let per_10k = u128::from(completed) * 10_000 / total;
    match per_10k {
        9_950.. => 10_000,
        9_800.. => 9_000,
        9_600.. => 8_000,
        _ => 5_000,
    }
}

/// The draw's seed: `SHA256(block_hash ‖ request_signature)`.
pub fn draw_seed(block_hash: &[u8], request_signature: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(block_hash);
    h.update(request_signature);
    h.finalize().into()
}

/// The executor for `seed`: candidates are ordered by address (so the
/// caller's order does not matter), each holds the interval
/// `weight × reliability_bps` of a cumulative table, and the seed's first 16
/// bytes mod the total pick one (the modulo bias is below 2⁻⁶⁴ for any total
/// that fits in u64 × 10⁴). `None` when no candidate has weight.
pub fn draw_executor(candidates: &[Candidate], seed: &[u8; 32]) -> Option<Address> {
    let mut sorted: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.weight > 0 && c.reliability_bps > 0)
        .collect();
    sorted.sort_by_key(|c| c.host);
    sorted.dedup_by_key(|c| c.host);
    let total: u128 = sorted
        .iter()
        .map(|c| u128::from(c.weight) * u128::from(c.reliability_bps))
        .sum();
    if total == 0 {
        return None;
    }
    let mut first = [0u8; 16];
    first.copy_from_slice(&seed[..16]);
    let mut point = u128::from_be_bytes(first) % total;
    for c in sorted {
        let share = u128::from(c.weight) * u128::from(c.reliability_bps);
        if point < share {
            return Some(c.host);
        }
        point -= share;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(i: u8) -> Address {
        Address([i; 20])
    }

    #[test]
    fn reliability_tiers_follow_the_spec() {
        assert_eq!(reliability_bps(0, 0), 10_000);
        assert_eq!(reliability_bps(995, 5), 10_000);
        assert_eq!(reliability_bps(994, 6), 9_000);
        assert_eq!(reliability_bps(980, 20), 9_000);
        assert_eq!(reliability_bps(979, 21), 8_000);
        assert_eq!(reliability_bps(960, 40), 8_000);
        assert_eq!(reliability_bps(959, 41), 5_000);
        assert_eq!(reliability_bps(0, 1), 5_000);
    }

    #[test]
    fn the_draw_is_deterministic_and_ignores_the_callers_order() {
        let c = [
            Candidate {
                host: host(3),
                weight: 10,
                reliability_bps: 10_000,
            },
            Candidate {
                host: host(1),
                weight: 30,
                reliability_bps: 9_000,
            },
            Candidate {
                host: host(2),
                weight: 0,
                reliability_bps: 10_000,
            },
        ];
        let mut reversed = c;
        reversed.reverse();
        for i in 0..200u32 {
            let seed = draw_seed(b"block", &i.to_be_bytes());
            let a = draw_executor(&c, &seed);
            assert_eq!(a, draw_executor(&reversed, &seed));
            assert_ne!(a, Some(host(2)), "a host without weight is never drawn");
            assert!(a.is_some());
        }
        assert_eq!(draw_executor(&c[2..], &draw_seed(b"b", b"s")), None);
        assert_eq!(draw_executor(&[], &draw_seed(b"b", b"s")), None);
    }

    /// 40 000 draws over weights 1:2:5 with one host at reliability 0.5
    /// (so 1:2:2.5): each share within 1.5 percentage points of expected.
    #[test]
    fn hosts_are_drawn_in_proportion_to_weight_times_reliability() {
        let c = [
            Candidate {
                host: host(1),
                weight: 100,
                reliability_bps: 10_000,
            },
            Candidate {
                host: host(2),
                weight: 200,
                reliability_bps: 10_000,
            },
            Candidate {
                host: host(3),
                weight: 500,
                reliability_bps: 5_000,
            },
        ];
        let n = 40_000u32;
        let mut counts = [0u32; 3];
        for i in 0..n {
            let seed = draw_seed(&i.to_le_bytes(), b"signature");
            let a = draw_executor(&c, &seed).unwrap();
            counts[usize::from(a.0[0]) - 1] += 1;
        }
        // Expected shares 2/11, 4/11, 5/11; tolerance 1.5% of n (600 draws),
        // compared ×11 to stay in integers.
        for (k, (&got, w)) in counts.iter().zip([2u32, 4, 5]).enumerate() {
            let (got11, want11) = (got * 11, n * w);
            assert!(
                got11.abs_diff(want11) < 600 * 11,
                "host {k}: {got} draws, expected {} ({counts:?})",
                want11 / 11
            );
        }
    }
}
