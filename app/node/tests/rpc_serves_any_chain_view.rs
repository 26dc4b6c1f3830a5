//! The RPC server answers from any `ChainView`, not only the devnet node:
//! here a view over two blocks captured from a real CometBFT 0.38 node
//! (tests/fixtures) renders `status`, `block` and `header` as CometBFT did.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_node::blockstore::ChainState;
use kiln_node::events::BusEvent;
use kiln_node::mempool::MempoolError;
use kiln_node::rpc::view::{ChainView, MempoolTxs, MetricsSnapshot, NodeIdentity};
use serde_json::{json, Value};
use tendermint::{block, consensus, validator, Block, PublicKey};
use tendermint_proto::v0_38::abci::{
    ExecTxResult, RequestQuery, ResponseCheckTx, ResponseFinalizeBlock, ResponseInfo, ResponseQuery,
};
use tendermint_rpc::query::Query;
use tokio::sync::{broadcast, watch};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["result"].clone()
}

/// A block as CometBFT returned it, decoded (Go's empty initial LastCommit
/// is tendermint-rs' `None`).
fn fixture_block(name: &str) -> (Block, block::Id) {
    let v = fixture(name);
    let mut blk = v["block"].clone();
    if blk["last_commit"]["height"] == "0" {
        blk["last_commit"] = Value::Null;
    }
    (
        serde_json::from_value(blk).unwrap(),
        serde_json::from_value(v["block_id"].clone()).unwrap(),
    )
}

/// A chain known only from blocks 1 and 10 of the fixture node: no block
/// producer, no application, no mempool.
struct FixtureChain {
    blocks: BTreeMap<u64, (Block, block::Id)>,
    validator: validator::Info,
    params: consensus::Params,
    events: broadcast::Sender<Arc<BusEvent>>,
    shutdown: watch::Sender<bool>,
}

impl FixtureChain {
    fn new() -> Self {
        let pk: PublicKey = serde_json::from_value(json!({
            "type": "tendermint/PubKeyEd25519",
            "value": "bNNlGls5R25wC3Sd8720F/3+7IZBhXcD22MNFtPk/v0="
        }))
        .unwrap();
        let params = kiln_node::home::parse_genesis(
            &json!({
                "genesis_time": "2023-05-17T14:12:48.347696215Z",
                "chain_id": "dockerchain",
                "consensus_params": kiln_node::home::default_consensus_params(),
                "app_state": {}
            })
            .to_string(),
        )
        .unwrap()
        .consensus_params;
        Self {
            blocks: [
                (1, fixture_block("block_at_height_1")),
                (10, fixture_block("block_at_height_10")),
            ]
            .into_iter()
            .collect(),
            validator: validator::Info::new(pk, 10u32.into()),
            params,
            events: broadcast::channel(4).0,
            shutdown: watch::channel(false).0,
        }
    }
}

impl ChainView for FixtureChain {
    fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            id: "cf4a66aa29e5123abfdfbdf485da6788bb8e46d1".into(),
            moniker: "dockernode".into(),
            validator_pub_key: self.validator.pub_key,
            rpc_address: Some("0.0.0.0:26657".parse().unwrap()),
        }
    }
    fn genesis(&self) -> Value {
        json!({"chain_id": "dockerchain"})
    }
    fn state(&self) -> ChainState {
        let (b10, id10) = &self.blocks[&10];
        ChainState {
            chain_id: "dockerchain".into(),
            initial_height: 1,
            last_block_height: 10,
            last_block_id: Some(*id10),
            last_block_time: b10.header.time,
            app_hash: vec![6, 0, 0, 0, 0, 0, 0, 0],
            last_results_hash: vec![],
            app_version: 1,
            last_validators: vec![self.validator.clone()],
            validators: vec![self.validator.clone()],
            next_validators: vec![self.validator.clone()],
            consensus_params: self.params.clone(),
        }
    }
    fn base(&self) -> anyhow::Result<u64> {
        Ok(1)
    }
    fn block(&self, height: u64) -> anyhow::Result<Option<Block>> {
        Ok(self.blocks.get(&height).map(|(b, _)| b.clone()))
    }
    fn block_meta(&self, height: u64) -> anyhow::Result<Option<block::Meta>> {
        Ok(self.blocks.get(&height).map(|(b, id)| block::Meta {
            block_id: *id,
            block_size: 0,
            header: b.header.clone(),
            num_txs: b.data.len() as i64,
        }))
    }
    fn height_by_hash(&self, hash: &[u8]) -> anyhow::Result<Option<u64>> {
        Ok(self
            .blocks
            .iter()
            .find(|(_, (_, id))| id.hash.as_bytes() == hash)
            .map(|(h, _)| *h))
    }
    fn seen_commit(&self, _height: u64) -> anyhow::Result<Option<block::Commit>> {
        Ok(None)
    }
    fn results(&self, _height: u64) -> anyhow::Result<Option<ResponseFinalizeBlock>> {
        Ok(None)
    }
    fn validators(&self, _height: u64) -> anyhow::Result<Option<Vec<validator::Info>>> {
        Ok(Some(vec![self.validator.clone()]))
    }
    fn consensus_params(&self, _height: u64) -> anyhow::Result<Option<consensus::Params>> {
        Ok(Some(self.params.clone()))
    }
    fn tx_position(&self, _hash: &[u8]) -> anyhow::Result<Option<(u64, u32)>> {
        Ok(None)
    }
    fn tx(&self, height: u64, index: u32) -> anyhow::Result<(Vec<u8>, ExecTxResult)> {
        anyhow::bail!("no tx {index} at height {height}")
    }
    fn search_txs(&self, _query: &Query) -> anyhow::Result<Vec<(u64, u32)>> {
        Ok(vec![])
    }
    fn abci_info(&self) -> ResponseInfo {
        ResponseInfo::default()
    }
    fn abci_query(&self, _req: RequestQuery) -> ResponseQuery {
        ResponseQuery::default()
    }
    fn check_tx(&self, _tx: Vec<u8>) -> ResponseCheckTx {
        ResponseCheckTx::default()
    }
    fn submit_tx(&self, _tx: Vec<u8>) -> Result<ResponseCheckTx, MempoolError> {
        Ok(ResponseCheckTx::default())
    }
    fn unconfirmed_txs(&self, _limit: usize) -> MempoolTxs {
        MempoolTxs::default()
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.events.subscribe()
    }
    fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
    fn broadcast_tx_commit_timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            height: 10,
            ..Default::default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_and_header_render_as_cometbft_did() {
    let view: Arc<dyn ChainView> = Arc::new(FixtureChain::new());
    for (h, name) in [(10, "block_at_height_10"), (1, "block_at_height_1")] {
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": "block", "params": {"height": h.to_string()}});
        let resp = kiln_node::rpc::handle_request(&view, req).await;
        assert_eq!(resp["result"], fixture(name), "block {h}");
        let req = json!({"jsonrpc": "2.0", "id": 2, "method": "header", "params": [h.to_string()]});
        let resp = kiln_node::rpc::handle_request(&view, req).await;
        assert_eq!(resp["result"]["header"], fixture(name)["block"]["header"]);
    }
    let req = json!({"jsonrpc": "2.0", "id": 3, "method": "block", "params": {"height": "5"}});
    let resp = kiln_node::rpc::handle_request(&view, req).await;
    assert_eq!(resp["error"]["data"], "block not found for height 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_over_http_renders_as_cometbft_did() {
    let view: Arc<dyn ChainView> = Arc::new(FixtureChain::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, kiln_node::rpc::router(view))
            .await
            .unwrap()
    });

    let got = common::get(addr, "/status").await["result"].clone();
    // The fixture node was at height 232 and ran another CometBFT version;
    // everything else is the same chain, node and validator.
    let b10 = fixture("block_at_height_10");
    let mut want = fixture("status");
    want["node_info"]["version"] = json!(kiln_node::COMETBFT_VERSION);
    want["sync_info"]["latest_block_hash"] = b10["block_id"]["hash"].clone();
    want["sync_info"]["latest_block_height"] = json!("10");
    want["sync_info"]["latest_block_time"] = b10["block"]["header"]["time"].clone();
    assert_eq!(got, want);

    let (status, metrics) = common::http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("kiln_node_height 10\n"), "{metrics}");
    server.abort();
}
