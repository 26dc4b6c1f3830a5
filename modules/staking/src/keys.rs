//! Storage keys of the staking module. Every key starts with [`PREFIX`].
//!
//! | key | value |
//! |---|---|
//! | `staking/params` | [`crate::values`] [`crate::StakingParams`] |
//! | `staking/weight/{addr 20}` | u64 BE: effective weight in force (last settle, or genesis) |
//! | `staking/validator/{ed25519 pubkey 32}` | [`crate::values`] [`crate::state::ConsensusValidator`]: the power last given CometBFT for this key, and its host (CometBFT's next validator set) |
//! | `staking/misbehavior/{reported height BE 8}{validator address 20}` | [`crate::values`] [`crate::misbehavior::MisbehaviorRecord`] |
//! | `staking/validator_history` | [`crate::values`] [`crate::state::ValidatorHistory`]: the last changes of that set and their heights (CometBFT applies them two blocks later) |

use kiln_framework::Address;

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"staking/";
pub const PARAMS: &[u8] = b"staking/params";
pub const WEIGHT_PREFIX: &[u8] = b"staking/weight/";
/// How many hosts have weight in force (kept beside the weights, so a sprint
/// commitment can tell in O(1) how many of an epoch's places are reserved).
pub const HOSTS_WITH_WEIGHT: &[u8] = b"staking/hosts_with_weight";
pub const VALIDATOR_PREFIX: &[u8] = b"staking/validator/";
pub const VALIDATOR_HISTORY: &[u8] = b"staking/validator_history";
pub const MISBEHAVIOR_PREFIX: &[u8] = b"staking/misbehavior/";

pub fn misbehavior(height: u64, validator_address: &[u8]) -> Vec<u8> {
    [MISBEHAVIOR_PREFIX, &height.to_be_bytes(), validator_address].concat()
}

pub fn weight(addr: &Address) -> Vec<u8> {
    [WEIGHT_PREFIX, addr.as_bytes()].concat()
}

pub fn validator(consensus_pubkey: &[u8]) -> Vec<u8> {
    [VALIDATOR_PREFIX, consensus_pubkey].concat()
}
