//! # kiln-sprint-protocol
//!
//! The pure, torch-free pieces of the sprint (SPEC §4), shared by the worker
//! (`kiln-mlworker`) and the chain's sprint module:
//!
//! - [`seed`]: seed and key derivation (`SHA256` domain-separated inputs).
//! - [`stream`]: the ChaCha20 random streams and the exact value / integer draws.
//! - [`model`]: model dimensions, presets, the tensor list, and the portable,
//!   bit-exact generation of weights, inputs, target and permutations.
//! - [`leaf`], [`merkle`]: leaf encoding and the Merkle commitment with proofs.
//! - [`challenge`]: secret commitments, the epoch's beacon, challenge seed,
//!   leaf-index sampling and the neighbour-pair opening rule.
//! - [`vote`]: the vote commitment (bound to chain, epoch, host and voter).
//! - [`verdict`]: mismatch rule and the one-sided binomial test — an exact,
//!   integer-only version for the chain and a float p-value for display.
//!
//! ## What is consensus-safe
//! Everything in [`seed`], [`stream`] (words and integer draws), [`leaf`],
//! [`merkle`], [`challenge`], [`vote`] and [`verdict`] uses integers only, is
//! deterministic and never panics on any input. The float code (weight /
//! input / target generation, quantisation of a float distance, the float
//! p-value) is used by the worker only and sits behind the default `float`
//! feature: the chain builds this crate with `default-features = false`, so
//! no `f32`/`f64` code is even compiled into it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod challenge;
pub mod leaf;
pub mod merkle;
#[cfg(feature = "float")]
pub mod model;
pub mod seed;
pub mod stream;
pub mod verdict;
pub mod vote;

pub use challenge::{challenge_seed, opening_indices, sample_indices};
#[cfg(feature = "float")]
pub use leaf::quantize_distance;
pub use leaf::{leaf_hash, Leaf};
pub use merkle::{verify_proof, MerkleError, MerkleTree};
#[cfg(feature = "float")]
pub use model::{ModelConfig, TensorSpec};
pub use seed::{nonce_key, perm_key, sprint_seed, target_key, tensor_key};
pub use stream::Stream;

/// A 32-byte SHA-256 digest.
pub type Hash32 = [u8; 32];

/// Raw 20-byte account address (the bech32 payload of `kiln1…`).
pub type Address = [u8; 20];
