//! CheckTx on the mempool connection answers while the consensus connection
//! is busy with a block: between FinalizeBlock and Commit (CometBFT flushes
//! the mempool connection before it sends Commit, so a CheckTx that waited
//! for Commit would stop the chain), and while FinalizeBlock of a big block
//! is still executing. Driven over four real sockets, as CometBFT connects,
//! to `kiln_node::abci_server` (the server `kilnd start` runs).

// A test, not consensus code: it measures answer latencies on the wall clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "common/abci_wire.rs"]
mod abci_wire;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use abci_wire::{finalize_request, CometConnections};
use kiln_app::KilnApp;
use kiln_framework::Address;
use kiln_store::{Storage, StorageConfig};
use kiln_testkit::{msg_send, sign_tx, BlockDriver, TestKey, TxOptions};
use tendermint_proto::v0_38::abci::{CheckTxType, RequestInitChain};

const CHAIN: &str = "kiln-socket-concurrency";

/// A KilnApp served on a free loopback port by Kiln's ABCI server; the
/// returned clone shares its state (used only to read account numbers).
fn serve(dir: &std::path::Path) -> (SocketAddr, KilnApp) {
    let app = KilnApp::new(Storage::open(dir, StorageConfig { keep_recent: 0 }).unwrap()).unwrap();
    let server =
        kiln_node::abci_server::bind_abci(app.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    std::thread::spawn(move || server.listen());
    (addr, app)
}

fn init(conns: &mut CometConnections, keys: &[&TestKey]) {
    assert_eq!(conns.query.info().last_block_height, 0);
    let genesis = BlockDriver::genesis_funding(keys, 1_000_000_000_000);
    conns.consensus.init_chain(RequestInitChain {
        chain_id: CHAIN.into(),
        app_state_bytes: serde_json::to_vec(&genesis).unwrap().into(),
        initial_height: 1,
        ..Default::default()
    });
}

fn account_number(app: &KilnApp, addr: &Address) -> u64 {
    kiln_bank::state::AuthExt::account(&app.latest_view(), addr)
        .unwrap()
        .expect("the account exists")
        .account_number
}

/// `count` sends from `key` with sequences `first..first + count`.
fn sends(app: &KilnApp, key: &TestKey, first: u64, count: u64) -> Vec<Vec<u8>> {
    let number = account_number(app, &key.address);
    let sink = TestKey::from_label("socket-concurrency-sink").address;
    (first..first + count)
        .map(|sequence| {
            sign_tx(
                key,
                vec![msg_send(&key.address, &sink, 1)],
                &TxOptions::new(CHAIN, number, sequence),
            )
        })
        .collect()
}

#[test]
fn check_tx_and_the_flush_before_commit_answer_while_a_block_awaits_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, app) = serve(dir.path());
    let mut conns = CometConnections::open(addr);
    let proposer = TestKey::from_label("socket-concurrency-proposer");
    let user = TestKey::from_label("socket-concurrency-user");
    init(&mut conns, &[&proposer, &user]);
    let block_txs = sends(&app, &proposer, 0, 3);
    let user_txs = sends(&app, &user, 0, 3);

    // Height 1 still carries the uncommitted genesis; 2 and 3 do not.
    for height in 1..=3i64 {
        let i = usize::try_from(height - 1).unwrap();
        let finalized = conns
            .consensus
            .finalize_block(finalize_request(height, &block_txs[i..=i]));
        assert_eq!(
            finalized.tx_results[0].code, 0,
            "{:?}",
            finalized.tx_results
        );

        // The block is finalized, not committed. CometBFT keeps feeding the
        // mempool, then locks it and flushes the mempool connection before
        // Commit: both must be answered with Commit not sent yet (a read
        // deadline turns a wait into a failure instead of a hang).
        let checked = conns.mempool.check_tx(&user_txs[i], CheckTxType::New);
        assert_eq!(checked.code, 0, "height {height}: {}", checked.log);
        conns.mempool.send_flush();
        conns.mempool.recv_flush();
        // The query connection is not held up either.
        assert_eq!(conns.query.info().last_block_height, height - 1);

        // The user's txs stay in the mempool (no block includes them) and
        // all pass the recheck.
        let (_, rechecked) = conns.commit_and_recheck(&user_txs[..=i]);
        assert!(rechecked.iter().all(|r| r.code == 0), "{rechecked:?}");
        let info = conns.query.info();
        assert_eq!(info.last_block_height, height);
        assert_eq!(info.last_block_app_hash, finalized.app_hash);
    }
}

#[test]
fn check_tx_answers_while_finalize_block_of_a_big_block_is_running() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, app) = serve(dir.path());
    let mut conns = CometConnections::open(addr);
    let whale = TestKey::from_label("socket-concurrency-whale");
    let user = TestKey::from_label("socket-concurrency-user");
    init(&mut conns, &[&whale, &user]);
    const BLOCK_TXS: u64 = 3_000;
    let block = sends(&app, &whale, 0, BLOCK_TXS);
    let user_txs = sends(&app, &user, 0, 6_000);

    let (started_tx, started) = mpsc::channel();
    let (finalize_sent, finalize_answered, finalized, mempool_checks) =
        std::thread::scope(|scope| {
            let consensus_side = scope.spawn(|| {
                let sent = Instant::now();
                started_tx.send(()).unwrap();
                // Closures capture disjoint fields: this thread owns the
                // consensus connection, the test thread the mempool one.
                let response = conns.consensus.finalize_block(finalize_request(1, &block));
                (sent, Instant::now(), response)
            });
            started.recv().unwrap();
            // CheckTx one after another (as CometBFT's mempool reactor
            // does with txs from peers) for as long as the block executes.
            let mut checks = Vec::new();
            for tx in &user_txs {
                if consensus_side.is_finished() {
                    break;
                }
                let asked = Instant::now();
                let answer = conns.mempool.check_tx(tx, CheckTxType::New);
                checks.push((asked, Instant::now(), answer));
            }
            let (sent, answered, response) = consensus_side.join().unwrap();
            (sent, answered, response, checks)
        });

    assert_eq!(finalized.tx_results.len(), BLOCK_TXS as usize);
    assert!(finalized.tx_results.iter().all(|r| r.code == 0));
    let block_time = finalize_answered - finalize_sent;
    assert!(
        block_time >= Duration::from_millis(200),
        "FinalizeBlock of {BLOCK_TXS} txs took only {block_time:?}: too fast to tell whether CheckTx waits for it"
    );
    for (_, _, answer) in &mempool_checks {
        assert_eq!(answer.code, 0, "{}", answer.log);
    }
    // CheckTx answered while FinalizeBlock was running...
    let answered_during: Vec<Duration> = mempool_checks
        .iter()
        .filter(|(_, answered, _)| *answered < finalize_answered)
        .map(|(asked, answered, _)| *answered - *asked)
        .collect();
    let slowest = answered_during.iter().max().copied().unwrap_or_default();
    println!(
        "FinalizeBlock of {BLOCK_TXS} txs: {block_time:?}; {} CheckTx answered meanwhile, the slowest in {slowest:?}",
        answered_during.len()
    );
    assert!(
        answered_during.len() >= 3,
        "only {} CheckTx answered during a {block_time:?} FinalizeBlock",
        answered_during.len()
    );
    // ...each promptly: none waited for the block to finish executing.
    assert!(
        slowest < block_time / 3,
        "a CheckTx took {slowest:?} during a {block_time:?} FinalizeBlock: it waited for the block"
    );

    // The block commits, the accepted user txs survive the recheck, and the
    // query connection saw nothing odd.
    let accepted: Vec<Vec<u8>> = user_txs[..mempool_checks.len()].to_vec();
    let (_, rechecked) = conns.commit_and_recheck(&accepted);
    assert!(rechecked.iter().all(|r| r.code == 0));
    let info = conns.query.info();
    assert_eq!(info.last_block_height, 1);
    assert_eq!(info.last_block_app_hash, finalized.app_hash);
}
