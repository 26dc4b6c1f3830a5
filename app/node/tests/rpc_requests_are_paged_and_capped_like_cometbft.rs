//! The devnet's JSON-RPC bounds what one client can make it do, as
//! CometBFT's `[rpc]` config does: request bodies (`max_body_bytes`), batch
//! length (`max_request_batch_size`), websocket connections and subscription
//! clients (`max_subscription_clients`, `max_subscriptions_per_client`), and
//! `tx_search`, which pages its answer and refuses a query that would make
//! the node read more than a bounded number of txs (today's code loaded every
//! stored tx for a range-only query). Limits are set small here so the test
//! reaches them; the defaults are CometBFT's.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use kiln_node::blockstore::SearchLimits;
use kiln_node::rpc::RpcLimits;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn small_limits() -> RpcLimits {
    RpcLimits {
        max_body_bytes: 4_000,
        max_request_batch_size: 3,
        max_websocket_connections: 2,
        max_subscription_clients: 1,
        max_subscriptions_per_client: 2,
        tx_search: SearchLimits {
            max_candidates: 6,
            max_loaded: 4,
        },
    }
}

/// A devnet over the toy kv app with [`small_limits`] (keep the dir alive).
async fn start_with_small_limits() -> (tempfile::TempDir, kiln_node::DevnetHandle<KvApp>) {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let mut cfg = config(dir.path());
    cfg.rpc_limits = small_limits();
    let h = kiln_node::DevnetHandle::start(KvApp::default(), cfg)
        .await
        .unwrap();
    (dir, h)
}

async fn next_json(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("ws timeout")
            .expect("ws open")
            .expect("ws message");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

fn subscribe(id: u64, q: &str) -> Message {
    Message::Text(
        json!({"jsonrpc": "2.0", "id": id, "method": "subscribe", "params": {"query": q}})
            .to_string()
            .into(),
    )
}

#[test]
fn defaults_are_cometbfts() {
    let d = RpcLimits::default();
    assert_eq!(d.max_body_bytes, 1_000_000);
    assert_eq!(d.max_request_batch_size, 10);
    assert_eq!(d.max_subscription_clients, 100);
    assert_eq!(d.max_subscriptions_per_client, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_search_refuses_unbounded_scans_and_pages_bounded_ones() {
    let (_dir, h) = start_with_small_limits().await;
    let addr = h.rpc_addr();
    // Five blocks of two txs each: ten txs at heights 1..=5.
    for block in 0..5 {
        for i in 0..2 {
            let tx = format!("k{block}x{i}={block}");
            let r = rpc(addr, "broadcast_tx_sync", json!({"tx": b64(tx.as_bytes())})).await;
            assert_eq!(r["code"], 0, "{r}");
        }
        h.produce_block_now().await.unwrap();
    }

    // A range over the whole history considers ten txs > 6: refused, with advice.
    let r = rpc_raw(addr, "tx_search", json!({"query": "tx.height >= 1"})).await;
    let data = r["error"]["data"].as_str().unwrap_or_default();
    assert!(data.contains("narrow it"), "{r}");
    assert!(data.contains("tx.height"), "{r}");

    // A range of two blocks (four txs) is answered and paged.
    let s = rpc(
        addr,
        "tx_search",
        json!({"query": "tx.height >= 2 AND tx.height <= 3", "per_page": "3"}),
    )
    .await;
    assert_eq!(s["total_count"], "4", "{s}");
    assert_eq!(s["txs"].as_array().unwrap().len(), 3);
    let heights: Vec<&str> = s["txs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["height"].as_str().unwrap())
        .collect();
    assert_eq!(heights, ["2", "2", "3"]);
    let s = rpc(
        addr,
        "tx_search",
        json!({"query": "tx.height > 1 AND tx.height < 4", "page": "2", "per_page": "3"}),
    )
    .await;
    assert_eq!(s["txs"].as_array().unwrap().len(), 1, "{s}");
    let r = rpc_raw(
        addr,
        "tx_search",
        json!({"query": "tx.height >= 2 AND tx.height <= 3", "page": "3", "per_page": "3"}),
    )
    .await;
    assert!(r["error"]["data"]
        .as_str()
        .unwrap_or_default()
        .contains("page should be within [1, 2] range"));

    // An indexed event matching every tx (ten > 6) is refused too...
    let r = rpc_raw(addr, "tx_search", json!({"query": "message.action='set'"})).await;
    assert!(
        r["error"]["data"]
            .as_str()
            .unwrap_or_default()
            .contains("narrow it"),
        "{r}"
    );
    // ...and is answered once a height range narrows it.
    let s = rpc(
        addr,
        "tx_search",
        json!({"query": "message.action='set' AND tx.height <= 2"}),
    )
    .await;
    assert_eq!(s["total_count"], "4", "{s}");
    // A non-indexed condition loads events: six candidates > 4 loads is refused.
    let r = rpc_raw(
        addr,
        "tx_search",
        json!({"query": "tx.height <= 3 AND message.sender CONTAINS 'k'"}),
    )
    .await;
    assert!(
        r["error"]["data"]
            .as_str()
            .unwrap_or_default()
            .contains("needs the events of more than 4"),
        "{r}"
    );
    // The node keeps serving.
    assert_eq!(rpc(addr, "health", json!({})).await, json!({}));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_batches_get_json_rpc_errors() {
    let (_dir, h) = start_with_small_limits().await;
    let addr = h.rpc_addr();

    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "broadcast_tx_sync",
        "params": {"tx": b64(&vec![b'a'; 5_000])}})
    .to_string();
    let (status, body) = http(addr, "POST", "/", Some(&big)).await;
    assert_eq!(status, 413, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert!(v["error"]["data"]
        .as_str()
        .unwrap()
        .contains("max_body_bytes"));

    let req = |id: u64| json!({"jsonrpc": "2.0", "id": id, "method": "health"});
    let batch = Value::Array((0..4).map(req).collect()).to_string();
    let (_, body) = http(addr, "POST", "/", Some(&batch)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert!(v["error"]["data"]
        .as_str()
        .unwrap()
        .contains("batch request exceeds maximum (3) size"));
    // Within the limit a batch is answered in full.
    let batch = Value::Array((0..3).map(req).collect()).to_string();
    let (status, body) = http(addr, "POST", "/", Some(&batch)).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_and_subscriptions_are_capped() {
    let (_dir, h) = start_with_small_limits().await;
    let addr = h.rpc_addr();
    let url = format!("ws://{addr}/websocket");

    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut second, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // A third connection is over max_websocket_connections = 2.
    let third = tokio_tungstenite::connect_async(&url).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503)
        }
        other => panic!("third websocket accepted: {other:?}"),
    }

    // Two subscriptions per client; the third is refused.
    first
        .send(subscribe(1, "tm.event='NewBlock'"))
        .await
        .unwrap();
    assert_eq!(next_json(&mut first).await["result"], json!({}));
    first.send(subscribe(2, "tm.event='Tx'")).await.unwrap();
    assert_eq!(next_json(&mut first).await["result"], json!({}));
    first
        .send(subscribe(3, "tm.event='NewBlockHeader'"))
        .await
        .unwrap();
    let e = next_json(&mut first).await;
    assert!(e["error"]["data"]
        .as_str()
        .unwrap()
        .contains("max_subscriptions_per_client 2 reached"));

    // One subscription client at a time: the second connection may call
    // methods but not subscribe while the first holds subscriptions.
    second.send(subscribe(1, "tm.event='Tx'")).await.unwrap();
    let e = next_json(&mut second).await;
    assert!(
        e["error"]["data"]
            .as_str()
            .unwrap()
            .contains("max_subscription_clients 1 reached"),
        "{e}"
    );
    second
        .send(Message::Text(
            json!({"jsonrpc": "2.0", "id": 9, "method": "health"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut second).await["result"], json!({}));

    // Dropping the first client frees both its connection and its
    // subscription-client place.
    first.close(None).await.unwrap();
    drop(first);
    let mut freed = false;
    for _ in 0..50 {
        second.send(subscribe(2, "tm.event='Tx'")).await.unwrap();
        if next_json(&mut second).await.get("result").is_some() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        freed,
        "subscription place not released when the client left"
    );
    let (_third, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    h.stop().await;
}
