//! kiln-authz: grants that let one account (the grantee) send specific message
//! types on behalf of another (the granter), with an optional expiry. Kiln uses
//! it for the ML operational ("hot") key: `grant-ml-ops` grants exactly the
//! ML-ops messages of the app's message list (`kiln_messages::ml_ops_type_urls`)
//! and nothing that moves funds.
//!
//! Only `GenericAuthorization` is supported. `MsgExec` itself is routed by the
//! app (it must dispatch inner messages to other modules); this crate answers
//! the one question the app asks: [`state::authorize`].
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod genesis;
pub mod handler;
pub mod keys;
pub mod msgs;
pub mod params;
pub mod query;
pub mod state;
pub mod values;

pub use genesis::{Authz, AuthzGenesis, GenesisGrant};
pub use params::AuthzParams;
