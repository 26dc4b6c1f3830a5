//! kiln-staking: consensus power (SPEC §4 "Weight", §7).
//!
//! It owns the weights in force — the effective weight each host holds from
//! the last settle (or genesis) — and the validator set CometBFT signs with:
//! at settle it turns raw weights into effective weights (the power cap today;
//! collateral and delegation arrive with the staking issue), stores them, and
//! records the validator set it has given CometBFT, by consensus key
//! ([`validators`]): validator updates are the difference between that
//! record and the weights in force under each host's current key, emitted
//! once at the end of a block that settled or rotated a key. CometBFT
//! applies updates returned at height `H` from `H + 2`; the module keeps the
//! history that answers "which keys and powers sign at height h" exactly.
//!
//! It also owns the **collateral** behind hosts ([`pools`]): self-bonds and
//! delegations in shares, unbonding, commission; SPEC §7's effective weight
//! counts that backing from the end of `grace_epochs`.
//!
//! Keys (all under `staking/`): see [`keys`]. Stored values: see [`values`].
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod genesis;
pub mod jail;
pub mod keys;
pub mod misbehavior;
pub mod msgs;
pub mod params;
pub mod pools;
pub mod query;
pub mod settle;
pub mod state;
pub mod validators;
pub mod values;

pub use genesis::{Staking, StakingGenesis, StakingInit};
pub use params::StakingParams;
pub use settle::PowerUpdate;
pub use state::StakingExt;
