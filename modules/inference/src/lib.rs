//! kiln-inference: the inference market (SPEC §5) — which models the network
//! serves and what a token of each costs.
//!
//! Owned today: the **model registry** (id, GGUF file SHA-256, tokenizer
//! hash, validation threshold, price floor; written at genesis, governance
//! adds and retires models later) and each model's **price per token**,
//! adjusted at the end of every block toward 40–60% utilisation of the
//! model's per-block token capacity ([`price::next_price`]: no change inside
//! the band, at most ±`max_price_step_bps` per block, never below the
//! floor). Integer arithmetic only; prices are in pkiln (10⁻¹² kiln, i.e.
//! 10⁻⁶ ukiln) per token, so a request is charged
//! `⌈tokens × price / 10⁶⌉` ukiln. The settlement messages (escrow on
//! `MsgStartInference`, pay and refund on `MsgFinishInference`, timeouts),
//! validation and disputes land in this crate next; they feed the block's
//! used tokens (`inference/used/{model}`) that the price follows.
//!
//! Also here, ready for the settlement: the executor draw ([`draw`]) by
//! weight × reliability, seeded by `SHA256(block hash ‖ request signature)`.
//!
//! Keys (all under `inference/`): see [`keys`].
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod draw;
pub mod genesis;
pub mod keys;
pub mod params;
pub mod price;
pub mod query;
pub mod state;

pub use genesis::{Inference, InferenceGenesis, ModelSpec};
pub use params::InferenceParams;
pub use state::{InferenceExt, Model};

/// The module's codespace for its own error codes.
pub const CODESPACE: &str = "inference";

/// pkiln in one ukiln: prices are stored in pkiln per token.
pub const PKILN_PER_UKILN: u64 = 1_000_000;
