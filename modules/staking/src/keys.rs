//! Storage keys of the staking module. Every key starts with [`PREFIX`].
//!
//! | key | value |
//! |---|---|
//! | `staking/params` | [`crate::values`] [`crate::StakingParams`] |
//! | `staking/weight/{addr 20}` | u64 BE: effective weight in force (last settle, or genesis) |
//! | `staking/validator/{ed25519 pubkey 32}` | [`crate::values`] [`crate::state::ConsensusValidator`]: the power last given CometBFT for this key, and its host (CometBFT's next validator set) |
//! | `staking/misbehavior/{reported height BE 8}{validator address 20}` | [`crate::values`] [`crate::misbehavior::MisbehaviorRecord`] |
//! | `staking/pool/{host 20}` | [`crate::pools::HostPool`] |
//! | `staking/delegation/{host 20}{delegator 20}` | u128 BE: the delegation's shares |
//! | `staking/delegator/{delegator 20}{host 20}` | empty: index of a delegator's delegations |
//! | `staking/unbonding/{host 20}{delegator 20}{seq 8}` | [`crate::pools::UnbondingEntry`] |
//! | `staking/unbonding_queue/{epoch 8}{host 20}{delegator 20}{seq 8}` | empty: the entry matures at that epoch's settle |
//! | `staking/unbonding_by/{delegator 20}{host 20}{seq 8}` | empty: index of a delegator's entries |
//! | `staking/unbonding_seq` | u64 BE: the next entry's number |
//! | `staking/reward_checkpoint/{host 20}{delegator 20}` | u128 BE: the pool's reward ratio when the delegator was last paid |
//! | `staking/jailed/{host 20}` | [`crate::jail::JailRecord`] |
//! | `staking/validator_set_dirty` | present when a jail changed the weights in force in this block |
//! | `staking/settled_epoch` | u64 BE: the epoch of the last settle |
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
pub const POOL_PREFIX: &[u8] = b"staking/pool/";
pub const DELEGATION_PREFIX: &[u8] = b"staking/delegation/";
pub const DELEGATOR_PREFIX: &[u8] = b"staking/delegator/";
pub const UNBONDING_PREFIX: &[u8] = b"staking/unbonding/";
pub const UNBONDING_QUEUE_PREFIX: &[u8] = b"staking/unbonding_queue/";
pub const UNBONDING_BY_PREFIX: &[u8] = b"staking/unbonding_by/";
pub const UNBONDING_SEQ: &[u8] = b"staking/unbonding_seq";
pub const SETTLED_EPOCH: &[u8] = b"staking/settled_epoch";
pub const REWARD_CHECKPOINT_PREFIX: &[u8] = b"staking/reward_checkpoint/";
pub const JAILED_PREFIX: &[u8] = b"staking/jailed/";
pub const VALIDATOR_SET_DIRTY: &[u8] = b"staking/validator_set_dirty";

pub fn jailed(host: &Address) -> Vec<u8> {
    [JAILED_PREFIX, host.as_bytes()].concat()
}

/// All unbonding entries out of `host`'s pool.
pub fn unbonding_of_host(host: &Address) -> Vec<u8> {
    [UNBONDING_PREFIX, host.as_bytes()].concat()
}

pub fn reward_checkpoint(host: &Address, delegator: &Address) -> Vec<u8> {
    [
        REWARD_CHECKPOINT_PREFIX,
        host.as_bytes(),
        delegator.as_bytes(),
    ]
    .concat()
}

pub fn pool(host: &Address) -> Vec<u8> {
    [POOL_PREFIX, host.as_bytes()].concat()
}

pub fn delegations_of_host(host: &Address) -> Vec<u8> {
    [DELEGATION_PREFIX, host.as_bytes()].concat()
}

pub fn delegation(host: &Address, delegator: &Address) -> Vec<u8> {
    [DELEGATION_PREFIX, host.as_bytes(), delegator.as_bytes()].concat()
}

pub fn delegator_of(delegator: &Address) -> Vec<u8> {
    [DELEGATOR_PREFIX, delegator.as_bytes()].concat()
}

pub fn delegator_index(delegator: &Address, host: &Address) -> Vec<u8> {
    [DELEGATOR_PREFIX, delegator.as_bytes(), host.as_bytes()].concat()
}

pub fn unbonding(host: &Address, delegator: &Address, seq: u64) -> Vec<u8> {
    [
        UNBONDING_PREFIX,
        host.as_bytes(),
        delegator.as_bytes(),
        &seq.to_be_bytes(),
    ]
    .concat()
}

pub fn unbonding_queue(epoch: u64, host: &Address, delegator: &Address, seq: u64) -> Vec<u8> {
    [
        UNBONDING_QUEUE_PREFIX,
        &epoch.to_be_bytes(),
        host.as_bytes(),
        delegator.as_bytes(),
        &seq.to_be_bytes(),
    ]
    .concat()
}

pub fn unbonding_by_of(delegator: &Address) -> Vec<u8> {
    [UNBONDING_BY_PREFIX, delegator.as_bytes()].concat()
}

pub fn unbonding_by(delegator: &Address, host: &Address, seq: u64) -> Vec<u8> {
    [
        UNBONDING_BY_PREFIX,
        delegator.as_bytes(),
        host.as_bytes(),
        &seq.to_be_bytes(),
    ]
    .concat()
}

pub fn misbehavior(height: u64, validator_address: &[u8]) -> Vec<u8> {
    [MISBEHAVIOR_PREFIX, &height.to_be_bytes(), validator_address].concat()
}

pub fn weight(addr: &Address) -> Vec<u8> {
    [WEIGHT_PREFIX, addr.as_bytes()].concat()
}

pub fn validator(consensus_pubkey: &[u8]) -> Vec<u8> {
    [VALIDATOR_PREFIX, consensus_pubkey].concat()
}
