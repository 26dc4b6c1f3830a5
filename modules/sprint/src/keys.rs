//! Storage keys of the sprint. Every key starts with [`PREFIX`]. Epochs and
//! addresses are fixed-width (u64 BE, 20 bytes), so prefixes iterate in
//! (epoch, host) order. Structured values go through [`crate::values`].
//!
//! | key | value |
//! |---|---|
//! | `sprint/params` | [`crate::params::SprintParams`] |
//! | `sprint/commit/{epoch}/{unit}` | [`crate::state::Commitment`] |
//! | `sprint/secret_hash/{epoch}/{unit}` | 32-byte secret commitment of the unit's last `MsgSprintCommit` |
//! | `sprint/secret/{epoch}/{unit}` | the unit's revealed 32-byte secret |
//! | `sprint/beacon/{epoch}` | 32-byte beacon computed at the challenge block |
//! | `sprint/open/{epoch}/{unit}` | [`crate::state::OpenedLeaves`] |
//! | `sprint/vote_commit/{epoch}/{host}/{voter}` | 32-byte vote commitment |
//! | `sprint/vote_reveal/{epoch}/{host}/{voter}` | 1 byte: 1 valid, 0 invalid |
//! | `sprint/result/{epoch}/{addr}` | [`crate::state::EpochResult`] written at settle |
//! | `sprint/committee/{epoch}/{host}` | [`crate::state::AssignedCommittee`]: members and their weights in force, written when the vote stages start |
//! | `sprint/member_votes/{epoch}/{host}` | one byte per committee member, in the committee's order ([`crate::state::MemberVoteState`]): what settle tallies, in one read |
//! | `sprint/duty/{epoch}/{voter}` | [`crate::state::AssignedDuties`]: the same assignment indexed by voter (for `Duties`) |
//! | `sprint/escalated/{epoch}/{host}` | empty: a revealed `invalid` vote sent the host to the all-weight tally |
//! | `sprint/esc_commit/{epoch}/{host}/{voter}` | 32-byte escalation vote commitment |
//! | `sprint/esc_reveal/{epoch}/{host}/{voter}` | 1 byte: 1 valid, 0 invalid |
//! | `sprint/bond/{epoch}/{host}` | u128 BE: ukiln locked by the host's first commitment (deleted at settle) |
//!
//! Bonds are held by the module account [`BOND_ESCROW`] until settle.
//!
//! A **sprint unit** ([`unit`]) is what commits, reveals and opens one
//! tree: the host's own worker (`{unit}` = the host's 20 bytes, the only
//! unit before ML nodes) or one of its ML nodes (`{unit}` = host ‖ node
//! id). A host's units are adjacent under each epoch prefix, so one scan
//! reads them together. Committees, votes, bonds and results stay per host.

use kiln_framework::Address;

/// The module account holding commitment bonds until settle.
pub const BOND_ESCROW: &str = "sprint_bonds";

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"sprint/";
pub const PARAMS: &[u8] = b"sprint/params";

pub fn commits_of_epoch(epoch: u64) -> Vec<u8> {
    [b"sprint/commit/".as_slice(), &epoch.to_be_bytes()].concat()
}

/// The key suffix of a sprint unit: the host's address, then the ML node
/// id (empty for the host's own worker).
pub fn unit(host: &Address, ml_node: &str) -> Vec<u8> {
    [host.as_bytes(), ml_node.as_bytes()].concat()
}

/// The commitment of the host's own worker (no ML node).
pub fn commit(epoch: u64, addr: &Address) -> Vec<u8> {
    unit_commit(epoch, addr, "")
}

pub fn unit_commit(epoch: u64, host: &Address, ml_node: &str) -> Vec<u8> {
    [commits_of_epoch(epoch).as_slice(), &unit(host, ml_node)].concat()
}

/// Every unit's commitment of `host` in `epoch`.
pub fn commits_of_host(epoch: u64, host: &Address) -> Vec<u8> {
    [commits_of_epoch(epoch).as_slice(), host.as_bytes()].concat()
}

pub fn opens_of_epoch(epoch: u64) -> Vec<u8> {
    [b"sprint/open/".as_slice(), &epoch.to_be_bytes()].concat()
}

pub fn secret_hash(epoch: u64, host: &Address, ml_node: &str) -> Vec<u8> {
    [
        b"sprint/secret_hash/".as_slice(),
        &epoch.to_be_bytes(),
        &unit(host, ml_node),
    ]
    .concat()
}

/// Revealed secrets of `epoch`; iterating this prefix yields them in address order.
pub fn secrets_of_epoch(epoch: u64) -> Vec<u8> {
    [b"sprint/secret/".as_slice(), &epoch.to_be_bytes()].concat()
}

pub fn secret(epoch: u64, host: &Address, ml_node: &str) -> Vec<u8> {
    [secrets_of_epoch(epoch).as_slice(), &unit(host, ml_node)].concat()
}

pub fn beacon(epoch: u64) -> Vec<u8> {
    [b"sprint/beacon/".as_slice(), &epoch.to_be_bytes()].concat()
}

/// The opening of the host's own worker (no ML node).
pub fn open(epoch: u64, addr: &Address) -> Vec<u8> {
    unit_open(epoch, addr, "")
}

pub fn unit_open(epoch: u64, host: &Address, ml_node: &str) -> Vec<u8> {
    [opens_of_epoch(epoch).as_slice(), &unit(host, ml_node)].concat()
}

/// Every unit's opening of `host` in `epoch`.
pub fn opens_of_host(epoch: u64, host: &Address) -> Vec<u8> {
    [opens_of_epoch(epoch).as_slice(), host.as_bytes()].concat()
}

pub fn vote_commits_for(epoch: u64, host: &Address) -> Vec<u8> {
    [
        b"sprint/vote_commit/".as_slice(),
        &epoch.to_be_bytes(),
        host.as_bytes(),
    ]
    .concat()
}

pub fn vote_commit(epoch: u64, host: &Address, voter: &Address) -> Vec<u8> {
    [vote_commits_for(epoch, host).as_slice(), voter.as_bytes()].concat()
}

pub fn vote_reveal(epoch: u64, host: &Address, voter: &Address) -> Vec<u8> {
    [
        b"sprint/vote_reveal/".as_slice(),
        &epoch.to_be_bytes(),
        host.as_bytes(),
        voter.as_bytes(),
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

fn epoch_key(tag: &[u8], epoch: u64, parts: &[&Address]) -> Vec<u8> {
    let mut k = [tag, &epoch.to_be_bytes()].concat();
    for p in parts {
        k.extend_from_slice(p.as_bytes());
    }
    k
}

pub fn committees_of_epoch(epoch: u64) -> Vec<u8> {
    epoch_key(b"sprint/committee/", epoch, &[])
}

pub fn member_votes_of_epoch(epoch: u64) -> Vec<u8> {
    epoch_key(b"sprint/member_votes/", epoch, &[])
}

pub fn bonds_of_epoch(epoch: u64) -> Vec<u8> {
    epoch_key(b"sprint/bond/", epoch, &[])
}

pub fn committee(epoch: u64, host: &Address) -> Vec<u8> {
    epoch_key(b"sprint/committee/", epoch, &[host])
}

pub fn member_votes(epoch: u64, host: &Address) -> Vec<u8> {
    epoch_key(b"sprint/member_votes/", epoch, &[host])
}

pub fn duties(epoch: u64, voter: &Address) -> Vec<u8> {
    epoch_key(b"sprint/duty/", epoch, &[voter])
}

pub fn escalated_of_epoch(epoch: u64) -> Vec<u8> {
    epoch_key(b"sprint/escalated/", epoch, &[])
}

pub fn escalated(epoch: u64, host: &Address) -> Vec<u8> {
    epoch_key(b"sprint/escalated/", epoch, &[host])
}

pub fn escalation_commit(epoch: u64, host: &Address, voter: &Address) -> Vec<u8> {
    epoch_key(b"sprint/esc_commit/", epoch, &[host, voter])
}

pub fn escalation_reveals_for(epoch: u64, host: &Address) -> Vec<u8> {
    epoch_key(b"sprint/esc_reveal/", epoch, &[host])
}

pub fn escalation_commits_for(epoch: u64, host: &Address) -> Vec<u8> {
    epoch_key(b"sprint/esc_commit/", epoch, &[host])
}

pub fn escalation_reveal(epoch: u64, host: &Address, voter: &Address) -> Vec<u8> {
    epoch_key(b"sprint/esc_reveal/", epoch, &[host, voter])
}

pub fn bond(epoch: u64, host: &Address) -> Vec<u8> {
    epoch_key(b"sprint/bond/", epoch, &[host])
}

pub const BOND_PREFIX: &[u8] = b"sprint/bond/";

/// How many hosts without weight in force committed in `epoch` (their places
/// count against `max_hosts_per_epoch`).
pub fn new_hosts(epoch: u64) -> Vec<u8> {
    epoch_key(b"sprint/new_hosts/", epoch, &[])
}
