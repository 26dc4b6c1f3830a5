//! kiln-epochs: the epoch and stage machine of SPEC §3, computed from block
//! heights alone (never wall-clock time).
//!
//! Epoch `e ≥ 1` starts at `S = first_height + (e − 1) · epoch_length`. Inside
//! an epoch, by offset from `S`:
//!
//! | stage | offsets (devnet) |
//! |---|---|
//! | `Sprint` | `0 … sprint_blocks−1` (0–9): the seed is the hash of block `S` |
//! | `CommitGrace` | `sprint_blocks … deadline` (10–12): commits still accepted; `deadline = sprint_blocks + commit_grace` |
//! | `SecretReveal` | next `secret_reveal_blocks` (13–14): hosts reveal the secrets behind their commitments |
//! | `Challenge` | next block (15): its hash and the revealed secrets make the beacon that picks the leaves to open |
//! | `Open` | next `open_blocks` (16–18): hosts post openings |
//! | `VoteCommit` | next `validation_blocks − reveal_blocks` (19–21) |
//! | `VoteReveal` | next `reveal_blocks = validation_blocks / 2` (22–23) |
//! | `EscalationCommit` | next `escalation_blocks − escalation_blocks / 2` (24–25): every host with weight votes on escalated hosts |
//! | `EscalationReveal` | next `escalation_blocks / 2` (26–27) |
//! | `Settle` | one block (28): tally, weights, bonds, validator updates |
//! | `Inference` | the rest of the epoch (29–59) |
//!
//! The module stores its params, the first height, and each epoch's seed
//! block hash and challenge block hash (recorded by the begin-block hook).
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod keys;
pub mod params;
pub mod state;
pub mod values;

pub use params::EpochParams;
pub use state::{EpochExt, EpochGenesis, EpochInfo, Epochs, Stage};
