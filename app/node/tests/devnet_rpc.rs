//! End-to-end devnet tests over HTTP JSON-RPC with a toy kv application.

mod common;

use common::*;
use serde_json::{json, Value};

fn hexu(b: &[u8]) -> String {
    hex::encode_upper(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txs_flow_through_broadcast_block_results_tx_and_search() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let h = start(app.clone(), dir.path()).await;
    let addr = h.rpc_addr();

    // InitChain got the genesis.
    {
        let s = app.s.lock().unwrap();
        assert_eq!(s.init_chain_calls, 1);
        let req = s.init_chain_request.clone().unwrap();
        assert_eq!(req.chain_id, "kiln-test");
        assert_eq!(req.initial_height, 1);
        assert_eq!(req.validators.len(), 1);
        assert!(req.consensus_params.is_some());
        let st: Value = serde_json::from_slice(&req.app_state_bytes).unwrap();
        assert_eq!(st["kv"]["genesis"], "yes");
    }

    let st = rpc(addr, "status", json!({})).await;
    assert!(st["node_info"]["version"]
        .as_str()
        .unwrap()
        .starts_with("0.38"));
    assert_eq!(st["node_info"]["network"], "kiln-test");
    assert_eq!(st["sync_info"]["latest_block_height"], "0");

    // sync: accepted
    let r = rpc(addr, "broadcast_tx_sync", json!({"tx": b64(b"alice=100")})).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["hash"], hexu(&kiln_node::tx_hash(b"alice=100")));
    assert_eq!(r["data"], hexu(b"ok"));
    // sync: rejected by CheckTx -> code, not an error
    let r = rpc(addr, "broadcast_tx_sync", json!({"tx": b64(b"bad=1")})).await;
    assert_eq!(r["code"], 3);
    assert_eq!(r["codespace"], "kv");
    // async
    let r = rpc(addr, "broadcast_tx_async", json!({"tx": b64(b"bob=7")})).await;
    assert_eq!(r["code"], 0);
    // URI style, hex tx
    let uri = get(
        addr,
        &format!("/broadcast_tx_sync?tx=0x{}", hex::encode(b"carol=9")),
    )
    .await;
    assert_eq!(uri["result"]["code"], 0, "{uri}");
    // duplicate -> CometBFT's cache error
    let dup = rpc_raw(addr, "broadcast_tx_sync", json!({"tx": b64(b"alice=100")})).await;
    assert_eq!(dup["error"]["code"], -32603);
    assert!(
        dup["error"]["data"]
            .as_str()
            .unwrap()
            .contains("tx already exists in cache"),
        "{dup}"
    );

    let n = rpc(addr, "num_unconfirmed_txs", json!({})).await;
    assert_eq!(n["n_txs"], "3");
    let u = rpc(addr, "unconfirmed_txs", json!({"limit": "2"})).await;
    assert_eq!(u["txs"].as_array().unwrap().len(), 2);
    assert_eq!(u["total"], "3");

    assert_eq!(h.produce_block_now().await.unwrap(), Some(1));
    assert_eq!(app.get("alice").as_deref(), Some("100"));

    let b = rpc(addr, "block", json!({"height": "1"})).await;
    let txs = b["block"]["data"]["txs"].as_array().unwrap();
    assert_eq!(txs.len(), 3);
    assert_eq!(txs[0], b64(b"alice=100"));
    assert_eq!(b["block"]["header"]["height"], "1");
    assert_eq!(b["block"]["header"]["chain_id"], "kiln-test");
    // latest block without height
    let latest = get(addr, "/block").await;
    assert_eq!(latest["result"]["block_id"], b["block_id"]);

    let br = rpc(addr, "block_results", json!({"height": 1})).await;
    assert_eq!(br["height"], "1");
    let res = br["txs_results"].as_array().unwrap();
    assert_eq!(res.len(), 3);
    assert_eq!(res[0]["code"], 0);
    assert_eq!(res[0]["gas_used"], "1");
    assert_eq!(res[0]["events"][0]["type"], "message");
    assert_eq!(br["finalize_block_events"][0]["type"], "block");

    let st = rpc(addr, "status", json!({})).await;
    assert_eq!(st["sync_info"]["latest_block_height"], "1");
    assert_eq!(st["sync_info"]["latest_app_hash"], hexu(&app.app_hash()));
    assert_eq!(st["sync_info"]["latest_block_hash"], b["block_id"]["hash"]);

    // tx by hash: JSON (base64) and URI (0x hex)
    let hash = kiln_node::tx_hash(b"bob=7");
    let t = rpc(addr, "tx", json!({"hash": b64(&hash), "prove": false})).await;
    assert_eq!(t["height"], "1");
    assert_eq!(t["index"], 1);
    assert_eq!(t["tx"], b64(b"bob=7"));
    assert_eq!(t["hash"], hexu(&hash));
    let t2 = get(addr, &format!("/tx?hash=0x{}", hex::encode(hash))).await;
    assert_eq!(t2["result"]["tx"], b64(b"bob=7"));
    let missing = rpc_raw(addr, "tx", json!({"hash": b64(&[1u8; 32])})).await;
    assert!(missing["error"]["data"]
        .as_str()
        .unwrap()
        .contains("not found"));

    // tx_search
    let s = rpc(addr, "tx_search", json!({"query": "message.sender='bob'"})).await;
    assert_eq!(s["total_count"], "1");
    assert_eq!(s["txs"][0]["tx"], b64(b"bob=7"));
    let s = rpc(
        addr,
        "tx_search",
        json!({"query": "tx.height=1", "order_by": "desc"}),
    )
    .await;
    assert_eq!(s["total_count"], "3");
    assert_eq!(s["txs"][0]["index"], 2);
    let s = rpc(
        addr,
        "tx_search",
        json!({"query": format!("tx.hash='{}'", hexu(&hash))}),
    )
    .await;
    assert_eq!(s["total_count"], "1");
    let s = rpc(
        addr,
        "tx_search",
        json!({"query": "message.action='set' AND transfer.recipient='9'"}),
    )
    .await;
    assert_eq!(s["total_count"], "1");
    assert_eq!(s["txs"][0]["tx"], b64(b"carol=9"));
    let s = rpc(
        addr,
        "tx_search",
        json!({"query": "message.action='set'", "page": "2", "per_page": "2"}),
    )
    .await;
    assert_eq!(s["total_count"], "3");
    assert_eq!(s["txs"].as_array().unwrap().len(), 1);
    let s = get(
        addr,
        "/tx_search?query=%22tx.height%3E0%20AND%20message.sender%3D%27alice%27%22",
    )
    .await;
    assert_eq!(s["result"]["total_count"], "1", "{s}");

    // abci_query: JSON (hex data) and URI
    let q = rpc(
        addr,
        "abci_query",
        json!({"path": "/store", "data": hex::encode("alice")}),
    )
    .await;
    assert_eq!(q["response"]["value"], b64(b"100"));
    assert_eq!(q["response"]["height"], "1");
    let q = get(addr, "/abci_query?path=%22/store%22&data=0x626f62").await;
    assert_eq!(q["result"]["response"]["value"], b64(b"7"));
    let info = rpc(addr, "abci_info", json!({})).await;
    assert_eq!(info["response"]["last_block_height"], "1");
    assert_eq!(
        info["response"]["last_block_app_hash"],
        b64(&app.app_hash())
    );

    // broadcast_tx_commit waits for inclusion
    let commit_task = tokio::spawn(async move {
        rpc(addr, "broadcast_tx_commit", json!({"tx": b64(b"dave=1")})).await
    });
    let mut got = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        h.produce_block_now().await.unwrap();
        if commit_task.is_finished() {
            got = Some(commit_task.await.unwrap());
            break;
        }
    }
    let c = got.expect("broadcast_tx_commit returned");
    assert_eq!(c["check_tx"]["code"], 0);
    assert_eq!(c["tx_result"]["code"], 0);
    assert_ne!(c["height"], "0");
    // a tx failing in FinalizeBlock is still included, with its code
    let c = {
        let t = tokio::spawn(async move {
            rpc(addr, "broadcast_tx_commit", json!({"tx": b64(b"fail=1")})).await
        });
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            h.produce_block_now().await.unwrap();
            if t.is_finished() {
                break t.await.unwrap();
            }
        }
    };
    assert_eq!(c["tx_result"]["code"], 5);
    assert_eq!(c["tx_result"]["codespace"], "kv");
    // CheckTx failure returns immediately with height 0
    let c = rpc(addr, "broadcast_tx_commit", json!({"tx": b64(b"badx=1")})).await;
    assert_eq!(c["check_tx"]["code"], 3);
    assert_eq!(c["height"], "0");

    // misc endpoints answer in shape
    assert_eq!(rpc(addr, "health", json!({})).await, json!({}));
    assert_eq!(
        rpc(addr, "genesis", json!({})).await["genesis"]["chain_id"],
        "kiln-test"
    );
    assert_eq!(rpc(addr, "net_info", json!({})).await["n_peers"], "0");
    let cp = rpc(addr, "consensus_params", json!({})).await;
    assert_eq!(cp["consensus_params"]["block"]["max_bytes"], "22020096");
    let bc = rpc(
        addr,
        "blockchain",
        json!({"minHeight": "1", "maxHeight": "2"}),
    )
    .await;
    assert_eq!(bc["block_metas"].as_array().unwrap().len(), 2);
    assert_eq!(bc["block_metas"][0]["header"]["height"], "2");
    let (status, metrics) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("kiln_node_height "), "{metrics}");
    assert!(metrics.contains("kiln_node_mempool_size 0"), "{metrics}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_jsonrpc_errors_and_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let h = start(KvApp::default(), dir.path()).await;
    let addr = h.rpc_addr();
    h.produce_block_now().await.unwrap();

    let (_, body) = http(addr, "POST", "/", Some("{not json")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32700);

    let (_, body) = http(addr, "POST", "/", Some(r#"{"jsonrpc":"2.0","id":1}"#)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32600);

    let (_, body) = http(addr, "POST", "/", Some(r#"[1, "x"]"#)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["error"]["code"], -32600);

    let v = rpc_raw(addr, "no_such_method", json!({})).await;
    assert_eq!(v["error"]["code"], -32601);
    assert_eq!(v["error"]["message"], "Method not found");

    for (m, p) in [
        ("block", json!({"height": "abc"})),
        ("block", json!({"height": [1]})),
        ("broadcast_tx_sync", json!({"tx": "!!!not base64"})),
        ("broadcast_tx_sync", json!({})),
        ("abci_query", json!({"path": "/store", "data": "zz"})),
        ("tx", json!({"hash": "AAAA"})),
        ("block", json!("a string")),
        ("block", json!([1, 2, 3])),
    ] {
        let v = rpc_raw(addr, m, p.clone()).await;
        assert_eq!(v["error"]["code"], -32602, "{m} {p}: {v}");
        assert_eq!(v["error"]["message"], "Invalid params");
    }
    let v = rpc_raw(addr, "block", json!({"height": 1000})).await;
    assert_eq!(v["error"]["code"], -32603);
    assert!(
        v["error"]["data"]
            .as_str()
            .unwrap()
            .contains("current blockchain height 1"),
        "{v}"
    );
    let v = rpc_raw(addr, "tx_search", json!({"query": "tm.event = = 'x'"})).await;
    assert_eq!(v["error"]["code"], -32603);
    let v = rpc_raw(
        addr,
        "tx_search",
        json!({"query": "tx.height=1", "page": 9}),
    )
    .await;
    assert!(
        v["error"]["data"]
            .as_str()
            .unwrap()
            .contains("page should be within"),
        "{v}"
    );

    // URI: bad args and unknown method
    let v = get(addr, "/block?height=xyz").await;
    assert_eq!(v["error"]["code"], -32602);
    let (status, _) = http(addr, "GET", "/nope", None).await;
    assert_eq!(status, 404);
    // positional params and batches work
    let v = rpc(addr, "block", json!([1])).await;
    assert_eq!(v["block"]["header"]["height"], "1");
    let (_, body) = http(
        addr,
        "POST",
        "/",
        Some(r#"[{"jsonrpc":"2.0","id":1,"method":"health"},{"jsonrpc":"2.0","id":"x","method":"status"}]"#),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["id"], 1);
    assert_eq!(v[1]["id"], "x");
    assert!(v[1]["result"]["node_info"].is_object());

    // still alive
    assert_eq!(rpc(addr, "health", json!({})).await, json!({}));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_proposal_rejection_skips_the_block() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let h = start(app.clone(), dir.path()).await;
    let addr = h.rpc_addr();
    assert_eq!(h.produce_block_now().await.unwrap(), Some(1));
    rpc(addr, "broadcast_tx_sync", json!({"tx": b64(b"poison=1")})).await;
    assert_eq!(h.produce_block_now().await.unwrap(), None);
    assert_eq!(h.height(), 1);
    assert_eq!(app.height(), 1);
    let st = rpc(addr, "status", json!({})).await;
    assert_eq!(st["sync_info"]["latest_block_height"], "1");
    let (_, metrics) = http(addr, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("kiln_node_blocks_rejected_total 1"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mempool_rechecks_after_commit_and_respects_block_bytes() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let mut cfg = config(dir.path());
    cfg.max_block_txs_bytes = Some(12);
    let h = kiln_node::DevnetHandle::start(app.clone(), cfg)
        .await
        .unwrap();
    let addr = h.rpc_addr();
    for tx in ["k1=aaaa", "k2=bbbb", "k3=cccc"] {
        assert_eq!(
            rpc(addr, "broadcast_tx_sync", json!({"tx": b64(tx.as_bytes())})).await["code"],
            0
        );
    }
    // k2 becomes invalid before the next block; only k1 fits (7 bytes of 12).
    app.s.lock().unwrap().invalid_keys.insert("k2".into());
    h.produce_block_now().await.unwrap();
    let b = rpc(addr, "block", json!({"height": 1})).await;
    assert_eq!(b["block"]["data"]["txs"], json!([b64(b"k1=aaaa")]));
    // k2 dropped by recheck, k3 kept
    let u = rpc(addr, "unconfirmed_txs", json!({})).await;
    assert_eq!(u["txs"], json!([b64(b"k3=cccc")]));
    assert!(app.s.lock().unwrap().recheck_calls >= 2);
    // the dropped tx may be resubmitted (it left the cache), the committed one not
    let v = rpc_raw(addr, "broadcast_tx_sync", json!({"tx": b64(b"k1=aaaa")})).await;
    assert!(v["error"]["data"]
        .as_str()
        .unwrap()
        .contains("tx already exists in cache"));
    app.s.lock().unwrap().invalid_keys.clear();
    assert_eq!(
        rpc(addr, "broadcast_tx_sync", json!({"tx": b64(b"k2=bbbb")})).await["code"],
        0
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_block_json_has_cometbft_empty_last_block_id_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let h = start(KvApp::default(), dir.path()).await;
    h.produce_block_now().await.unwrap();
    let b = rpc(h.rpc_addr(), "block", json!({"height": 1})).await;
    assert_eq!(
        b["block"]["header"]["last_block_id"],
        json!({"hash": "", "parts": {"total": 0, "hash": ""}}),
        "{b}"
    );
    assert_eq!(b["block"]["last_commit"]["height"], "0", "{b}");
    assert_eq!(b["block"]["last_commit"]["signatures"], json!([]));
    assert_eq!(b["block"]["evidence"], json!({"evidence": []}));
    let bc = rpc(h.rpc_addr(), "blockchain", json!({})).await;
    assert_eq!(bc["block_metas"][0]["header"]["last_block_id"]["hash"], "");
    h.stop().await;
}
