//! kiln-bank: accounts (the Cosmos `auth` module: account numbers, sequences,
//! public keys, transaction parameters) and balances (`bank`: balances, sends,
//! total supply, module accounts).
//!
//! Layout of its keys: see [`keys`]. Other modules move coins only through
//! [`BankExt`] so supply and balance invariants live in one place.
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

pub use genesis::{AuthGenesis, Bank, BankGenesis, BankInit, GenesisAccount, GenesisBalance};
pub use params::{AuthParams, GasPrice};
pub use state::{AuthExt, BankExt};

/// Module account that receives transaction fees.
pub const FEE_COLLECTOR: &str = "fee_collector";
