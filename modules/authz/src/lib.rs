//! kiln-authz: grants that let one account (the grantee) send specific message
//! types on behalf of another (the granter), with an optional expiry. Kiln uses
//! it for the ML operational ("hot") key: `grant-ml-ops` grants exactly
//! [`ML_OPS_MSG_TYPE_URLS`] and nothing that moves funds.
//!
//! Only `GenericAuthorization` is supported. `MsgExec` itself is routed by the
//! app (it must dispatch inner messages to other modules); this crate answers
//! the one question the app asks: [`state::authorize`].
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod genesis;
pub mod handler;
pub mod keys;
pub mod params;
pub mod query;
pub mod state;

pub use genesis::{AuthzGenesis, GenesisGrant};
pub use params::AuthzParams;

/// Type URLs of every message the ML worker sends through its grant (SPEC §1).
/// The modules that handle them arrive in later issues; the list is fixed here
/// so wallets can grant them now. Never add a bank, staking or governance type.
pub const ML_OPS_MSG_TYPE_URLS: &[&str] = &[
    "/kiln.sprint.v1.MsgSprintCommit",
    "/kiln.sprint.v1.MsgSprintOpen",
    "/kiln.sprint.v1.MsgSprintVoteCommit",
    "/kiln.sprint.v1.MsgSprintVoteReveal",
    "/kiln.inference.v1.MsgStartInference",
    "/kiln.inference.v1.MsgFinishInference",
    "/kiln.inference.v1.MsgValidation",
    "/kiln.inference.v1.MsgCommitValidationSeed",
    "/kiln.inference.v1.MsgRevealValidationSeed",
    "/kiln.inference.v1.MsgDisputeVote",
];
