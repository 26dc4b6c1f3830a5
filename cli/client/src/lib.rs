//! kiln-client: everything a program needs to act on a Kiln chain as an
//! account holder, without a store (no rocksdb) and without a terminal UI.
//!
//! * [`keyring`] — BIP-39 mnemonics, HD derivation, the `file` (encrypted)
//!   and `test` keyrings shared by `kiln`, `kilnd` and `kiln-mlworker`;
//!   [`passphrase`] reads a key's passphrase.
//! * [`address`] — `kiln1…` addresses as bytes, over [`kiln_framework::Address`].
//! * [`amount`] — coin amounts (`1.5kiln`, `1000ukiln`), gas prices; the coin
//!   type is [`kiln_framework::Coin`].
//! * [`sign`] — the one SIGN_MODE_DIRECT signing implementation
//!   ([`sign::sign_direct`], [`sign::sign_tx_raw`], [`sign::build_signed_tx`]).
//! * [`msgs`], [`host`] — message builders and parsers.
//! * [`gov`] — proposal files, deposits, votes and the governance queries.
//! * [`rpc`] — a blocking CometBFT JSON-RPC client; [`query`] — typed ABCI
//!   queries; [`tx`] — accounts, simulation, gas, waiting for inclusion.

pub mod address;
pub mod amount;
pub mod gov;
pub mod host;
pub mod inference;
pub mod keyring;
pub mod msgs;
pub mod passphrase;
pub mod query;
pub mod rpc;
pub mod sign;
pub mod staking;
pub mod tx;

/// The protobuf types (Cosmos SDK and CometBFT) the client speaks.
pub use cosmos_sdk_proto as proto;
pub use cosmos_sdk_proto::{Any, Timestamp};
pub use keyring::{write_test_key, Backend, KeyInfo, Keyring};
pub use kiln_framework::{Address, Coin};
pub use sign::{SignedTx, SignerData};
