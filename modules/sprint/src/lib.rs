//! kiln-sprint: the host registry and voting weight (SPEC §1, §4).
//!
//! Hosts register with their account key ([`msgs::MsgRegisterHost`]). Each
//! epoch, workers commit a Merkle root over their shares before the deadline,
//! open the leaves the challenge block picks (proofs checked here, on chain),
//! and validate each other with commit-then-reveal votes. At settle the votes
//! are tallied by committee weight, raw weight = share count of accepted
//! hosts, the power cap is applied, reputation is updated and validator power
//! changes are emitted (CometBFT applies them two blocks later).
//!
//! Keys: see [`keys`]. Worker messages arrive through `MsgExec` from the
//! host's ML operational key; the app routes them here with the host as signer.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod genesis;
pub mod handler;
pub mod hooks;
pub mod keys;
pub mod msgs;
pub mod params;
pub mod query;
pub mod state;

pub use genesis::{GenesisHost, SprintGenesis};
pub use params::SprintParams;
