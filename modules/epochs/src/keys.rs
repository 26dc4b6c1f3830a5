//! Storage keys of the epochs module.
//!
//! | key | value |
//! |---|---|
//! | `epochs/params` | [`crate::EpochParams`] (versioned, see [`crate::values`]) |
//! | `epochs/first_height` | u64 BE: height where epoch 1 starts |
//! | `epochs/seed_hash/{epoch u64 BE}` | hash of the epoch's start block (sprint seed input) |
//! | `epochs/challenge_hash/{epoch u64 BE}` | hash of the epoch's challenge block |

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"epochs/";
pub const PARAMS: &[u8] = b"epochs/params";
pub const FIRST_HEIGHT: &[u8] = b"epochs/first_height";

pub fn seed_hash(epoch: u64) -> Vec<u8> {
    [b"epochs/seed_hash/".as_slice(), &epoch.to_be_bytes()].concat()
}

pub fn challenge_hash(epoch: u64) -> Vec<u8> {
    [b"epochs/challenge_hash/".as_slice(), &epoch.to_be_bytes()].concat()
}
