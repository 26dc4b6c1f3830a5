//! [`ChainView`]: everything the RPC server reads from or asks of a node.
//!
//! The RPC methods, the websocket and `/metrics` are written against this
//! trait only, so they do not depend on how blocks are produced: the devnet
//! [`Node`](crate::devnet::Node) implements it over its block store, mempool
//! and application, and a test can implement it over a few fixed blocks.
//!
//! Heights are CometBFT heights; "not stored" is `Ok(None)` and a failing
//! read is `Err` (rendered as a JSON-RPC internal error with its message).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tendermint::{account, block, consensus, validator, Block, PublicKey};
use tendermint_proto::v0_38::abci::{
    ExecTxResult, RequestQuery, ResponseCheckTx, ResponseFinalizeBlock, ResponseInfo, ResponseQuery,
};
use tendermint_rpc::query::Query;
use tokio::sync::{broadcast, watch};

use crate::blockstore::ChainState;
use crate::events::BusEvent;
use crate::mempool::MempoolError;

/// Who the node is, as `status` reports it.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// P2P node id (`node_info.id`).
    pub id: String,
    /// `node_info.moniker`.
    pub moniker: String,
    /// The node's consensus key (`validator_info`).
    pub validator_pub_key: PublicKey,
    /// Where the RPC server listens, once bound (`node_info.other.rpc_address`).
    pub rpc_address: Option<SocketAddr>,
}

impl NodeIdentity {
    /// The consensus key's address.
    pub fn validator_address(&self) -> account::Id {
        account::Id::from(self.validator_pub_key)
    }
}

/// The first txs of the mempool and its totals.
#[derive(Debug, Clone, Default)]
pub struct MempoolTxs {
    /// Up to the requested number of txs, in mempool (FIFO) order.
    pub txs: Vec<Vec<u8>>,
    /// Number of txs in the mempool.
    pub total: usize,
    /// Total bytes of the mempool's txs.
    pub total_bytes: usize,
}

/// Counters and gauges served on `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    /// Latest committed height.
    pub height: u64,
    /// Txs committed since start.
    pub total_txs: u64,
    /// Txs in the latest block.
    pub last_block_txs: u64,
    /// Milliseconds between the latest two blocks' header times.
    pub last_block_interval_ms: u64,
    /// Proposals rejected by ProcessProposal since start.
    pub blocks_rejected: u64,
    /// Txs in the mempool.
    pub mempool_size: usize,
    /// Total bytes of the mempool's txs.
    pub mempool_bytes: usize,
}

/// The reads and actions the RPC server needs from a node.
pub trait ChainView: Send + Sync + 'static {
    // --- node and chain state ---

    /// The node's identity (`status.node_info`, `status.validator_info`).
    fn identity(&self) -> NodeIdentity;

    /// genesis.json as written (`genesis`).
    fn genesis(&self) -> Value;

    /// The consensus state after the latest block: chain id, app hash and
    /// version, the validator sets for the next two heights, the consensus
    /// params for the next height.
    fn state(&self) -> ChainState;

    /// Latest committed height, 0 before the first block.
    fn height(&self) -> u64 {
        let st = self.state();
        if st.last_block_height < st.initial_height {
            0
        } else {
            st.last_block_height
        }
    }

    /// Lowest height whose block is still stored (blocks below are pruned).
    fn base(&self) -> anyhow::Result<u64>;

    // --- blocks ---

    /// The block at `height`.
    fn block(&self, height: u64) -> anyhow::Result<Option<Block>>;

    /// The block meta (id, size, header, tx count) at `height`.
    fn block_meta(&self, height: u64) -> anyhow::Result<Option<block::Meta>>;

    /// The height of the block with this header hash.
    fn height_by_hash(&self, hash: &[u8]) -> anyhow::Result<Option<u64>>;

    /// The commit this node saw for block `height` (the latest block's only
    /// commit until the next block carries it as its LastCommit).
    fn seen_commit(&self, height: u64) -> anyhow::Result<Option<block::Commit>>;

    /// FinalizeBlock's response for the block at `height`.
    fn results(&self, height: u64) -> anyhow::Result<Option<ResponseFinalizeBlock>>;

    /// The validator set that signs block `height` (stored heights only; the
    /// next two sets are in [`ChainView::state`]).
    fn validators(&self, height: u64) -> anyhow::Result<Option<Vec<validator::Info>>>;

    /// The consensus params in force at `height` (stored heights only; the
    /// next height's are in [`ChainView::state`]).
    fn consensus_params(&self, height: u64) -> anyhow::Result<Option<consensus::Params>>;

    // --- tx index ---

    /// Position (height, index in block) of the tx with this hash.
    fn tx_position(&self, hash: &[u8]) -> anyhow::Result<Option<(u64, u32)>>;

    /// The tx at a position with its ExecTxResult; `Err` when it is no longer
    /// (or never was) available.
    fn tx(&self, height: u64, index: u32) -> anyhow::Result<(Vec<u8>, ExecTxResult)>;

    /// Positions of the committed txs matching a CometBFT query (`tx.hash`,
    /// `tx.height`, event attributes), ascending.
    fn search_txs(&self, query: &Query) -> anyhow::Result<Vec<(u64, u32)>>;

    // --- application ---

    /// ABCI Info.
    fn abci_info(&self) -> ResponseInfo;

    /// ABCI Query.
    fn abci_query(&self, req: RequestQuery) -> ResponseQuery;

    /// ABCI CheckTx (type New) without adding the tx to the mempool.
    fn check_tx(&self, tx: Vec<u8>) -> ResponseCheckTx;

    // --- mempool ---

    /// CheckTx and, if accepted, add to the mempool. `Err` is CometBFT's
    /// mempool refusal (full, too large, already in cache).
    fn submit_tx(&self, tx: Vec<u8>) -> Result<ResponseCheckTx, MempoolError>;

    /// The first `limit` mempool txs and the mempool's totals.
    fn unconfirmed_txs(&self, limit: usize) -> MempoolTxs;

    // --- events ---

    /// A receiver of every event published from now on (NewBlock,
    /// NewBlockHeader, Tx): websocket subscriptions and `broadcast_tx_commit`.
    fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>>;

    /// Becomes `true` when the node shuts down; websocket sessions close then.
    fn shutdown(&self) -> watch::Receiver<bool>;

    /// How long `broadcast_tx_commit` waits for the tx to be committed.
    fn broadcast_tx_commit_timeout(&self) -> Duration;

    /// Limits the server enforces (CometBFT's defaults unless configured).
    fn rpc_limits(&self) -> RpcLimits {
        RpcLimits::default()
    }

    // --- metrics ---

    /// Current values for `/metrics`.
    fn metrics(&self) -> MetricsSnapshot;
}

/// Bounds on what one client may ask of the RPC server, as CometBFT's
/// `[rpc]` config has them (same defaults), so a node cannot be made to
/// buffer, answer or stream without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcLimits {
    /// Largest request body (`max_body_bytes`, 1 000 000).
    pub max_body_bytes: usize,
    /// Most requests in one JSON-RPC batch (`max_request_batch_size`, 10).
    pub max_request_batch_size: usize,
    /// Most concurrent websocket connections (CometBFT bounds all its
    /// connections by `max_open_connections`, 900).
    pub max_websocket_connections: usize,
    /// Most websocket clients holding subscriptions (`max_subscription_clients`, 100).
    pub max_subscription_clients: usize,
    /// Most subscriptions per websocket client (`max_subscriptions_per_client`, 5).
    pub max_subscriptions_per_client: usize,
    /// Bounds on the work of one `tx_search`.
    pub tx_search: crate::blockstore::SearchLimits,
}

impl Default for RpcLimits {
    fn default() -> Self {
        RpcLimits {
            max_body_bytes: 1_000_000,
            max_request_batch_size: 10,
            max_websocket_connections: 900,
            max_subscription_clients: 100,
            max_subscriptions_per_client: 5,
            tx_search: crate::blockstore::SearchLimits::default(),
        }
    }
}
