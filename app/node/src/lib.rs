//! # kiln-node — everything a Kiln node does that is not the application
//!
//! Generic over [`tendermint_abci::Application`] (ABCI 2.0 / CometBFT 0.38):
//!
//! - [`devnet`]: an embedded single-validator block producer that drives the
//!   app exactly as CometBFT 0.38 does (handshake + InitChain + crash replay,
//!   PrepareProposal → ProcessProposal → FinalizeBlock → Commit, mempool
//!   recheck), producing real, signed CometBFT blocks. Entry points:
//!   [`run_devnet`] (binary) and [`DevnetHandle`] (tests).
//! - [`mempool`]: FIFO mempool with CheckTx, limits, dedup cache and recheck.
//! - [`blockstore`]: rocksdb block store + tx/event index.
//! - [`rpc`]: CometBFT-compatible JSON-RPC (HTTP POST, URI GET, websocket) +
//!   `/metrics`, written against the [`rpc::ChainView`] trait (the devnet
//!   `Node` implements it); the JSON is rendered by the pure functions in
//!   [`rpc::render`].
//! - [`abci_server`]: [`serve_abci`] for `kilnd start` under a real CometBFT.
//! - [`home`]: home layout, CometBFT key/genesis files.

pub mod abci_server;
pub mod blockstore;
pub mod chain;
pub mod devnet;
pub mod events;
pub mod home;
pub mod mempool;
pub mod rpc;
pub mod validator_rules;

pub use abci_server::serve_abci;
pub use devnet::{run_devnet, DevnetConfig, DevnetHandle};
pub use mempool::MempoolConfig;

/// CometBFT version this node reports (`node_info.version`, RequestInfo.version).
pub const COMETBFT_VERSION: &str = "0.38.17";
/// ABCI protocol version.
pub const ABCI_VERSION: &str = "2.0.0";
/// Block protocol version.
pub const BLOCK_PROTOCOL: u64 = 11;
/// P2P protocol version.
pub const P2P_PROTOCOL: u64 = 8;

/// CometBFT tx hash: SHA-256 of the tx bytes.
pub fn tx_hash(tx: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(tx).into()
}
