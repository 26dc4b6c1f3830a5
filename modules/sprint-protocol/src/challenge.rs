//! Challenge seed and leaf-index sampling (SPEC §4 "Challenge and opening").
//! Integer-only and panic-free.

use crate::stream::Stream;
use crate::{Address, Hash32};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// `challenge = SHA256(hash of the challenge block ‖ addr)`.
pub fn challenge_seed(challenge_block_hash: &[u8], addr: &Address) -> Hash32 {
    let mut h = Sha256::new();
    h.update(challenge_block_hash);
    h.update(addr);
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
