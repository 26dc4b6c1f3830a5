//! State sync through the ABCI snapshot calls, as CometBFT drives them: a
//! node takes snapshots every `interval` blocks off the commit path and
//! keeps the newest few; a fresh node accepts an offered snapshot only when
//! its root is the trusted app hash, refetches a chunk that fails its
//! SHA-256 (rejecting the sender), restores, answers Info with the
//! snapshot's height and app hash, and then executes the next blocks to the
//! same app hashes as the node it synced from.

// A test, not consensus code: it waits on the wall clock for background work.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use kiln_app::snapshots::{SnapshotConfig, Snapshots};
use kiln_app::KilnApp;
use kiln_store::{Storage, StorageConfig};
use kiln_testkit::{msg_send, sign_tx, BlockDriver, TestKey};
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    response_apply_snapshot_chunk::Result as ApplyResult,
    response_offer_snapshot::Result as OfferResult, RequestApplySnapshotChunk,
    RequestLoadSnapshotChunk, RequestOfferSnapshot, Snapshot,
};

const CHAIN: &str = "kiln-state-sync";

fn send_block(driver: &mut BlockDriver, keys: &[TestKey], round: u64) {
    let mut txs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let to = &keys[(i + 1 + round as usize) % keys.len()].address;
        let opts = driver.opts_for(key);
        txs.push(sign_tx(
            key,
            vec![msg_send(&key.address, to, 1_000 + round as u128)],
            &opts,
        ));
    }
    let out = driver.deliver(txs).unwrap();
    assert!(out.response.tx_results.iter().all(|r| r.code == 0));
}

fn wait_for_snapshots(app: &KilnApp, heights: &[u64]) -> Vec<Snapshot> {
    let start = Instant::now();
    loop {
        let list = app.list_snapshots().snapshots;
        if list.iter().map(|s| s.height).collect::<Vec<_>>() == heights {
            return list;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "snapshots not taken: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_fresh_node_restores_a_snapshot_and_follows_the_chain() {
    let keys: Vec<TestKey> = (0..6)
        .map(|i| TestKey::from_label(&format!("sync-{i}")))
        .collect();
    let refs: Vec<&TestKey> = keys.iter().collect();
    let genesis = BlockDriver::genesis_funding(&refs, 1_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut source = BlockDriver::open(&dir.path().join("source"), CHAIN, &genesis, 0).unwrap();
    let snapshots_dir = dir.path().join("snapshots");
    // Small chunks so the snapshot has several.
    let mut config = SnapshotConfig::new(&snapshots_dir, 5, 2);
    config.chunk_bytes = 512;
    source.app = source.app.clone().with_snapshots(config);
    for round in 0..17 {
        send_block(&mut source, &keys, round);
    }
    // Heights 5, 10, 15 were snapshot heights; two are kept, newest first.
    let list = wait_for_snapshots(&source.app, &[15, 10]);
    let offered = list[0].clone();
    assert!(offered.chunks > 2, "{offered:?}");
    let trusted = source.app.storage().root_hash(15).unwrap();

    // Another node taking the same height produces byte-identical snapshots.
    let replica_dir = dir.path().join("replica-snapshots");
    let replica = Snapshots::new(Some({
        let mut c = SnapshotConfig::new(&replica_dir, 0, 1);
        c.chunk_bytes = 512;
        c
    }));
    replica.take(source.app.storage(), 15).unwrap();
    assert_eq!(replica.list().snapshots[0], offered);

    let fresh_path = dir.path().join("fresh");
    let fresh = KilnApp::new(Storage::open(&fresh_path, StorageConfig { keep_recent: 0 }).unwrap())
        .unwrap();
    assert_eq!(fresh.info(Default::default()).last_block_height, 0);
    let offer = |app: &KilnApp, snapshot: &Snapshot, app_hash: &[u8]| {
        OfferResult::try_from(
            app.offer_snapshot(RequestOfferSnapshot {
                snapshot: Some(snapshot.clone()),
                app_hash: app_hash.to_vec().into(),
            })
            .result,
        )
        .unwrap()
    };
    // The light client's app hash is not the snapshot's root: refused.
    assert_eq!(offer(&fresh, &offered, &[7u8; 32]), OfferResult::Reject);
    // Metadata that does not hash to the snapshot's hash: refused.
    let mut tampered = offered.clone();
    tampered.hash = vec![0u8; 32].into();
    assert_eq!(offer(&fresh, &tampered, &trusted), OfferResult::Reject);
    assert_eq!(offer(&fresh, &offered, &trusted), OfferResult::Accept);

    let chunk = |i: u32| {
        source
            .app
            .load_snapshot_chunk(RequestLoadSnapshotChunk {
                height: offered.height,
                format: offered.format,
                chunk: i,
            })
            .chunk
            .to_vec()
    };
    let apply = |i: u32, bytes: Vec<u8>, sender: &str| {
        fresh.apply_snapshot_chunk(RequestApplySnapshotChunk {
            index: i,
            chunk: bytes.into(),
            sender: sender.into(),
        })
    };
    assert_eq!(
        apply(0, chunk(0), "good-peer").result,
        ApplyResult::Accept as i32
    );
    // A corrupted chunk: refetch it, reject its sender.
    let mut bad = chunk(1);
    bad[3] ^= 0x40;
    let r = apply(1, bad, "bad-peer");
    assert_eq!(r.result, ApplyResult::Retry as i32);
    assert_eq!(r.refetch_chunks, vec![1]);
    assert_eq!(r.reject_senders, vec!["bad-peer".to_string()]);
    for i in 1..offered.chunks {
        assert_eq!(
            apply(i, chunk(i), "good-peer").result,
            ApplyResult::Accept as i32
        );
    }
    let info = fresh.info(Default::default());
    assert_eq!(info.last_block_height, 15);
    assert_eq!(info.last_block_app_hash.to_vec(), trusted.to_vec());
    // A node with state refuses further offers.
    assert_eq!(offer(&fresh, &offered, &trusted), OfferResult::Abort);

    // The restored node replays blocks 16 and 17 from the source's block
    // store (here: the same txs) and agrees on every app hash, then keeps
    // agreeing on new blocks.
    drop(fresh);
    let source_at_15 = {
        let path = dir.path().join("source-replay");
        // Re-run the source's history to height 15 on a replica to get the
        // exact txs of blocks 16.. in order: the same deterministic rounds.
        let mut r = BlockDriver::open(&path, CHAIN, &genesis, 0).unwrap();
        for round in 0..15 {
            send_block(&mut r, &keys, round);
        }
        assert_eq!(r.last_app_hash, trusted.to_vec());
        r
    };
    let mut follower = BlockDriver::open(&fresh_path, CHAIN, &genesis, 0).unwrap();
    assert_eq!(follower.height, 15);
    let mut reference = source_at_15;
    for round in 15..20 {
        send_block(&mut reference, &keys, round);
        send_block(&mut follower, &keys, round);
        assert_eq!(
            follower.last_app_hash, reference.last_app_hash,
            "round {round}"
        );
        follower.check_invariants().unwrap();
    }
}
