//! kiln-app: the Kiln ABCI application ([`KilnApp`]) — transaction decoding,
//! the ante pipeline, the fixed component order and settle pipeline
//! ([`components`]), queries — and the `kilnd` binary that
//! runs it under the devnet block producer or a real CometBFT.
//!
//! Consensus rules: no floats, no hash-map iteration, no wall clock, no panics
//! on input (`app/clippy.toml`, `#![deny(clippy::unwrap_used)]`).
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod ante;
pub mod app;
pub mod components;
pub mod exec;
pub mod gentx;
pub mod query;
pub mod snapshots;
pub mod tx;
pub mod upgrades;

pub use app::KilnApp;
/// CometBFT 0.38's validator-update rules, shared with the devnet producer
/// (re-exported so the test kit applies updates exactly as CometBFT does).
pub use kiln_node::validator_rules;
