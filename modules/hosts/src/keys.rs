//! Storage keys of the host registry. Every key starts with [`PREFIX`].
//!
//! | key | value |
//! |---|---|
//! | `hosts/host/{addr 20}` | [`crate::values`] host record |
//! | `hosts/by_consensus/{ed25519 pubkey 32}` | owner address (20 bytes) |
//! | `hosts/mlnode/{addr 20}{id}`, `hosts/mlnode_lanes/{addr 20}`, `hosts/mlnode_pending/{addr 20}{id}` | ML nodes (see [`crate::mlnodes`]) |
//! | `hosts/key_rotated/{addr 20}` | `[1]`: the host changed its consensus key in this block (staking consumes it at the end of the block) |

use kiln_framework::Address;

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"hosts/";
pub const HOST_PREFIX: &[u8] = b"hosts/host/";
pub const BY_CONSENSUS_PREFIX: &[u8] = b"hosts/by_consensus/";
pub const KEY_ROTATED_PREFIX: &[u8] = b"hosts/key_rotated/";

pub fn host(addr: &Address) -> Vec<u8> {
    [HOST_PREFIX, addr.as_bytes()].concat()
}

pub fn by_consensus(pubkey: &[u8]) -> Vec<u8> {
    [BY_CONSENSUS_PREFIX, pubkey].concat()
}

pub fn key_rotated(addr: &Address) -> Vec<u8> {
    [KEY_ROTATED_PREFIX, addr.as_bytes()].concat()
}
