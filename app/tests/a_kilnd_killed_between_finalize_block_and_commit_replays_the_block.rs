//! CometBFT's handshake replay after the app dies between FinalizeBlock and
//! Commit. `kilnd start` runs as a child process on a home made by the
//! ceremony commands; a client with CometBFT's four connections drives
//! InitChain and blocks, `kill -9`s kilnd after FinalizeBlock(H) but before
//! Commit, and restarts it on the same home. Info must then report H-1 and
//! its app hash (what the handshake compares with CometBFT's stored state),
//! and replaying FinalizeBlock(H) + Commit must give exactly the answer H got
//! before the crash — and the answers of a node that never crashed. With
//! H = 1 the genesis itself was not yet persisted: Info says 0, and the
//! handshake replays InitChain first.

// A test, not consensus code: it waits on the wall clock for a child process.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "common/abci_wire.rs"]
mod abci_wire;
#[path = "common/testnet.rs"]
mod testnet;
use testnet::kilnd;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abci_wire::{finalize_request, CometConnections};
use base64::Engine;
use cosmos_sdk_proto::cosmos::auth::v1beta1::{
    BaseAccount, QueryAccountRequest, QueryAccountResponse,
};
use kiln_testkit::{msg_send, sign_tx, TestKey, TxOptions};
use prost::Message;
use tendermint_proto::v0_38::abci::{
    RequestInitChain, ResponseFinalizeBlock, ResponseInitChain, ValidatorUpdate,
};
use tendermint_proto::v0_38::crypto::{public_key, PublicKey};
use tendermint_proto::v0_38::types::{BlockParams, ConsensusParams};

const CHAIN: &str = "kiln-replay";
/// Heights every scenario drives to.
const LAST_HEIGHT: i64 = 5;

/// A home built as an operator would: `kilnd init`, a funded account, and
/// the node made a genesis host by `gentx` + `collect-gentxs` (as in
/// a_kilnd_home_runs_under_the_real_cometbft.rs).
fn make_home(home: &Path, funded: &TestKey) {
    kilnd(&["init", "--chain-id", CHAIN, "--moniker", "replay"], home);
    kilnd(
        &[
            "genesis",
            "add-account",
            &funded.address.to_bech32(),
            "1000000000ukiln",
        ],
        home,
    );
    testnet::add_genesis_host(home);
}

/// The InitChain CometBFT sends for the home's genesis.json.
fn init_chain_request(home: &Path) -> RequestInitChain {
    let text = std::fs::read_to_string(home.join("config/genesis.json")).unwrap();
    let genesis: serde_json::Value = serde_json::from_str(&text).unwrap();
    let number = |v: &serde_json::Value| -> i64 { v.as_str().unwrap().parse().unwrap() };
    let validators = genesis["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["pub_key"]["type"], "tendermint/PubKeyEd25519");
            let key = base64::engine::general_purpose::STANDARD
                .decode(v["pub_key"]["value"].as_str().unwrap())
                .unwrap();
            ValidatorUpdate {
                pub_key: Some(PublicKey {
                    sum: Some(public_key::Sum::Ed25519(key)),
                }),
                power: number(&v["power"]),
            }
        })
        .collect();
    let block = &genesis["consensus_params"]["block"];
    RequestInitChain {
        time: Some(abci_wire::block_time(0)),
        chain_id: genesis["chain_id"].as_str().unwrap().into(),
        consensus_params: Some(ConsensusParams {
            block: Some(BlockParams {
                max_bytes: number(&block["max_bytes"]),
                max_gas: number(&block["max_gas"]),
            }),
            ..Default::default()
        }),
        validators,
        app_state_bytes: serde_json::to_vec(&genesis["app_state"]).unwrap().into(),
        initial_height: number(&genesis["initial_height"]),
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `kilnd start` on a home; killed with SIGKILL when dropped.
struct Kilnd {
    child: Child,
    log: PathBuf,
}

impl Kilnd {
    fn start(home: &Path, abci: SocketAddr, run: u32) -> Kilnd {
        let log = home.join(format!("kilnd-{run}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kilnd"))
            .arg("start")
            .arg("--home")
            .arg(home)
            .arg("--abci")
            .arg(abci.to_string())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut kilnd = Kilnd { child, log };
        let start = Instant::now();
        while TcpStream::connect(abci).is_err() {
            if let Some(status) = kilnd.child.try_wait().unwrap() {
                panic!("kilnd exited with {status}:\n{}", kilnd.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "kilnd did not listen on {abci}:\n{}",
                kilnd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        kilnd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`, and wait until the process is gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Kilnd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The account number of `key` over the query connection.
fn account_number(conns: &mut CometConnections, key: &TestKey) -> u64 {
    let answer = conns.query.query(
        "/cosmos.auth.v1beta1.Query/Account",
        QueryAccountRequest {
            address: key.address.to_bech32(),
        }
        .encode_to_vec(),
    );
    assert_eq!(answer.code, 0, "{}", answer.log);
    let account = QueryAccountResponse::decode(answer.value.as_ref())
        .unwrap()
        .account
        .unwrap();
    BaseAccount::decode(account.value.as_slice())
        .unwrap()
        .account_number
}

/// The txs of `height`: from height 2 on, two sends of `key`'s with
/// consecutive sequences (height 1 is empty: the account number is read
/// once genesis is committed).
fn block_txs(height: i64, key: &TestKey, number: u64) -> Vec<Vec<u8>> {
    if height < 2 {
        return Vec::new();
    }
    let sink = TestKey::from_label("replay-sink").address;
    let first = u64::try_from(height - 2).unwrap() * 2;
    (first..first + 2)
        .map(|sequence| {
            sign_tx(
                key,
                vec![msg_send(&key.address, &sink, 1_000 + sequence as u128)],
                &TxOptions::new(CHAIN, number, sequence),
            )
        })
        .collect()
}

/// What a node answered: InitChain, then FinalizeBlock per height.
#[derive(Debug, PartialEq)]
struct Answers {
    init: ResponseInitChain,
    blocks: Vec<ResponseFinalizeBlock>,
}

/// Drives a node that never crashes from genesis to LAST_HEIGHT.
fn run_without_crash(home: &Path, key: &TestKey) -> Answers {
    let abci = free_addr();
    let _kilnd = Kilnd::start(home, abci, 1);
    let mut conns = CometConnections::open(abci);
    assert_eq!(conns.query.info().last_block_height, 0);
    let init = conns.consensus.init_chain(init_chain_request(home));
    let mut number = None;
    let mut blocks = Vec::new();
    for height in 1..=LAST_HEIGHT {
        let txs = number.map_or_else(Vec::new, |n| block_txs(height, key, n));
        let finalized = conns
            .consensus
            .finalize_block(finalize_request(height, &txs));
        conns.consensus.commit();
        number.get_or_insert_with(|| account_number(&mut conns, key));
        blocks.push(finalized);
    }
    Answers { init, blocks }
}

/// Drives a node to FinalizeBlock(`crash_at`), kills it before Commit,
/// restarts it, replays what the handshake would, and goes on to LAST_HEIGHT.
fn run_with_crash(home: &Path, key: &TestKey, crash_at: i64) -> Answers {
    let abci = free_addr();
    let mut kilnd = Kilnd::start(home, abci, 1);
    let mut conns = CometConnections::open(abci);
    assert_eq!(conns.query.info().last_block_height, 0);
    let init_request = init_chain_request(home);
    let init = conns.consensus.init_chain(init_request.clone());
    let mut number = None;
    let mut blocks = Vec::new();
    for height in 1..crash_at {
        let txs = number.map_or_else(Vec::new, |n| block_txs(height, key, n));
        blocks.push(
            conns
                .consensus
                .finalize_block(finalize_request(height, &txs)),
        );
        conns.consensus.commit();
        number.get_or_insert_with(|| account_number(&mut conns, key));
    }
    let crash_txs = number.map_or_else(Vec::new, |n| block_txs(crash_at, key, n));
    let before_crash = conns
        .consensus
        .finalize_block(finalize_request(crash_at, &crash_txs));
    assert!(before_crash.tx_results.iter().all(|r| r.code == 0));
    // Finalized, not committed: Info still reports the previous height.
    assert_eq!(conns.query.info().last_block_height, crash_at - 1);
    kilnd.kill();
    drop(conns);

    let kilnd = Kilnd::start(home, abci, 2);
    let mut conns = CometConnections::open(abci);
    // The handshake: CometBFT's store has block `crash_at`, its state
    // `crash_at - 1`; the app must say exactly what it committed.
    let info = conns.query.info();
    assert_eq!(info.app_version, kiln_app::app::APP_VERSION);
    assert_eq!(
        info.last_block_height,
        crash_at - 1,
        "kilnd's log:\n{}",
        kilnd.log()
    );
    if crash_at == 1 {
        // Nothing was persisted: the handshake replays InitChain.
        assert!(info.last_block_app_hash.is_empty());
        assert_eq!(conns.consensus.init_chain(init_request), init);
    } else {
        assert_eq!(
            info.last_block_app_hash,
            blocks.last().unwrap().app_hash,
            "Info's app hash is not the one height {} committed",
            crash_at - 1
        );
    }
    let replayed = conns
        .consensus
        .finalize_block(finalize_request(crash_at, &crash_txs));
    assert_eq!(
        replayed, before_crash,
        "replaying FinalizeBlock({crash_at}) answered differently than before the crash"
    );
    conns.consensus.commit();
    let info = conns.query.info();
    assert_eq!(info.last_block_height, crash_at);
    assert_eq!(info.last_block_app_hash, before_crash.app_hash);
    blocks.push(replayed);
    number.get_or_insert_with(|| account_number(&mut conns, key));
    for height in crash_at + 1..=LAST_HEIGHT {
        let txs = block_txs(height, key, number.unwrap());
        blocks.push(
            conns
                .consensus
                .finalize_block(finalize_request(height, &txs)),
        );
        conns.consensus.commit();
    }
    Answers { init, blocks }
}

/// Two identical homes (one copied before either ran), one node crashing at
/// `crash_at`, the other never: their answers are the same, height by height.
fn crash_and_compare(crash_at: i64) {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::from_label("replay-sender");
    let crashing = dir.path().join("crashing");
    make_home(&crashing, &key);
    let steady = dir.path().join("steady");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&crashing)
        .arg(&steady)
        .status()
        .unwrap();
    assert!(copied.success());

    let crashed = run_with_crash(&crashing, &key, crash_at);
    let never_crashed = run_without_crash(&steady, &key);
    assert_eq!(crashed.blocks.len(), LAST_HEIGHT as usize);
    for (i, (a, b)) in crashed.blocks.iter().zip(&never_crashed.blocks).enumerate() {
        assert_eq!(
            a.app_hash,
            b.app_hash,
            "height {}: the crashed node's app hash differs",
            i + 1
        );
    }
    assert_eq!(crashed, never_crashed);
    // The blocks did carry state changes beyond the block header.
    assert!(crashed.blocks[LAST_HEIGHT as usize - 1]
        .tx_results
        .iter()
        .all(|r| r.code == 0));
    assert_eq!(crashed.blocks[LAST_HEIGHT as usize - 1].tx_results.len(), 2);
}

#[test]
fn a_kilnd_killed_after_finalize_block_replays_it_to_the_same_app_hash() {
    crash_and_compare(3);
}

#[test]
fn a_kilnd_killed_before_its_first_commit_replays_init_chain_and_the_first_block() {
    crash_and_compare(1);
}
