//! Block chaining, commit signatures, validator-update delay, restart and
//! crash replay, websocket events.

mod common;

use std::time::Duration;

use common::*;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tendermint::{block, vote, Block};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_chain_and_commits_verify_with_the_validator_key() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let h = start(app.clone(), dir.path()).await;
    let addr = h.rpc_addr();
    let mut app_hashes = vec![app.app_hash()]; // after InitChain
    for i in 0..4 {
        rpc(
            addr,
            "broadcast_tx_sync",
            json!({"tx": b64(format!("k{i}=v{i}").as_bytes())}),
        )
        .await;
        h.produce_block_now().await.unwrap().unwrap();
        app_hashes.push(app.app_hash());
    }
    let vals = rpc(addr, "validators", json!({"height": "2"})).await;
    assert_eq!(vals["total"], "1");
    let pk_b64 = vals["validators"][0]["pub_key"]["value"].as_str().unwrap();
    let pk_bytes: [u8; 32] = b64dec(pk_b64).try_into().unwrap();
    let vk = VerifyingKey::from_bytes(&pk_bytes).unwrap();
    let key = kiln_node::home::load_priv_validator_key(dir.path()).unwrap();
    assert_eq!(vk, key.verifying_key());

    let mut prev: Option<(Block, block::Id)> = None;
    for height in 1..=4u64 {
        let r = rpc(addr, "block", json!({"height": height.to_string()})).await;
        let blk: Block = serde_json::from_value(r["block"].clone()).unwrap();
        let bid: block::Id = serde_json::from_value(r["block_id"].clone()).unwrap();
        // header hash recomputed by tendermint-rs equals the served block id
        assert_eq!(blk.header.hash(), bid.hash);
        // app hash in header h = app hash after block h-1
        assert_eq!(
            blk.header.app_hash.as_bytes(),
            &app_hashes[(height - 1) as usize][..]
        );
        assert_eq!(blk.header.proposer_address, key.address());
        assert_eq!(
            blk.header.data_hash.unwrap(),
            kiln_node::chain::txs_hash(&blk.data)
        );
        match &prev {
            None => {
                assert!(blk.header.last_block_id.is_none());
                assert!(blk
                    .last_commit
                    .as_ref()
                    .map(|c| c.signatures.is_empty())
                    .unwrap_or(true));
            }
            Some((pb, pid)) => {
                assert_eq!(blk.header.last_block_id, Some(*pid));
                let lc = blk.last_commit.clone().unwrap();
                assert_eq!(lc.block_id, *pid);
                assert_eq!(lc.height, pb.header.height);
                assert!(blk.header.time > pb.header.time);
                verify_commit(&lc, &vk, "kiln-test");
                assert_eq!(
                    blk.header.last_commit_hash.unwrap(),
                    kiln_node::chain::commit_hash(Some(&lc))
                );
                // the canonical commit endpoint for h-1 serves the same commit
                let c = rpc(addr, "commit", json!({"height": (height - 1).to_string()})).await;
                assert_eq!(c["canonical"], true);
                let cc: block::Commit =
                    serde_json::from_value(c["signed_header"]["commit"].clone()).unwrap();
                assert_eq!(cc, lc);
            }
        }
        prev = Some((blk, bid));
    }
    // the latest commit (not yet in a block) is served non-canonical and verifies too
    let c = rpc(addr, "commit", json!({})).await;
    assert_eq!(c["canonical"], false);
    let cc: block::Commit = serde_json::from_value(c["signed_header"]["commit"].clone()).unwrap();
    assert_eq!(cc.height.value(), 4);
    verify_commit(&cc, &vk, "kiln-test");
    // a tampered signature fails verification
    let mut bad = cc.clone();
    if let block::CommitSig::BlockIdFlagCommit { timestamp, .. } = &mut bad.signatures[0] {
        *timestamp = (*timestamp + Duration::from_secs(1)).unwrap();
    }
    assert!(std::panic::catch_unwind(|| verify_commit(&bad, &vk, "kiln-test")).is_err());
    h.stop().await;
}

fn b64dec(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Verify a single-signature commit independently of kiln-node's helpers.
fn verify_commit(c: &block::Commit, vk: &VerifyingKey, chain_id: &str) {
    let block::CommitSig::BlockIdFlagCommit {
        validator_address,
        timestamp,
        signature,
    } = &c.signatures[0]
    else {
        panic!("not signed");
    };
    let v = vote::Vote {
        vote_type: vote::Type::Precommit,
        height: c.height,
        round: c.round,
        block_id: Some(c.block_id),
        timestamp: Some(*timestamp),
        validator_address: *validator_address,
        validator_index: vote::ValidatorIndex::try_from(0u32).unwrap(),
        signature: None,
        extension: vec![],
        extension_signature: None,
    };
    let bytes = v.into_signable_vec(chain_id.parse().unwrap());
    let sig = Signature::from_slice(signature.as_ref().unwrap().as_bytes()).unwrap();
    vk.verify(&bytes, &sig).expect("commit signature verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_updates_take_effect_two_blocks_later() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let h = start(app.clone(), dir.path()).await;
    let addr = h.rpc_addr();
    h.produce_block_now().await.unwrap(); // 1
    h.produce_block_now().await.unwrap(); // 2
    let newkey = kiln_node::home::PrivValidatorKey::from_seed([9u8; 32]);
    let tx = format!("val={}!25", b64(newkey.verifying_key().as_bytes()));
    rpc(addr, "broadcast_tx_sync", json!({"tx": b64(tx.as_bytes())})).await;
    h.produce_block_now().await.unwrap(); // 3: update returned here
    let br = rpc(addr, "block_results", json!({"height": 3})).await;
    assert_eq!(br["validator_updates"][0]["power"], "25", "{br}");
    // validators endpoint: 4 unchanged (next), 5 includes the new one (next-next)
    for (height, n) in [(3, 1), (4, 1), (5, 2)] {
        let v = rpc(addr, "validators", json!({"height": height.to_string()})).await;
        assert_eq!(v["total"], n.to_string(), "height {height}: {v}");
    }
    h.produce_block_now().await.unwrap(); // 4
    h.produce_block_now().await.unwrap(); // 5
    h.produce_block_now().await.unwrap(); // 6
    let b3: Block =
        serde_json::from_value(rpc(addr, "block", json!({"height": 3})).await["block"].clone())
            .unwrap();
    let b4: Block =
        serde_json::from_value(rpc(addr, "block", json!({"height": 4})).await["block"].clone())
            .unwrap();
    let b5: Block =
        serde_json::from_value(rpc(addr, "block", json!({"height": 5})).await["block"].clone())
            .unwrap();
    assert_eq!(b3.header.validators_hash, b4.header.validators_hash);
    assert_ne!(b4.header.validators_hash, b5.header.validators_hash);
    assert_eq!(b4.header.next_validators_hash, b5.header.validators_hash);
    for (height, n) in [(4, 1), (5, 2), (6, 2)] {
        let v = rpc(addr, "validators", json!({"height": height.to_string()})).await;
        assert_eq!(v["total"], n.to_string(), "height {height}: {v}");
    }
    let v = rpc(addr, "validators", json!({"height": "5"})).await;
    // sorted by power desc: the new validator (25) first
    assert_eq!(v["validators"][0]["address"], newkey.address().to_string());
    assert_eq!(v["validators"][0]["voting_power"], "25");
    // block 6's last commit (for 5) lists both validators; only we signed
    let b6: Block =
        serde_json::from_value(rpc(addr, "block", json!({"height": 6})).await["block"].clone())
            .unwrap();
    let lc = b6.last_commit.unwrap();
    assert_eq!(lc.signatures.len(), 2);
    assert!(matches!(
        lc.signatures[0],
        block::CommitSig::BlockIdFlagAbsent
    ));
    assert!(matches!(
        lc.signatures[1],
        block::CommitSig::BlockIdFlagCommit { .. }
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_at_the_same_height_and_app_hash() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let h = start(app.clone(), dir.path()).await;
    for i in 0..3 {
        rpc(
            h.rpc_addr(),
            "broadcast_tx_sync",
            json!({"tx": b64(format!("r{i}=x").as_bytes())}),
        )
        .await;
        h.produce_block_now().await.unwrap();
    }
    let before = rpc(h.rpc_addr(), "status", json!({})).await;
    drop(h); // kill without a graceful stop
    tokio::time::sleep(Duration::from_millis(300)).await;

    let h = start(app.clone(), dir.path()).await;
    let after = rpc(h.rpc_addr(), "status", json!({})).await;
    assert_eq!(after["sync_info"]["latest_block_height"], "3");
    assert_eq!(
        after["sync_info"]["latest_app_hash"],
        before["sync_info"]["latest_app_hash"]
    );
    assert_eq!(
        after["sync_info"]["latest_block_hash"],
        before["sync_info"]["latest_block_hash"]
    );
    assert_eq!(
        app.s.lock().unwrap().init_chain_calls,
        1,
        "no second InitChain"
    );
    assert_eq!(h.produce_block_now().await.unwrap(), Some(4));
    let b4 = rpc(h.rpc_addr(), "block", json!({"height": 4})).await;
    assert_eq!(
        b4["block"]["header"]["last_block_id"]["hash"],
        before["sync_info"]["latest_block_hash"]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_store_one_ahead_of_the_app_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let h = start(app.clone(), dir.path()).await;
    for i in 0..3 {
        rpc(
            h.rpc_addr(),
            "broadcast_tx_sync",
            json!({"tx": b64(format!("p{i}=y").as_bytes())}),
        )
        .await;
        h.produce_block_now().await.unwrap();
    }
    let hash3 = app.app_hash();
    h.stop().await;
    // crash between "block 3 saved" and "app committed block 3"
    app.rollback_to(2);
    assert_eq!(app.get("p2"), None);
    let calls = app.s.lock().unwrap().finalize_calls;

    let h = start(app.clone(), dir.path()).await;
    assert_eq!(app.height(), 3);
    assert_eq!(app.app_hash(), hash3);
    assert_eq!(app.get("p2").as_deref(), Some("y"));
    assert_eq!(
        app.s.lock().unwrap().finalize_calls,
        calls + 1,
        "exactly one block replayed"
    );
    let st = rpc(h.rpc_addr(), "status", json!({})).await;
    assert_eq!(st["sync_info"]["latest_block_height"], "3");
    assert_eq!(h.produce_block_now().await.unwrap(), Some(4));
    h.stop().await;

    // a wiped app (height 0) gets InitChain and a replay of every block
    let fresh = KvApp::default();
    let h = start(fresh.clone(), dir.path()).await;
    assert_eq!(fresh.height(), 4);
    assert_eq!(fresh.app_hash(), app.app_hash());
    assert_eq!(fresh.s.lock().unwrap().init_chain_calls, 1);
    h.stop().await;

    // an app ahead of the store is refused with a clear error
    let dir2 = tempfile::tempdir().unwrap();
    init_home(dir2.path());
    let err = kiln_node::DevnetHandle::start(app.clone(), config(dir2.path()))
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("block store"), "{err:#}");
}

async fn next_json(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("ws timeout")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscribers_receive_new_block_and_tx_events() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let h = start(KvApp::default(), dir.path()).await;
    let addr = h.rpc_addr();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/websocket"))
        .await
        .unwrap();
    let sub = |id: u64, q: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "subscribe", "params": {"query": q}})
            .to_string()
    };
    ws.send(Message::Text(sub(1, "tm.event='NewBlock'").into()))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws).await,
        json!({"jsonrpc": "2.0", "id": 1, "result": {}})
    );
    ws.send(Message::Text(
        sub(2, "tm.event='Tx' AND message.sender='wsa'").into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["id"], 2);
    // bad query -> error, session continues
    ws.send(Message::Text(sub(3, "tm.event=").into()))
        .await
        .unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(e["error"]["code"], -32603, "{e}");
    // garbage -> parse error, session continues
    ws.send(Message::Text("{{{".into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["error"]["code"], -32700);
    // normal methods work over the websocket too
    ws.send(Message::Text(
        json!({"jsonrpc":"2.0","id":4,"method":"health"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["result"], json!({}));

    rpc(addr, "broadcast_tx_sync", json!({"tx": b64(b"wsa=1")})).await;
    rpc(addr, "broadcast_tx_sync", json!({"tx": b64(b"wsb=2")})).await;
    h.produce_block_now().await.unwrap();

    let nb = next_json(&mut ws).await;
    assert_eq!(nb["id"], 1);
    assert_eq!(nb["result"]["query"], "tm.event='NewBlock'");
    assert_eq!(nb["result"]["data"]["type"], "tendermint/event/NewBlock");
    assert_eq!(
        nb["result"]["data"]["value"]["block"]["header"]["height"],
        "1"
    );
    assert!(nb["result"]["data"]["value"]["block_id"]["hash"].is_string());
    assert!(nb["result"]["data"]["value"]["result_finalize_block"]["app_hash"].is_string());
    assert_eq!(nb["result"]["events"]["tm.event"], json!(["NewBlock"]));
    let blk: Block =
        serde_json::from_value(nb["result"]["data"]["value"]["block"].clone()).unwrap();
    assert_eq!(blk.data.len(), 2);

    let tx = next_json(&mut ws).await;
    assert_eq!(tx["id"], 2);
    assert_eq!(tx["result"]["data"]["type"], "tendermint/event/Tx");
    let txr = &tx["result"]["data"]["value"]["TxResult"];
    assert_eq!(txr["height"], "1");
    assert_eq!(txr["tx"], b64(b"wsa=1"));
    assert_eq!(txr["result"]["events"][0]["type"], "message");
    assert_eq!(
        tx["result"]["events"]["tx.hash"],
        json!([hex::encode_upper(kiln_node::tx_hash(b"wsa=1"))])
    );
    assert_eq!(tx["result"]["events"]["tx.height"], json!(["1"]));
    assert_eq!(tx["result"]["events"]["message.sender"], json!(["wsa"]));

    // unsubscribe NewBlock; next block yields no NewBlock for us, but Tx still arrives
    ws.send(Message::Text(json!({"jsonrpc":"2.0","id":5,"method":"unsubscribe","params":{"query":"tm.event='NewBlock'"}}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["id"], 5);
    rpc(addr, "broadcast_tx_sync", json!({"tx": b64(b"wsa=3")})).await;
    h.produce_block_now().await.unwrap();
    let tx = next_json(&mut ws).await;
    assert_eq!(tx["id"], 2, "{tx}");
    assert_eq!(tx["result"]["data"]["value"]["TxResult"]["height"], "2");
    ws.send(Message::Text(
        json!({"jsonrpc":"2.0","id":6,"method":"unsubscribe_all"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["result"], json!({}));

    // a second client with the plain Tx query sees the tx events of the next block
    let (mut ws2, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/websocket"))
        .await
        .unwrap();
    ws2.send(Message::Text(sub(9, "tm.event='Tx'").into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws2).await["id"], 9);
    rpc(addr, "broadcast_tx_sync", json!({"tx": b64(b"zz=1")})).await;
    h.produce_block_now().await.unwrap();
    let ev = next_json(&mut ws2).await;
    assert_eq!(
        ev["result"]["data"]["value"]["TxResult"]["tx"],
        b64(b"zz=1")
    );

    // stop closes the websocket sessions
    h.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws2.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                _ => continue,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "websocket closed on stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_block_production_runs_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    let app = KvApp::default();
    let mut cfg = config(dir.path());
    cfg.manual_blocks = false;
    cfg.block_time = Duration::from_millis(100);
    let h = kiln_node::DevnetHandle::start(app.clone(), cfg)
        .await
        .unwrap();
    let addr = h.rpc_addr();
    let r = rpc(addr, "broadcast_tx_commit", json!({"tx": b64(b"auto=1")})).await;
    assert_eq!(r["tx_result"]["code"], 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(h.height() >= 3, "height {}", h.height());
    assert_eq!(app.get("auto").as_deref(), Some("1"));
    h.stop().await;
}
