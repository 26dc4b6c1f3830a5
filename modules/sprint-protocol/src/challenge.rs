//! Challenge seed, the epoch's beacon, leaf-index sampling and the opening
//! rule (SPEC §4 "Challenge and opening"). Integer-only and panic-free.
//!
//! No single party may choose the sample. Each host commits
//! `secret_hash = SHA256("kiln/sprint-secret/v1" ‖ secret)` with its sprint
//! commitment and reveals `secret` after the commit deadline. At the
//! challenge block the chain computes, once,
//! `beacon = SHA256("kiln/beacon/v1" ‖ hash of the challenge block ‖ every
//! revealed secret in host-address order)` and each host's challenge is
//! `challenge = SHA256(beacon ‖ addr)` ([`challenge_seed`] with the beacon) —
//! O(hosts) work, where hashing every secret once per host would be
//! O(hosts²).
//!
//! A sampled index `i` is opened together with its right-hand neighbour
//! `i + 1` (when it exists), and the nonces of all opened leaves must
//! strictly increase by index: a tree of repeated leaves then shows a
//! repeat at almost every sampled index.

use crate::stream::Stream;
use crate::{Address, Hash32};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Domain tag of a host's secret commitment.
pub const SECRET_DOMAIN: &[u8] = b"kiln/sprint-secret/v1";
/// Domain tag of the epoch's beacon.
pub const BEACON_DOMAIN: &[u8] = b"kiln/beacon/v1";
/// Length of a host's secret.
pub const SECRET_BYTES: usize = 32;

/// `SHA256("kiln/sprint-secret/v1" ‖ secret)`: what `MsgSprintCommit` carries.
pub fn secret_hash(secret: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(SECRET_DOMAIN);
    h.update(secret);
    h.finalize().into()
}

/// `beacon = SHA256("kiln/beacon/v1" ‖ challenge block hash ‖ secrets…)`,
/// the secrets in host-address order (the caller iterates them so).
pub fn beacon<'a>(
    challenge_block_hash: &[u8],
    secrets_in_address_order: impl IntoIterator<Item = &'a [u8]>,
) -> Hash32 {
    let mut h = Sha256::new();
    h.update(BEACON_DOMAIN);
    h.update(challenge_block_hash);
    for s in secrets_in_address_order {
        h.update(s);
    }
    h.finalize().into()
}

/// A host's challenge: `SHA256(beacon ‖ addr)` (with the plain challenge
/// block hash in place of the beacon, the spec vectors' form).
pub fn challenge_seed(beacon: &[u8], addr: &Address) -> Hash32 {
    let mut h = Sha256::new();
    h.update(beacon);
    h.update(addr);
    h.finalize().into()
}

/// The challenge of one of a host's ML nodes: `SHA256(beacon ‖ addr ‖
/// node id)`; with an empty id, the host's own [`challenge_seed`].
pub fn unit_challenge_seed(beacon: &[u8], addr: &Address, ml_node: &str) -> Hash32 {
    let mut h = Sha256::new();
    h.update(beacon);
    h.update(addr);
    h.update(ml_node.as_bytes());
    h.finalize().into()
}

/// `k = min(count, sprint_samples)` distinct leaf indices below `count`, in
/// draw order: integers below `count` from `stream(challenge)`, skipping
/// repeats. Empty when `count == 0`.
pub fn sample_indices(challenge: &Hash32, count: u32, sprint_samples: u32) -> Vec<u32> {
    let k = count.min(sprint_samples) as usize;
    let mut s = Stream::new(challenge);
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let i = s.next_below(count);
        if seen.insert(i) {
            out.push(i);
        }
    }
    out
}

/// The leaf indices an opening lists, in wire order: for each sampled index
/// `i` in sample order, `i` and then `i + 1` when `i + 1 < count`. (A
/// neighbour may also be sampled itself; it is then listed twice, each time
/// with its proof.)
pub fn opening_indices(sampled: &[u32], count: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(sampled.len().saturating_mul(2));
    for &i in sampled {
        out.push(i);
        if let Some(next) = i.checked_add(1).filter(|n| *n < count) {
            out.push(next);
        }
    }
    out
}

/// The opened leaves as validators see them: one `(index, nonce)` per
/// distinct index, sorted by index. `None` when their nonces do not strictly
/// increase by index (a nonce counted twice), or when one index was opened
/// with two different nonces.
pub fn ordered_opening(opened: &[(u64, u64)]) -> Option<Vec<(u64, u64)>> {
    let mut by_index = opened.to_vec();
    by_index.sort_unstable();
    by_index.dedup();
    // After dedup, an index seen twice carries two different nonces.
    if by_index
        .windows(2)
        .any(|w| w[0].0 == w[1].0 || w[0].1 >= w[1].1)
    {
        return None;
    }
    Some(by_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_follow_each_sampled_index_except_the_last_leaf() {
        assert_eq!(opening_indices(&[3, 9, 0], 10), vec![3, 4, 9, 0, 1]);
        assert_eq!(opening_indices(&[0], 1), vec![0]);
    }

    #[test]
    fn ordered_opening_refuses_repeats_and_merges_duplicates() {
        assert_eq!(
            ordered_opening(&[(4, 40), (5, 50), (1, 10), (4, 40)]),
            Some(vec![(1, 10), (4, 40), (5, 50)])
        );
        assert_eq!(ordered_opening(&[(4, 40), (5, 40)]), None);
        assert_eq!(ordered_opening(&[(4, 40), (4, 41)]), None);
    }

    #[test]
    fn the_beacon_depends_on_every_secret_and_their_order() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let ab = beacon(b"block", [a.as_slice(), b.as_slice()]);
        assert_ne!(ab, beacon(b"block", [a.as_slice()]));
        assert_ne!(ab, beacon(b"block", [b.as_slice(), a.as_slice()]));
        assert_ne!(ab, beacon(b"other", [a.as_slice(), b.as_slice()]));
    }
}
