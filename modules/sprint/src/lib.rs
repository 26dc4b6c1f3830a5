//! kiln-sprint: proof of compute by sprint, up to raw weight (SPEC §4).
//!
//! Each epoch, workers commit a Merkle root over their shares and a secret
//! hash before the deadline (the first commitment locks a bond from the
//! host's account), reveal their secrets, open the leaves the epoch's beacon
//! picks for them — each sampled leaf with its right-hand neighbour (proofs
//! checked here, on chain) — and validate each other with commit-then-reveal
//! votes by committees drawn once when the vote stages begin. Any `invalid`
//! vote escalates the host to a vote of every host with weight (escalation
//! stages). At settle the votes are tallied, each accepted host's raw weight
//! is its share count limited by the growth cap, and bonds are returned or
//! burned ([`settle`], a [`kiln_framework::RawWeightSource`]). What happens to raw weight next —
//! the power cap, consensus power, reputation — belongs to other modules;
//! the app chains them in its settle pipeline.
//!
//! Reads: the host registry (`kiln-hosts`), weights in force for committees
//! (`kiln-staking`), the stage (`kiln-epochs`). Keys: see [`keys`]; stored
//! values: [`values`]. Worker messages arrive through `MsgExec` from the
//! host's ML operational key; the app routes them here with the host as signer.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod beacon;
pub mod genesis;
pub mod handler;
pub mod keys;
pub mod msgs;
pub mod params;
pub mod query;
pub mod settle;
pub mod state;
pub mod values;

pub use genesis::{Sprint, SprintGenesis};
pub use params::SprintParams;
