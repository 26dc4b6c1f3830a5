//! Kiln wallet: the `kiln` CLI. The keyring, tx building and signing, the RPC
//! client and typed queries are in `kiln-client`; this crate adds what a
//! terminal user sees: prompts, confirmations, output formatting and the
//! command line.

pub mod infer;
pub mod output;
pub mod prompt;
pub mod query;
pub mod tx;
