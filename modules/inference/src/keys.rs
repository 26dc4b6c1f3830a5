//! Storage keys of the inference module. Every key starts with [`PREFIX`].
//! Heights are u64 big-endian so that a prefix scan lists them in order;
//! ids are the 32-byte request ids ([`crate::request::request_id`]);
//! addresses are their 20 bytes.
//!
//! | key | value |
//! |---|---|
//! | `inference/params` | [`crate::InferenceParams`] |
//! | `inference/model/{id}` | [`crate::Model`] |
//! | `inference/retired/{model}` | u64 BE: the height governance retired the model at (no new requests) |
//! | `inference/price/{model}` | u64 BE: the price per token in pkiln |
//! | `inference/used/{model}` | u64 BE: tokens the block's requests took (reset at the end of each block) |
//! | `inference/record/{id}` | [`crate::state::InferenceRecord`] |
//! | `inference/deadline/{height}/{id}` | empty: an open inference that expires at the end of `height` |
//! | `inference/early/{id}/{executor}` | [`crate::state::EarlyFinish`]: a finish that arrived before its start |
//! | `inference/early_deadline/{height}/{id}{executor}` | empty: when that early finish is dropped |
//! | `inference/by_requester/{requester}/{height}/{id}` | empty: the requester's inferences by start height |
//! | `inference/prune/{height}/{id}` | empty: a settled record removed at the end of `height` |
//! | `inference/serving/{model}` | [`crate::state::ServingSet`]: the executor draw's candidates |
//! | `inference/stats/{host}` | [`crate::state::HostStats`] |
//! | `inference/served/{epoch 8}{host 20}` | u64 BE: inferences the host finished in that epoch (the leaderboard) |
//! | `inference/block_hash/{height}` | the block's hash (kept for `draw_window_blocks`) |
//! | `inference/validation/{id}/{validator}` | u64 BE: the validator's score (millionths) |
//! | `inference/dispute/{id}` | [`crate::state::Dispute`] |
//! | `inference/dispute_deadline/{height}/{id}` | empty: the dispute is tallied at the end of `height` |
//! | `inference/dispute_vote/{id}/{voter}` | 1 byte: 1 = invalid, 0 = valid |
//! | `inference/period` | u64 BE: the serving period in force (the epoch of the last settle) |
//! | `inference/traffic/{model}` | u64 BE: inferences of the model finished in the previous period |
//! | `inference/seed/{period}/{host}` | [`crate::duties::SeedCommit`] |
//! | `inference/duty/{period}/{id}` | [`crate::duties::DutyEntry`]: a finished inference owed validations |
//! | `inference/period_serving/{period}/{model}` | [`crate::state::ServingSet`]: the period's duty weights |
//! | `inference/duty_record/{period}/{host}` | [`crate::duties::DutyRecord`] |

use kiln_framework::Address;

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"inference/";
pub const PARAMS: &[u8] = b"inference/params";
pub const MODEL_PREFIX: &[u8] = b"inference/model/";
pub const RETIRED_PREFIX: &[u8] = b"inference/retired/";

pub fn retired(id: &str) -> Vec<u8> {
    [RETIRED_PREFIX, id.as_bytes()].concat()
}
pub const PRICE_PREFIX: &[u8] = b"inference/price/";
pub const USED_PREFIX: &[u8] = b"inference/used/";
pub const RECORD_PREFIX: &[u8] = b"inference/record/";
pub const DEADLINE_PREFIX: &[u8] = b"inference/deadline/";
pub const EARLY_PREFIX: &[u8] = b"inference/early/";
pub const EARLY_DEADLINE_PREFIX: &[u8] = b"inference/early_deadline/";
pub const BY_REQUESTER_PREFIX: &[u8] = b"inference/by_requester/";
pub const PRUNE_PREFIX: &[u8] = b"inference/prune/";
pub const SERVING_PREFIX: &[u8] = b"inference/serving/";
pub const STATS_PREFIX: &[u8] = b"inference/stats/";
pub const BLOCK_HASH_PREFIX: &[u8] = b"inference/block_hash/";

pub const VALIDATION_PREFIX: &[u8] = b"inference/validation/";
pub const DISPUTE_PREFIX: &[u8] = b"inference/dispute/";
pub const DISPUTE_DEADLINE_PREFIX: &[u8] = b"inference/dispute_deadline/";
pub const DISPUTE_VOTE_PREFIX: &[u8] = b"inference/dispute_vote/";

pub const PERIOD: &[u8] = b"inference/period";
pub const TRAFFIC_PREFIX: &[u8] = b"inference/traffic/";
pub const SEED_PREFIX: &[u8] = b"inference/seed/";
pub const DUTY_PREFIX: &[u8] = b"inference/duty/";
pub const PERIOD_SERVING_PREFIX: &[u8] = b"inference/period_serving/";
pub const DUTY_RECORD_PREFIX: &[u8] = b"inference/duty_record/";

/// The module account that holds open inferences' escrows.
pub const ESCROW_ACCOUNT: &str = "inference_escrow";

pub fn model(id: &str) -> Vec<u8> {
    [MODEL_PREFIX, id.as_bytes()].concat()
}

pub fn price(id: &str) -> Vec<u8> {
    [PRICE_PREFIX, id.as_bytes()].concat()
}

pub fn used(id: &str) -> Vec<u8> {
    [USED_PREFIX, id.as_bytes()].concat()
}

pub fn record(id: &[u8; 32]) -> Vec<u8> {
    [RECORD_PREFIX, id].concat()
}

pub fn deadline_at(height: u64) -> Vec<u8> {
    [DEADLINE_PREFIX, &height.to_be_bytes()].concat()
}

pub fn deadline(height: u64, id: &[u8; 32]) -> Vec<u8> {
    [DEADLINE_PREFIX, &height.to_be_bytes(), id].concat()
}

pub fn early(id: &[u8; 32], executor: &Address) -> Vec<u8> {
    [EARLY_PREFIX, id, executor.as_bytes()].concat()
}

pub fn early_deadline_at(height: u64) -> Vec<u8> {
    [EARLY_DEADLINE_PREFIX, &height.to_be_bytes()].concat()
}

pub fn early_deadline(height: u64, id: &[u8; 32], executor: &Address) -> Vec<u8> {
    [
        EARLY_DEADLINE_PREFIX,
        &height.to_be_bytes(),
        id,
        executor.as_bytes(),
    ]
    .concat()
}

pub fn by_requester_of(requester: &Address) -> Vec<u8> {
    [BY_REQUESTER_PREFIX, requester.as_bytes()].concat()
}

pub fn by_requester(requester: &Address, height: u64, id: &[u8; 32]) -> Vec<u8> {
    [
        BY_REQUESTER_PREFIX,
        requester.as_bytes(),
        &height.to_be_bytes(),
        id,
    ]
    .concat()
}

pub fn prune_at(height: u64) -> Vec<u8> {
    [PRUNE_PREFIX, &height.to_be_bytes()].concat()
}

pub fn prune(height: u64, id: &[u8; 32]) -> Vec<u8> {
    [PRUNE_PREFIX, &height.to_be_bytes(), id].concat()
}

pub fn serving(model: &str) -> Vec<u8> {
    [SERVING_PREFIX, model.as_bytes()].concat()
}

pub const SERVED_PREFIX: &[u8] = b"inference/served/";

pub fn served(epoch: u64, host: &Address) -> Vec<u8> {
    [SERVED_PREFIX, &epoch.to_be_bytes(), host.as_bytes()].concat()
}

pub fn stats(host: &Address) -> Vec<u8> {
    [STATS_PREFIX, host.as_bytes()].concat()
}

pub fn block_hash(height: u64) -> Vec<u8> {
    [BLOCK_HASH_PREFIX, &height.to_be_bytes()].concat()
}

pub fn validation(id: &[u8; 32], validator: &Address) -> Vec<u8> {
    [VALIDATION_PREFIX, id, validator.as_bytes()].concat()
}

pub fn dispute(id: &[u8; 32]) -> Vec<u8> {
    [DISPUTE_PREFIX, id].concat()
}

pub fn dispute_deadline_at(height: u64) -> Vec<u8> {
    [DISPUTE_DEADLINE_PREFIX, &height.to_be_bytes()].concat()
}

pub fn dispute_deadline(height: u64, id: &[u8; 32]) -> Vec<u8> {
    [DISPUTE_DEADLINE_PREFIX, &height.to_be_bytes(), id].concat()
}

pub fn dispute_vote(id: &[u8; 32], voter: &Address) -> Vec<u8> {
    [DISPUTE_VOTE_PREFIX, id, voter.as_bytes()].concat()
}

pub fn validations_of(id: &[u8; 32]) -> Vec<u8> {
    [VALIDATION_PREFIX, id].concat()
}

pub fn traffic(model: &str) -> Vec<u8> {
    [TRAFFIC_PREFIX, model.as_bytes()].concat()
}

pub fn seed_period(period: u64) -> Vec<u8> {
    [SEED_PREFIX, &period.to_be_bytes()].concat()
}

pub fn seed(period: u64, host: &Address) -> Vec<u8> {
    [SEED_PREFIX, &period.to_be_bytes(), host.as_bytes()].concat()
}

pub fn duty_period(period: u64) -> Vec<u8> {
    [DUTY_PREFIX, &period.to_be_bytes()].concat()
}

pub fn duty(period: u64, id: &[u8; 32]) -> Vec<u8> {
    [DUTY_PREFIX, &period.to_be_bytes(), id].concat()
}

pub fn period_serving_of(period: u64) -> Vec<u8> {
    [PERIOD_SERVING_PREFIX, &period.to_be_bytes()].concat()
}

pub fn period_serving(period: u64, model: &str) -> Vec<u8> {
    [
        PERIOD_SERVING_PREFIX,
        &period.to_be_bytes(),
        model.as_bytes(),
    ]
    .concat()
}

pub fn duty_record_period(period: u64) -> Vec<u8> {
    [DUTY_RECORD_PREFIX, &period.to_be_bytes()].concat()
}

pub fn duty_record(period: u64, host: &Address) -> Vec<u8> {
    [DUTY_RECORD_PREFIX, &period.to_be_bytes(), host.as_bytes()].concat()
}
