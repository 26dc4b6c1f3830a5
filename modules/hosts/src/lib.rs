//! kiln-hosts: the host registry (SPEC §1).
//!
//! A host is an account that runs compute. It registers with its account key
//! ([`msgs::MsgRegisterHost`], type URL `/kiln.host.v1.MsgRegisterHost`) and
//! declares its worker URL, the models it serves, a hardware summary and the
//! ed25519 consensus key its node signs blocks with. The registry answers "is
//! this address a host" and "which host owns this consensus key"; what a host
//! has proven (sprint), the power it holds (staking) and its standing
//! (reputation) live in their own modules. A host's ML nodes — the
//! machines doing its compute, each with its own ML key and nonce lane,
//! switched on and off at epoch boundaries — are declared here too
//! ([`mlnodes`]).
//!
//! Keys (all under `hosts/`): see [`keys`]. Stored values: see [`values`].
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod genesis;
pub mod handler;
pub mod keys;
pub mod mlnodes;
pub mod msgs;
pub mod pop;
pub mod query;
pub mod state;
pub mod values;

pub use genesis::{GenesisHost, GenesisMlNode, HostsGenesis};
pub use state::{Host, HostsExt};

/// The module's codespace for its own error codes (see the README's error table).
pub const CODESPACE: &str = "hosts";
