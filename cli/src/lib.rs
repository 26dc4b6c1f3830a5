//! Kiln wallet: the `kiln` CLI and its keyring.
//!
//! With `default-features = false` only [`keyring`] and [`amount`] are built
//! (light dependencies); the node uses [`keyring::write_test_key`] to write the
//! devnet `dev` key in the format the CLI reads.

pub mod amount;
pub mod keyring;

#[cfg(feature = "cli")]
pub mod host;
#[cfg(feature = "cli")]
pub mod output;
#[cfg(feature = "cli")]
pub mod prompt;
#[cfg(feature = "cli")]
pub mod query;
#[cfg(feature = "cli")]
pub mod rpc;
#[cfg(feature = "cli")]
pub mod tx;

pub use keyring::{write_test_key, Backend, KeyInfo, Keyring};
