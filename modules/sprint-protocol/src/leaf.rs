//! Share leaves `(n, d_q)` and their hashes (SPEC §4 "Commitment").

use crate::Hash32;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One share: the nonce and its quantised distance `d_q = floor(d·10^4 + 0.5)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Leaf {
    pub nonce: u64,
    pub d_q: u32,
}

/// Encoded size of a leaf (`n` u64 LE ‖ `d_q` u32 LE).
pub const LEAF_BYTES: usize = 12;

impl Leaf {
    /// `SHA256(0x00 ‖ n LE ‖ d_q LE)`.
    pub fn hash(&self) -> Hash32 {
        leaf_hash(self.nonce, self.d_q)
    }

    /// `n LE ‖ d_q LE`.
    pub fn to_bytes(&self) -> [u8; LEAF_BYTES] {
        let mut b = [0u8; LEAF_BYTES];
        b[..8].copy_from_slice(&self.nonce.to_le_bytes());
        b[8..].copy_from_slice(&self.d_q.to_le_bytes());
        b
    }

    /// Inverse of [`Leaf::to_bytes`]; `None` on a wrong length.
    pub fn from_bytes(b: &[u8]) -> Option<Leaf> {
        if b.len() != LEAF_BYTES {
            return None;
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&b[..8]);
        let mut d = [0u8; 4];
        d.copy_from_slice(&b[8..]);
        Some(Leaf {
            nonce: u64::from_le_bytes(n),
            d_q: u32::from_le_bytes(d),
        })
    }
}

/// `SHA256(0x00 ‖ n LE ‖ d_q LE)`.
pub fn leaf_hash(nonce: u64, d_q: u32) -> Hash32 {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(nonce.to_le_bytes());
    h.update(d_q.to_le_bytes());
    h.finalize().into()
}

#[cfg(feature = "float")]
/// Worker-side: `floor(d · 10^4 + 0.5)` as u32 (saturating; NaN → u32::MAX so
/// it can never look like a share).
pub fn quantize_distance(d: f64) -> u32 {
    let q = (d * 1e4 + 0.5).floor();
    if q.is_nan() || q >= u32::MAX as f64 {
        u32::MAX
    } else if q <= 0.0 {
        0
    } else {
        q as u32
    }
}

/// True when nonces are strictly increasing (no nonce can count twice).
pub fn strictly_increasing(leaves: &[Leaf]) -> bool {
    leaves.windows(2).all(|w| w[0].nonce < w[1].nonce)
}

/// Integer share rule: `d_q` in 1e-4 units against `r_target` in millionths.
/// A leaf claims a share when `d_q · 100 < r_target_micro`.
pub fn claims_share(d_q: u32, r_target_micro: u64) -> bool {
    (d_q as u64) * 100 < r_target_micro
}
