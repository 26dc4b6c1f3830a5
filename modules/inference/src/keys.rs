//! Storage keys of the inference module. Every key starts with [`PREFIX`].
//!
//! | key | value |
//! |---|---|
//! | `inference/params` | [`crate::InferenceParams`] |
//! | `inference/model/{id}` | [`crate::Model`] |
//! | `inference/price/{id}` | u64 BE: the price per token in pkiln |
//! | `inference/used/{id}` | u64 BE: tokens the block's requests took (reset at the end of each block) |

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"inference/";
pub const PARAMS: &[u8] = b"inference/params";
pub const MODEL_PREFIX: &[u8] = b"inference/model/";
pub const PRICE_PREFIX: &[u8] = b"inference/price/";
pub const USED_PREFIX: &[u8] = b"inference/used/";

pub fn model(id: &str) -> Vec<u8> {
    [MODEL_PREFIX, id.as_bytes()].concat()
}

pub fn price(id: &str) -> Vec<u8> {
    [PRICE_PREFIX, id.as_bytes()].concat()
}

pub fn used(id: &str) -> Vec<u8> {
    [USED_PREFIX, id.as_bytes()].concat()
}
