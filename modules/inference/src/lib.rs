//! kiln-inference: the inference market (SPEC §5) — which models the network
//! serves and what a token of each costs.
//!
//! Owned here:
//! - the **model registry** (id, GGUF file SHA-256, tokenizer hash,
//!   validation threshold, price floor; written at genesis, governance adds
//!   and retires models later);
//! - each model's **price per token**, adjusted at the end of every block
//!   toward 40–60% utilisation of the model's per-block token capacity
//!   ([`price::next_price`]: no change inside the band, at most
//!   ±`max_price_step_bps` per block, never below the floor). Prices are in
//!   pkiln (10⁻¹² kiln, i.e. 10⁻⁶ ukiln) per token, so a request is charged
//!   `⌈tokens × price / 10⁶⌉` ukiln;
//! - the **requester's signature** over a request ([`request`]), shared
//!   with the CLI's proxy and the worker's transfer agent;
//! - the **executor draw** ([`draw`]) by weight × reliability among each
//!   model's serving set ([`state::ServingSet`], rebuilt at each settle),
//!   seeded by `SHA256(block hash ‖ request signature)`;
//! - **settlement** ([`handler`]): `MsgStartInference` escrows, and
//!   `MsgFinishInference` pays the executor and refunds the rest, in either
//!   order; an inference not finished in time is refunded and counts a miss;
//!   misses set next epoch's reliability and feed reputation ([`settle`]).
//!
//! - **validation and disputes** ([`validation`]): the model's hosts post
//!   replay scores; a low score opens a dispute the hosts vote by weight; an
//!   upheld one refunds the requester from the executor's pay and counts
//!   toward INVALID;
//! - **validation duties** ([`duties`]): hosts commit a seed per serving
//!   period and reveal it after; the seed and SPEC §5's traffic and
//!   reputation rate decide who must validate which inference, and the
//!   settle records the duties each host skipped.
//!
//! Integer arithmetic only.
//!
//! Keys (all under `inference/`): see [`keys`].
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod draw;
pub mod duties;
pub mod genesis;
pub mod handler;
pub mod keys;
pub mod msgs;
pub mod params;
pub mod price;
pub mod query;
pub mod registry;
pub mod request;
pub mod settle;
pub mod state;
pub mod validation;

pub use genesis::{Inference, InferenceGenesis, ModelSpec};
pub use params::InferenceParams;
pub use state::{InferenceExt, Model};

/// The module's codespace for its own error codes.
pub const CODESPACE: &str = "inference";

/// pkiln in one ukiln: prices are stored in pkiln per token.
pub const PKILN_PER_UKILN: u64 = 1_000_000;
