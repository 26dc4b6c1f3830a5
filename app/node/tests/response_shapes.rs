//! Every response's JSON shape (keys, nesting, value types) matches what a
//! real CometBFT 0.38 node returns (fixtures in tests/fixtures).

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["result"].clone()
}

/// `ours` has the same shape as `theirs`: same object keys (recursively),
/// same scalar types; `null` on either side matches anything; arrays compare
/// their first elements.
fn same_shape(path: &str, ours: &Value, theirs: &Value, errs: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(a), Value::Object(b)) => {
            for k in b.keys() {
                if !a.contains_key(k) {
                    errs.push(format!("{path}.{k}: missing"));
                }
            }
            for k in a.keys() {
                if !b.contains_key(k) {
                    errs.push(format!("{path}.{k}: extra"));
                }
            }
            for (k, v) in a {
                if let Some(t) = b.get(k) {
                    same_shape(&format!("{path}.{k}"), v, t, errs);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                same_shape(&format!("{path}[0]"), x, y, errs);
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        (a, b) => errs.push(format!("{path}: ours {a} vs CometBFT {b}")),
    }
}

/// Differences that depend on the app's content, not on the format:
/// event composite keys, and fields CometBFT omits when empty/zero.
const CONTENT_DEPENDENT: &[&str] = &[
    "subscribe_txs_0.events.",
    "subscribe_newblock_0.events.",
    "result_finalize_block.events:",
    "result_finalize_block.tx_results:",
    "TxResult.result.data:",
    "TxResult.result.gas_used:",
    "TxResult.result.gas_wanted:",
];

fn check(name: &str, ours: &Value, errs: &mut Vec<String>) {
    let mut e = vec![];
    same_shape(name, ours, &fixture(name), &mut e);
    errs.extend(
        e.into_iter()
            .filter(|d| !CONTENT_DEPENDENT.iter().any(|c| d.contains(c))),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_have_cometbft_038_shapes() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let h = start(KvApp::default(), dir.path()).await;
    let addr = h.rpc_addr();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/websocket"))
        .await
        .unwrap();
    for (id, q) in [(1, "tm.event='NewBlock'"), (2, "tm.event='Tx'")] {
        ws.send(Message::Text(
            json!({"jsonrpc":"2.0","id":id,"method":"subscribe","params":{"query":q}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        let _ = ws.next().await;
    }
    let mut errs = vec![];
    let r = rpc(addr, "broadcast_tx_sync", json!({"tx": b64(b"s1=a")})).await;
    check("broadcast_tx_sync", &r, &mut errs);
    for _ in 0..2 {
        h.produce_block_now().await.unwrap();
    }
    let t =
        tokio::spawn(
            async move { rpc(addr, "broadcast_tx_commit", json!({"tx": b64(b"s2=b")})).await },
        );
    let commit = loop {
        tokio::time::sleep(Duration::from_millis(30)).await;
        h.produce_block_now().await.unwrap();
        if t.is_finished() {
            break t.await.unwrap();
        }
    };
    check("broadcast_tx_commit", &commit, &mut errs);
    check("status", &rpc(addr, "status", json!({})).await, &mut errs);
    check(
        "abci_info",
        &rpc(addr, "abci_info", json!({})).await,
        &mut errs,
    );
    check(
        "abci_query_with_existing_key",
        &rpc(
            addr,
            "abci_query",
            json!({"path": "/store", "data": hex::encode("s1")}),
        )
        .await,
        &mut errs,
    );
    check(
        "block_at_height_10",
        &rpc(addr, "block", json!({"height": 2})).await,
        &mut errs,
    );
    check(
        "block_at_height_1",
        &rpc(addr, "block", json!({"height": 1})).await,
        &mut errs,
    );
    check(
        "block_results_at_height_10",
        &rpc(addr, "block_results", json!({"height": 1})).await,
        &mut errs,
    );
    check(
        "commit_at_height_10",
        &rpc(addr, "commit", json!({"height": 2})).await,
        &mut errs,
    );
    check(
        "blockchain_from_1_to_10",
        &rpc(addr, "blockchain", json!({})).await,
        &mut errs,
    );
    check(
        "consensus_params",
        &rpc(addr, "consensus_params", json!({})).await,
        &mut errs,
    );
    check(
        "net_info",
        &rpc(addr, "net_info", json!({})).await,
        &mut errs,
    );
    check(
        "tx_search_no_prove",
        &rpc(addr, "tx_search", json!({"query": "tx.height>0"})).await,
        &mut errs,
    );

    // websocket events
    let mut got_block = false;
    let mut got_tx = false;
    while !(got_block && got_tx) {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        let r = v["result"].clone();
        if r["data"]["type"] == "tendermint/event/NewBlock" && !got_block {
            check("subscribe_newblock_0", &r, &mut errs);
            got_block = true;
        } else if r["data"]["type"] == "tendermint/event/Tx" && !got_tx {
            check("subscribe_txs_0", &r, &mut errs);
            got_tx = true;
        }
    }
    h.stop().await;
    assert!(
        errs.is_empty(),
        "shape differences from CometBFT 0.38:\n{}",
        errs.join("\n")
    );
}
