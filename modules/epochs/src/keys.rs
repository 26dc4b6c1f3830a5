//! Storage keys of the epochs module.
//!
//! | key | value |
//! |---|---|
//! | `epochs/params` | [`crate::EpochParams`] (versioned, see [`crate::values`]) |
//! | `epochs/first_height` | u64 BE: height where epoch `first_epoch` starts |
//! | `epochs/first_epoch` | u64 BE: the schedule's anchor epoch (absent = 1; written when governance changes the epoch params) |
//! | `epochs/seed_hash/{epoch u64 BE}` | hash of the epoch's start block (sprint seed input) |
//! | `epochs/challenge_hash/{epoch u64 BE}` | hash of the epoch's challenge block |

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"epochs/";
pub const PARAMS: &[u8] = b"epochs/params";
pub const FIRST_HEIGHT: &[u8] = b"epochs/first_height";
pub const FIRST_EPOCH: &[u8] = b"epochs/first_epoch";

pub fn seed_hash(epoch: u64) -> Vec<u8> {
    [b"epochs/seed_hash/".as_slice(), &epoch.to_be_bytes()].concat()
}

pub fn challenge_hash(epoch: u64) -> Vec<u8> {
    [b"epochs/challenge_hash/".as_slice(), &epoch.to_be_bytes()].concat()
}
