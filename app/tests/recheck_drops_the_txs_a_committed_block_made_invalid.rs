//! After Commit, CometBFT rechecks the txs left in its mempool (CheckTx with
//! type Recheck on the mempool connection). Over four real sockets to
//! `kiln_node::abci_server`: the recheck drops the txs the committed block
//! made invalid — a sequence the block used, a fee the block's spending left
//! the payer unable to pay (with its own sequence or through an authz grant)
//! — and keeps the valid ones, including a chain of one account's txs that
//! is valid only on top of its earlier ones. Each verdict is the one the
//! next block gives the same tx.

#[path = "common/abci_wire.rs"]
mod abci_wire;

use abci_wire::{finalize_request, CometConnections};
use kiln_app::KilnApp;
use kiln_framework::error::codes::{INSUFFICIENT_FUNDS, WRONG_SEQUENCE};
use kiln_framework::Address;
use kiln_store::{Storage, StorageConfig};
use kiln_testkit::{msg_exec, msg_grant, msg_send, sign_tx, BlockDriver, TestKey, TxOptions};
use tendermint_proto::v0_38::abci::{CheckTxType, RequestInitChain};

const CHAIN: &str = "kiln-socket-recheck";
const FUNDS: u128 = 1_000_000;
const SEND_TYPE_URL: &str = "/cosmos.bank.v1beta1.MsgSend";

fn account_number(app: &KilnApp, addr: &Address) -> u64 {
    kiln_bank::state::AuthExt::account(&app.latest_view(), addr)
        .unwrap()
        .expect("the account exists")
        .account_number
}

#[test]
fn recheck_drops_txs_the_committed_block_made_invalid_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let app =
        KilnApp::new(Storage::open(dir.path(), StorageConfig { keep_recent: 0 }).unwrap()).unwrap();
    let server =
        kiln_node::abci_server::bind_abci(app.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    std::thread::spawn(move || server.listen());
    let mut conns = CometConnections::open(addr);

    let [alice, bob, dave, erin, frank] = ["alice", "bob", "dave", "erin", "frank"]
        .map(|l| TestKey::from_label(&format!("recheck-{l}")));
    let sink = TestKey::from_label("recheck-sink").address;
    let genesis = BlockDriver::genesis_funding(&[&alice, &bob, &dave, &erin, &frank], FUNDS);
    conns.consensus.init_chain(RequestInitChain {
        chain_id: CHAIN.into(),
        app_state_bytes: serde_json::to_vec(&genesis).unwrap().into(),
        initial_height: 1,
        ..Default::default()
    });
    // A tx from `key` at `sequence`, sending `amount`, paying `fee`.
    let tx = |key: &TestKey, sequence: u64, amount: u128, fee: u128| {
        let mut opts = TxOptions::new(CHAIN, account_number(&app, &key.address), sequence);
        opts.fee = fee;
        sign_tx(key, vec![msg_send(&key.address, &sink, amount)], &opts)
    };

    // Height 1: erin lets frank send her coins.
    let grant = sign_tx(
        &erin,
        vec![msg_grant(
            &erin.address,
            &frank.address,
            SEND_TYPE_URL,
            None,
        )],
        &TxOptions::new(CHAIN, account_number(&app, &erin.address), 0),
    );
    let block1 = conns
        .consensus
        .finalize_block(finalize_request(1, &[grant]));
    assert_eq!(block1.tx_results[0].code, 0, "{}", block1.tx_results[0].log);
    let (_, none) = conns.commit_and_recheck(&[]);
    assert!(none.is_empty());

    // The mempool fills, in this order; every tx is valid now.
    let a0 = tx(&alice, 0, 1_000, 5_000);
    let a1 = tx(&alice, 1, 1_000, 5_000);
    let a2 = tx(&alice, 2, 1_000, 5_000); // valid only after a1
    let b0 = tx(&bob, 0, 1_000, 5_000);
    let d0 = tx(&dave, 0, 1_000, 5_000);
    let d1 = tx(&dave, 1, 1, 600_000); // a fee dave can pay today
    let e1 = tx(&erin, 1, 1, 500_000); // erin's sequence is 1 after the grant
    for (name, t) in [
        ("a0", &a0),
        ("a1", &a1),
        ("a2", &a2),
        ("b0", &b0),
        ("d0", &d0),
        ("d1", &d1),
        ("e1", &e1),
    ] {
        let checked = conns.mempool.check_tx(t, CheckTxType::New);
        assert_eq!(checked.code, 0, "CheckTx {name}: {}", checked.log);
    }

    // Height 2, proposed by a node with another mempool: a0 itself, another
    // tx of dave's at sequence 0 spending most of his coins, and frank
    // spending most of erin's coins through the grant (erin's sequence is
    // untouched).
    let d0_elsewhere = tx(&dave, 0, 900_000, 5_000);
    let frank_spends_erin = sign_tx(
        &frank,
        vec![msg_exec(
            &frank.address,
            vec![msg_send(&erin.address, &sink, 900_000)],
        )],
        &TxOptions::new(CHAIN, account_number(&app, &frank.address), 0),
    );
    let block2 = conns.consensus.finalize_block(finalize_request(
        2,
        &[a0.clone(), d0_elsewhere, frank_spends_erin],
    ));
    for r in &block2.tx_results {
        assert_eq!(r.code, 0, "{}", r.log);
    }

    // CometBFT removes a0 (committed) from its mempool and rechecks the rest.
    let left = [
        ("a1", &a1),
        ("a2", &a2),
        ("b0", &b0),
        ("d0", &d0),
        ("d1", &d1),
        ("e1", &e1),
    ];
    let left_txs: Vec<Vec<u8>> = left.iter().map(|(_, t)| t.to_vec()).collect();
    let (_, rechecked) = conns.commit_and_recheck(&left_txs);
    let verdict: Vec<(&str, u32)> = left
        .iter()
        .zip(&rechecked)
        .map(|((name, _), r)| (*name, r.code))
        .collect();
    assert_eq!(
        verdict,
        vec![
            ("a1", 0),
            ("a2", 0), // kept: checked on top of a1, as in the block
            ("b0", 0),
            ("d0", WRONG_SEQUENCE),     // the block used dave's sequence 0
            ("d1", INSUFFICIENT_FUNDS), // its sequence is right now, its fee is not payable
            ("e1", INSUFFICIENT_FUNDS), // the grant spent erin's coins
        ],
        "recheck logs: {:?}",
        rechecked.iter().map(|r| &r.log).collect::<Vec<_>>()
    );

    // The mempool view after the recheck holds exactly the kept txs: alice
    // continues at 3, and a dropped tx's sequence is free for a new one.
    assert_eq!(
        conns
            .mempool
            .check_tx(&tx(&alice, 3, 1, 5_000), CheckTxType::New)
            .code,
        0
    );
    assert_eq!(
        conns.mempool.check_tx(&a1, CheckTxType::New).code,
        WRONG_SEQUENCE
    );
    assert_eq!(
        conns
            .mempool
            .check_tx(&tx(&dave, 1, 1, 5_000), CheckTxType::New)
            .code,
        0
    );

    // A proposer that ignored the recheck and put every rechecked tx in
    // height 3 would get the same verdicts from the block.
    let block3 = conns
        .consensus
        .finalize_block(finalize_request(3, &left_txs));
    let in_block: Vec<(&str, u32)> = left
        .iter()
        .zip(&block3.tx_results)
        .map(|((name, _), r)| (*name, r.code))
        .collect();
    assert_eq!(in_block, verdict, "{:?}", block3.tx_results);
}
