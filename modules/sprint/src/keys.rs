//! Storage keys of the host registry and the sprint. Epochs and addresses are
//! fixed-width (u64 BE, 20 bytes), so prefixes iterate in (epoch, host) order.
//!
//! | key | value |
//! |---|---|
//! | `hosts/host/{addr}` | JSON [`crate::state::Host`] |
//! | `hosts/by_consensus/{ed25519 pubkey 32}` | owner address (20 bytes) |
//! | `sprint/params` | JSON [`crate::params::SprintParams`] |
//! | `sprint/weight/{addr}` | u64 BE: effective weight in force (last settle, or genesis) |
//! | `sprint/commit/{epoch}/{addr}` | JSON [`crate::state::Commitment`] |
//! | `sprint/open/{epoch}/{addr}` | JSON list of opened [`crate::state::Opened`] leaves |
//! | `sprint/vote_commit/{epoch}/{host}/{validator}` | 32-byte vote commitment |
//! | `sprint/vote_reveal/{epoch}/{host}/{validator}` | 1 byte: 1 valid, 0 invalid |
//! | `sprint/result/{epoch}/{addr}` | JSON [`crate::state::EpochResult`] written at settle |
//! | `sprint/power_schedule` | JSON [`crate::state::PowerSchedule`]: the last settle's power change and when CometBFT applies it |

use kiln_framework::Address;

pub const PARAMS: &[u8] = b"sprint/params";
pub const HOST_PREFIX: &[u8] = b"hosts/host/";
pub const WEIGHT_PREFIX: &[u8] = b"sprint/weight/";
pub const POWER_SCHEDULE: &[u8] = b"sprint/power_schedule";

pub fn host(addr: &Address) -> Vec<u8> {
    [HOST_PREFIX, addr.as_bytes()].concat()
}

pub fn by_consensus(pubkey: &[u8]) -> Vec<u8> {
    [b"hosts/by_consensus/".as_slice(), pubkey].concat()
}

pub fn weight(addr: &Address) -> Vec<u8> {
    [WEIGHT_PREFIX, addr.as_bytes()].concat()
}

pub fn commits_of_epoch(epoch: u64) -> Vec<u8> {
    [b"sprint/commit/".as_slice(), &epoch.to_be_bytes()].concat()
}

pub fn commit(epoch: u64, addr: &Address) -> Vec<u8> {
    [commits_of_epoch(epoch).as_slice(), addr.as_bytes()].concat()
}

pub fn open(epoch: u64, addr: &Address) -> Vec<u8> {
    [
        b"sprint/open/".as_slice(),
        &epoch.to_be_bytes(),
        addr.as_bytes(),
    ]
    .concat()
}

pub fn vote_commits_for(epoch: u64, host: &Address) -> Vec<u8> {
    [
        b"sprint/vote_commit/".as_slice(),
        &epoch.to_be_bytes(),
        host.as_bytes(),
    ]
    .concat()
}

pub fn vote_commit(epoch: u64, host: &Address, validator: &Address) -> Vec<u8> {
    [
        vote_commits_for(epoch, host).as_slice(),
        validator.as_bytes(),
    ]
    .concat()
}

pub fn vote_reveal(epoch: u64, host: &Address, validator: &Address) -> Vec<u8> {
    [
        b"sprint/vote_reveal/".as_slice(),
        &epoch.to_be_bytes(),
        host.as_bytes(),
        validator.as_bytes(),
    ]
    .concat()
}

pub fn result(epoch: u64, addr: &Address) -> Vec<u8> {
    [
        b"sprint/result/".as_slice(),
        &epoch.to_be_bytes(),
        addr.as_bytes(),
    ]
    .concat()
}
