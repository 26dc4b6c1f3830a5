//! `make bench` (scripts/bench_network.sh): the two network benchmarks of
//! issue 10, each on a 4-validator CometBFT network on loopback built by
//! `scripts/testnet.sh` (no workers), each next to its baseline measured in
//! the same run.
//!
//! 1. `throughput`: signed `MsgSend` txs, one per pre-funded account (funded
//!    at genesis through `kilnd genesis bulk-add-accounts`), sent to every
//!    node's RPC with `broadcast_tx_sync` and counted when committed (the
//!    `num_txs` of the blocks after the first send, read from node 0), ÷ the
//!    in-process pipeline rate (CheckTx + FinalizeBlock + Commit on rocksdb,
//!    as app/benches/tx_throughput.rs measures it) on this machine in the
//!    same run. Target >= 0.25. Signing happens before the clock starts.
//! 2. `join`: a chain whose accounts (100 000 by default) are created by txs
//!    of many `MsgSend`s each, over blocks; then a fresh node joins by state
//!    sync (`testnet.sh add-node statesync`), is stopped, and another fresh
//!    node joins by block sync from genesis (`add-node blocksync`). Each is
//!    timed from `testnet.sh start` (kilnd + CometBFT start) until its
//!    `/status` says `catching_up: false` at a height at or above the
//!    network's height when it started. Target: block sync / state sync >= 10.
//!    Each join also prints its phases (snapshot discovery, offer, chunks
//!    applied, restored, block sync, switch to consensus) from the joining
//!    node's CometBFT log.
//!
//! Knobs (env): `KILN_BENCH_NETWORK` (`throughput`, `join` or `all`, default
//! all), `KILN_BENCH_NETWORK_TXS` (default 20000),
//! `KILN_BENCH_NETWORK_SENDERS` (threads per node, default 2),
//! `KILN_BENCH_NETWORK_BLOCK_TIME` (CometBFT timeout_commit, default 1s),
//! `KILN_BENCH_JOIN_ACCOUNTS` (default 100000), `KILN_BENCH_JOIN_MSGS_PER_TX`
//! (default 500), `KILN_BENCH_PIPELINE_TXS` (baseline txs per block, default
//! 2000, 4 blocks).

// A benchmark is not consensus code: it reads the wall clock, sleeps while
// it polls the nodes and prints rates.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../tests/common/testnet.rs"]
mod testnet;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_app::KilnApp;
use kiln_client::rpc::RpcClient;
use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_store::{Storage, StorageConfig};
use kiln_testkit::{msg_send, sign_tx, TestKey, TxOptions, GENESIS_TIME};
use rayon::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tendermint_abci::Application;
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{RequestCheckTx, RequestFinalizeBlock, RequestInitChain};
use tendermint_proto::v0_38::types::{BlockParams, ConsensusParams};
use testnet::Testnet;

/// `scripts/testnet.sh`'s chain id.
const CHAIN_ID: &str = "kiln-testnet";
const VALIDATORS: u16 = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn block_time() -> &'static str {
    let text = std::env::var("KILN_BENCH_NETWORK_BLOCK_TIME").unwrap_or_else(|_| "1s".into());
    Box::leak(text.into_boxed_str())
}

fn main() {
    // `cargo bench` passes `--bench`; parts are chosen by the environment.
    let part = std::env::var("KILN_BENCH_NETWORK").unwrap_or_else(|_| "all".into());
    if testnet::cometbft().is_none() {
        eprintln!("network bench: no CometBFT binary (.bin/cometbft or KILN_COMETBFT): run scripts/setup.sh");
        std::process::exit(1);
    }
    println!("kiln network benchmarks (4 validators under CometBFT on loopback)");
    println!(
        "  machine: {} logical CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  binaries: {}",
        Path::new(env!("CARGO_BIN_EXE_kilnd"))
            .parent()
            .unwrap()
            .display()
    );
    let mut results = Vec::new();
    if part == "all" || part == "throughput" {
        results.extend(throughput());
    }
    if part == "all" || part == "join" {
        results.extend(join());
    }
    println!();
    for line in results {
        println!("{line}");
    }
}

// ---- helpers ------------------------------------------------------------

/// A genesis-accounts file for `KILN_TESTNET_GENESIS_ACCOUNTS`.
fn write_accounts_file(path: &Path, addresses: &[Address], coins: &str) {
    let list: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"address": a.to_bech32(), "coins": coins}))
        .collect();
    std::fs::write(path, serde_json::to_vec(&list).unwrap()).unwrap();
}

fn testnet_with_accounts(accounts_file: &Path, snapshot_interval: u64) -> Testnet {
    let t = Instant::now();
    let net = Testnet::up_with_env(
        VALIDATORS,
        2,
        false,
        block_time(),
        vec![
            (
                "KILN_TESTNET_GENESIS_ACCOUNTS".into(),
                accounts_file.display().to_string(),
            ),
            (
                "KILN_TESTNET_SNAPSHOT_INTERVAL".into(),
                snapshot_interval.to_string(),
            ),
        ],
    );
    println!(
        "  testnet up (ceremony, 4 validators, first blocks) in {:.1}s, block time (timeout_commit) {}",
        t.elapsed().as_secs_f64(),
        block_time()
    );
    net
}

fn rpc(net: &Testnet, node: u16) -> RpcClient {
    RpcClient::new(&net.rpc_url(node))
}

/// Account numbers of `addresses`, funded in this order at genesis right
/// after each other: InitChain numbers genesis balances in file order, so the
/// first one is read from the chain and the rest follow; the last is read too
/// to check.
fn account_numbers(client: &RpcClient, addresses: &[Address]) -> Vec<u64> {
    let number = |a: &Address| {
        kiln_client::query::account(client, &a.to_bech32(), 0)
            .expect("account query")
            .unwrap_or_else(|| panic!("{a} has no account"))
            .account_number
    };
    let first = number(&addresses[0]);
    let numbers: Vec<u64> = (0..addresses.len() as u64).map(|i| first + i).collect();
    let last = addresses.len() - 1;
    assert_eq!(
        number(&addresses[last]),
        numbers[last],
        "genesis accounts are not numbered in file order"
    );
    numbers
}

/// `num_txs` of blocks `from..=to` (node's `/blockchain`, 20 per call).
fn block_tx_counts(client: &RpcClient, from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut high = to;
    while high >= from {
        let low = high.saturating_sub(19).max(from);
        let r = client
            .call_uri(
                "blockchain",
                &[
                    ("minHeight", &low.to_string()),
                    ("maxHeight", &high.to_string()),
                ],
            )
            .expect("blockchain");
        for meta in r["block_metas"].as_array().cloned().unwrap_or_default() {
            let height = kiln_client::rpc::json_u64(&meta["header"]["height"]).unwrap_or(0);
            let txs = kiln_client::rpc::json_u64(&meta["num_txs"]).unwrap_or(0);
            out.push((height, txs));
        }
        if low == from {
            break;
        }
        high = low - 1;
    }
    out.sort();
    out
}

/// Waits until no node holds an unconfirmed tx (the grants `testnet.sh up`
/// sends must not be counted as the benchmark's), then returns node 0's height.
fn quiet_height(net: &Testnet) -> u64 {
    let start = Instant::now();
    loop {
        let pending: u64 = (0..VALIDATORS)
            .map(|node| {
                rpc(net, node)
                    .call_uri("num_unconfirmed_txs", &[])
                    .ok()
                    .and_then(|r| kiln_client::rpc::json_u64(&r["n_txs"]))
                    .unwrap_or(1)
            })
            .sum();
        if pending == 0 {
            return height(&rpc(net, 0)).expect("node0 height");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "mempools still hold {pending} txs after a minute"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn height(client: &RpcClient) -> Option<u64> {
    let st = client.status().ok()?;
    kiln_client::rpc::json_u64(&st["sync_info"]["latest_block_height"])
}

/// Sends `txs` to `client` one after another with `broadcast_tx_sync`,
/// waiting and retrying while the node's mempool is full. Returns how many
/// CheckTx refused.
fn send_all(
    client: &RpcClient,
    txs: &[Vec<u8>],
    refused_log: &std::sync::Mutex<Vec<String>>,
) -> usize {
    let mut refused = 0;
    for tx in txs {
        match broadcast_waiting_for_room(client, tx) {
            Ok(r) if r.code == 0 => {}
            Ok(r) => {
                refused += 1;
                let mut log = refused_log.lock().unwrap();
                if log.len() < 3 {
                    log.push(format!("code {}: {}", r.code, r.log));
                }
            }
            Err(text) if text.contains("already exists in cache") => {}
            Err(text) => panic!("broadcast_tx_sync to {}: {text}", client.url()),
        }
    }
    refused
}

/// `broadcast_tx_sync`, retried while the node's mempool is full; CheckTx's
/// answer, or the RPC error's text.
fn broadcast_waiting_for_room(
    client: &RpcClient,
    tx: &[u8],
) -> Result<kiln_client::rpc::BroadcastResponse, String> {
    loop {
        match client.broadcast_tx_sync(tx) {
            Ok(r) => return Ok(r),
            Err(e) => {
                let text = format!("{e:#}");
                if !text.contains("mempool is full") {
                    return Err(text);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Sends `txs` spread over every node's RPC (`senders` threads per node,
/// each with its own share). Returns the CheckTx refusals.
fn send_to_every_node(net: &Testnet, txs: &[Vec<u8>], senders: usize) -> usize {
    let refused_log = std::sync::Mutex::new(Vec::new());
    let lanes = VALIDATORS as usize * senders;
    let refused = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for lane in 0..lanes {
            let client = rpc(net, (lane % VALIDATORS as usize) as u16);
            let share: Vec<Vec<u8>> = txs.iter().skip(lane).step_by(lanes).cloned().collect();
            let (refused, refused_log) = (&refused, &refused_log);
            s.spawn(move || {
                refused.fetch_add(send_all(&client, &share, refused_log), Ordering::Relaxed);
            });
        }
    });
    for line in refused_log.into_inner().unwrap() {
        println!("  CheckTx refused: {line}");
    }
    refused.into_inner()
}

/// Waits until the node's app (ABCI Info, through `/abci_info`) has
/// committed `height`.
fn wait_app_height(client: &RpcClient, height: u64, within: Duration) {
    let start = Instant::now();
    loop {
        let app_height = client
            .call_uri("abci_info", &[])
            .ok()
            .and_then(|r| kiln_client::rpc::json_u64(&r["response"]["last_block_height"]));
        if app_height.is_some_and(|h| h >= height) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "the app of {} did not commit {height} (at {app_height:?})",
            client.url()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls node 0 until blocks after `after` hold all of `txs`; returns the
/// per-block counts of those blocks (up to the one that completed the count).
/// CometBFT v0.38 may drop a tx whose CheckTx passed (the mempool filled
/// meanwhile) although `broadcast_tx_sync` answered code 0: when five blocks
/// in a row add nothing while node 0's mempool is empty, every tx is sent to
/// node 0 again (committed ones are refused by CheckTx, dropped ones are
/// admitted) and the number re-admitted is printed.
fn wait_committed(
    client: &RpcClient,
    after: u64,
    txs: &[Vec<u8>],
    within: Duration,
) -> Vec<(u64, u64)> {
    let expected = txs.len();
    let start = Instant::now();
    let mut counts: Vec<(u64, u64)> = Vec::new();
    let mut seen = after;
    let mut idle_blocks = 0u64;
    loop {
        if let Some(h) = height(client) {
            if h > seen {
                let new = block_tx_counts(client, seen + 1, h);
                let added: u64 = new.iter().map(|(_, n)| n).sum();
                idle_blocks = if added == 0 {
                    idle_blocks + (h - seen)
                } else {
                    0
                };
                counts.extend(new);
                seen = h;
                let total: u64 = counts.iter().map(|(_, n)| n).sum();
                if total as usize >= expected {
                    // CometBFT stores a decided block before the app has run
                    // it: wait for the app (Info) to have committed it too.
                    wait_app_height(client, h, within.saturating_sub(start.elapsed()));
                    return counts;
                }
                if idle_blocks >= 5 && mempool_size(client) == Some(0) {
                    let readmitted = resend_dropped(client, txs);
                    println!(
                        "  {} of {expected} txs committed and the mempool empty: re-sent; {readmitted} were dropped after CheckTx passed (CometBFT v0.38 mempool race) and are admitted again",
                        total
                    );
                    idle_blocks = 0;
                }
            }
        }
        assert!(
            start.elapsed() < within,
            "only {} of {expected} txs committed after {within:?}",
            counts.iter().map(|(_, n)| n).sum::<u64>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Txs in the node's mempool.
fn mempool_size(client: &RpcClient) -> Option<u64> {
    let r = client.call_uri("num_unconfirmed_txs", &[]).ok()?;
    kiln_client::rpc::json_u64(&r["total"])
}

/// Sends every tx to `client` again from two threads; returns how many
/// CheckTx admitted (those the network had dropped).
fn resend_dropped(client: &RpcClient, txs: &[Vec<u8>]) -> usize {
    let admitted = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for lane in 0..2 {
            let admitted = &admitted;
            s.spawn(move || {
                for tx in txs.iter().skip(lane).step_by(2) {
                    if broadcast_waiting_for_room(client, tx).is_ok_and(|r| r.code == 0) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    admitted.into_inner()
}

/// CometBFT v0.38's `DefaultMempoolConfig` for keys kilnd's config.toml
/// leaves out.
const COMETBFT_MEMPOOL_DEFAULTS: &[(&str, &str)] = &[
    ("type", "\"flood\""),
    ("size", "5000"),
    ("max_txs_bytes", "1073741824"),
    ("max_tx_bytes", "1048576"),
    ("cache_size", "10000"),
    ("recheck", "true"),
    ("broadcast", "true"),
];

/// `[mempool]` settings of a node's config.toml, as `key=value` pairs.
fn mempool_settings(home: &Path) -> String {
    let text = std::fs::read_to_string(home.join("config/config.toml")).unwrap_or_default();
    let config: toml::Value =
        toml::from_str(&text).unwrap_or(toml::Value::Table(Default::default()));
    let Some(mempool) = config.get("mempool").and_then(|m| m.as_table()) else {
        return "(no [mempool] section)".into();
    };
    [
        "type",
        "size",
        "max_txs_bytes",
        "max_tx_bytes",
        "cache_size",
        "recheck",
        "broadcast",
    ]
    .iter()
    .map(|k| match mempool.get(*k) {
        Some(v) => format!("{k}={v}"),
        None => format!(
            "{k}={} (default)",
            COMETBFT_MEMPOOL_DEFAULTS
                .iter()
                .find(|(d, _)| d == k)
                .map_or("?", |(_, v)| v)
        ),
    })
    .collect::<Vec<_>>()
    .join(" ")
}

// ---- 1. throughput ------------------------------------------------------

/// The in-process pipeline rate (tx/s): for every block, CheckTx for each
/// tx one at a time, then FinalizeBlock and Commit, on rocksdb in a temp
/// dir, txs from distinct funded accounts signed beforehand.
fn pipeline_rate(block_txs: usize, blocks: usize) -> f64 {
    let keys: Vec<TestKey> = (0..block_txs * blocks)
        .into_par_iter()
        .map(|i| TestKey::from_label(&format!("pipeline-baseline-{i}")))
        .collect();
    let mut genesis = kiln_genesis::AppGenesis::default();
    genesis
        .add_balances(
            keys.iter()
                .map(|k| kiln_bank::GenesisBalance {
                    address: k.address,
                    coins: vec![Coin::new(BASE_DENOM, 1_000_000_000_000)],
                })
                .collect(),
        )
        .unwrap();
    kiln_testkit::add_genesis_validator(&mut genesis);
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path(), StorageConfig { keep_recent: 0 }).unwrap();
    let app = KilnApp::new(storage).unwrap();
    app.init_chain(RequestInitChain {
        time: Some(Timestamp {
            seconds: GENESIS_TIME,
            nanos: 0,
        }),
        chain_id: CHAIN_ID.to_string(),
        consensus_params: Some(ConsensusParams {
            block: Some(BlockParams {
                max_bytes: 64 << 20,
                max_gas: -1,
            }),
            ..Default::default()
        }),
        validators: Vec::new(),
        app_state_bytes: serde_json::to_vec(&genesis).unwrap().into(),
        initial_height: 1,
    });
    let view = app.latest_view();
    let numbers: Vec<u64> = keys
        .iter()
        .map(|k| {
            kiln_bank::state::AuthExt::account(&view, &k.address)
                .unwrap()
                .unwrap()
                .account_number
        })
        .collect();
    drop(view);
    let txs: Vec<Vec<u8>> = (0..keys.len())
        .into_par_iter()
        .map(|i| {
            let to = &keys[(i + 1) % keys.len()].address;
            let opts = TxOptions::new(CHAIN_ID, numbers[i], 0);
            sign_tx(&keys[i], vec![msg_send(&keys[i].address, to, 1)], &opts)
        })
        .collect();
    let mut elapsed = Duration::ZERO;
    let mut committed = 0usize;
    for (b, block) in txs.chunks(block_txs).enumerate() {
        let height = b as i64 + 1;
        let t = Instant::now();
        for tx in block {
            let r = app.check_tx(RequestCheckTx {
                tx: tx.clone().into(),
                r#type: 0,
            });
            assert_eq!(r.code, 0, "baseline CheckTx: {}", r.log);
        }
        let response = app.finalize_block(RequestFinalizeBlock {
            txs: block.iter().cloned().map(Into::into).collect(),
            height,
            time: Some(Timestamp {
                seconds: GENESIS_TIME + height,
                nanos: 0,
            }),
            ..Default::default()
        });
        app.commit();
        elapsed += t.elapsed();
        assert!(response.tx_results.iter().all(|r| r.code == 0));
        committed += response.tx_results.len();
    }
    committed as f64 / elapsed.as_secs_f64()
}

fn throughput() -> Vec<String> {
    let n = env_usize("KILN_BENCH_NETWORK_TXS", 20_000).max(VALIDATORS as usize);
    let senders = env_usize("KILN_BENCH_NETWORK_SENDERS", 2).max(1);
    let baseline_block = env_usize("KILN_BENCH_PIPELINE_TXS", 2000).max(1);
    println!();
    println!("== 1. MsgSend throughput through the network vs the in-process pipeline");

    let t = Instant::now();
    let pipeline = pipeline_rate(baseline_block, 4);
    println!(
        "  baseline: in-process pipeline (CheckTx + FinalizeBlock + Commit, rocksdb), 4 blocks of {baseline_block}: {pipeline:.0} tx/s (setup and run {:.1}s)",
        t.elapsed().as_secs_f64()
    );

    let keys: Vec<TestKey> = (0..n)
        .into_par_iter()
        .map(|i| TestKey::from_label(&format!("network-bench-{i}")))
        .collect();
    let addresses: Vec<Address> = keys.iter().map(|k| k.address).collect();
    let work = tempfile::tempdir().unwrap();
    let accounts_file = work.path().join("accounts.json");
    write_accounts_file(&accounts_file, &addresses, "1000000000ukiln");
    let net = testnet_with_accounts(&accounts_file, 0);
    let node0 = rpc(&net, 0);
    let numbers = account_numbers(&node0, &addresses);

    let t = Instant::now();
    let txs: Vec<Vec<u8>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let to = &addresses[(i + 1) % n];
            let opts = TxOptions::new(CHAIN_ID, numbers[i], 0);
            sign_tx(&keys[i], vec![msg_send(&addresses[i], to, 1)], &opts)
        })
        .collect();
    println!(
        "  signed {n} MsgSend txs ({} bytes each) from {n} genesis accounts in {:.1}s (not timed)",
        txs[0].len(),
        t.elapsed().as_secs_f64()
    );
    let mempool = mempool_settings(&net.home(0));
    println!("  mempool (config.toml, every node): {mempool}");

    let start_height = quiet_height(&net);
    let start = Instant::now();
    let sent_at = Arc::new(std::sync::Mutex::new(None));
    let (counts, refused) = std::thread::scope(|s| {
        let sender = {
            let (net, txs, sent_at) = (&net, &txs, sent_at.clone());
            s.spawn(move || {
                let refused = send_to_every_node(net, txs, senders);
                *sent_at.lock().unwrap() = Some(start.elapsed());
                refused
            })
        };
        let counts = wait_committed(&node0, start_height, &txs, Duration::from_secs(600));
        (counts, sender.join().unwrap())
    });
    let elapsed = start.elapsed();
    let sent = sent_at.lock().unwrap().unwrap_or(elapsed);
    assert_eq!(refused, 0, "CheckTx refused {refused} valid txs");
    let committed: u64 = counts.iter().map(|(_, c)| c).sum();
    let used: Vec<&(u64, u64)> = counts.iter().filter(|(_, c)| *c > 0).collect();
    let network = committed as f64 / elapsed.as_secs_f64();
    let last_height = counts.last().map_or(start_height, |(h, _)| *h);

    // The same state everywhere: node 3's app hash after the last block.
    net.wait_height(0, last_height + 1, Duration::from_secs(60));
    net.wait_height(VALIDATORS - 1, last_height + 1, Duration::from_secs(60));
    let hash0 = net.app_hash_in_block(0, last_height + 1);
    let hash3 = net.app_hash_in_block(VALIDATORS - 1, last_height + 1);
    assert_eq!(hash0, hash3, "node0 and node3 differ after the benchmark");

    println!(
        "  network: {committed} txs sent to the 4 nodes' RPC ({senders} sender threads per node, broadcast_tx_sync) and committed in {:.1}s: {network:.0} tx/s",
        elapsed.as_secs_f64()
    );
    println!(
        "    all sent after {:.1}s; {} blocks with txs ({}..={}), {} blocks in all since the first send; largest block {} txs, mean {:.0}",
        sent.as_secs_f64(),
        used.len(),
        used.first().map_or(0, |(h, _)| *h),
        used.last().map_or(0, |(h, _)| *h),
        counts.len(),
        used.iter().map(|(_, c)| *c).max().unwrap_or(0),
        committed as f64 / used.len().max(1) as f64
    );
    println!(
        "    mean block interval {:.2}s (timeout_commit {}); node0 and node3 agree on the app hash ({})",
        elapsed.as_secs_f64() / counts.len().max(1) as f64,
        block_time(),
        hash0.unwrap_or_default().chars().take(16).collect::<String>()
    );
    drop(net);
    let ratio = network / pipeline;
    vec![
        format!(
            "RESULT network_msgsend={network:.0}tx/s pipeline={pipeline:.0}tx/s block_time={} mempool: {mempool}",
            block_time()
        ),
        format!(
            "RESULT ratio network/pipeline = {ratio:.2} (target >= 0.25) {}",
            if ratio >= 0.25 { "OK" } else { "BELOW TARGET" }
        ),
    ]
}

// ---- 2. joining by state sync vs block sync -----------------------------

/// An address no key signs for: the `i`th account the chain creates.
fn created_address(i: usize) -> Address {
    let digest = Sha256::digest(format!("join-bench-account-{i}").as_bytes());
    Address::from_bytes(&digest[..20]).unwrap()
}

struct Joined {
    seconds: f64,
    target: u64,
    height: u64,
    earliest: u64,
}

/// Creates node `mode` with `testnet.sh add-node`, starts it, and times it
/// until it is caught up to the network's height at start; checks it has
/// node 0's app hash and the last created account; stops it.
fn time_join(net: &Testnet, mode: &str, probe: &Address) -> Joined {
    let out = net.script(&["add-node", mode]);
    assert!(
        out.status.success(),
        "add-node {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: u16 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("add-node prints the node's index");
    let node0 = rpc(net, 0);
    let client = rpc(net, index);
    let target = height(&node0).expect("node0 height");
    let start = Instant::now();
    net.run(&["start", &index.to_string()]);
    let (caught_up_height, earliest) = loop {
        if let Ok(st) = client.status() {
            let info = &st["sync_info"];
            let h = kiln_client::rpc::json_u64(&info["latest_block_height"]).unwrap_or(0);
            if info["catching_up"] == Value::Bool(false) && h >= target {
                let earliest =
                    kiln_client::rpc::json_u64(&info["earliest_block_height"]).unwrap_or(0);
                break (h, earliest);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(1200),
            "node{index} ({mode}) did not catch up to {target} in 20 minutes:\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let seconds = start.elapsed().as_secs_f64();
    println!("    {mode} phases: {}", phases(&net.home(index)));
    // The joined node has the network's state: the same app hash in a block
    // both have, and the last account the chain created.
    let check_height = caught_up_height.max(earliest + 1);
    net.wait_height(index, check_height, Duration::from_secs(60));
    assert_eq!(
        net.app_hash_in_block(index, check_height),
        net.app_hash_in_block(0, check_height),
        "node{index} ({mode}) disagrees with node0 at {check_height}"
    );
    let balance = kiln_client::query::balance(&client, &probe.to_bech32(), BASE_DENOM, 0)
        .expect("balance query");
    assert_eq!(
        balance.amount, "1",
        "node{index} ({mode}) lacks the created accounts"
    );
    net.run(&["stop", &index.to_string()]);
    Joined {
        seconds,
        target,
        height: caught_up_height,
        earliest,
    }
}

/// Seconds of `HH:MM:SS.mmm` in a CometBFT log line (`I[YYYY-MM-DD|HH:MM:SS.mmm] …`).
fn comet_log_seconds(line: &str) -> Option<f64> {
    let time = line.split_once('|')?.1.split_once(']')?.0;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// When the joining node's CometBFT reached each phase of its join, in
/// seconds after its first log line (from its `cometbft.log`).
fn phases(home: &Path) -> String {
    let log = std::fs::read_to_string(home.join("cometbft.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let Some(origin) = lines.iter().find_map(|l| comet_log_seconds(l)) else {
        return "no cometbft.log".into();
    };
    let first = |marker: &str| {
        lines
            .iter()
            .find(|l| l.contains(marker))
            .and_then(|l| comet_log_seconds(l))
    };
    let last = |marker: &str| {
        lines
            .iter()
            .rev()
            .find(|l| l.contains(marker))
            .and_then(|l| comet_log_seconds(l))
    };
    [
        ("discovering", first("Discovering snapshots")),
        ("offered", first("Offering snapshot to ABCI app")),
        ("first chunk applied", first("Applied snapshot chunk")),
        ("last chunk applied", last("Applied snapshot chunk")),
        ("snapshot restored", first("Snapshot restored")),
        ("block sync started", first("Starting BlockPool service")),
        ("switch to consensus", first("Time to switch to consensus")),
    ]
    .iter()
    .filter_map(|(name, t)| Some(format!("{name} {:.1}s", t.as_ref()? - origin)))
    .collect::<Vec<_>>()
    .join(", ")
}

fn join() -> Vec<String> {
    let accounts = env_usize("KILN_BENCH_JOIN_ACCOUNTS", 100_000).max(1);
    let per_tx = env_usize("KILN_BENCH_JOIN_MSGS_PER_TX", 500).clamp(1, accounts);
    let funders = accounts.div_ceil(per_tx);
    let snapshot_interval = 10u64;
    println!();
    println!("== 2. joining a state of {accounts} accounts: state sync vs block sync");

    let keys: Vec<TestKey> = (0..funders)
        .into_par_iter()
        .map(|i| TestKey::from_label(&format!("join-bench-funder-{i}")))
        .collect();
    let addresses: Vec<Address> = keys.iter().map(|k| k.address).collect();
    let work = tempfile::tempdir().unwrap();
    let accounts_file = work.path().join("funders.json");
    write_accounts_file(&accounts_file, &addresses, "1000000000000ukiln");
    let net = testnet_with_accounts(&accounts_file, snapshot_interval);
    let node0 = rpc(&net, 0);
    let numbers = account_numbers(&node0, &addresses);

    // Funder f creates accounts f*per_tx .. in one tx of per_tx MsgSends.
    let gas_limit = 50_000_000u64.min(100_000 * per_tx as u64 + 200_000);
    let txs: Vec<Vec<u8>> = (0..funders)
        .into_par_iter()
        .map(|f| {
            let msgs = (f * per_tx..((f + 1) * per_tx).min(accounts))
                .map(|i| msg_send(&addresses[f], &created_address(i), 1))
                .collect();
            let mut opts = TxOptions::new(CHAIN_ID, numbers[f], 0);
            opts.gas_limit = gas_limit;
            opts.fee = u128::from(gas_limit).div_ceil(40);
            sign_tx(&keys[f], msgs, &opts)
        })
        .collect();
    let start_height = quiet_height(&net);
    let t = Instant::now();
    let refused = send_to_every_node(&net, &txs, 1);
    assert_eq!(refused, 0, "CheckTx refused {refused} account-creating txs");
    let counts = wait_committed(&node0, start_height, &txs, Duration::from_secs(900));
    let used: Vec<(u64, u64)> = counts.iter().copied().filter(|(_, c)| *c > 0).collect();
    let last_tx_height = used.last().map_or(start_height, |(h, _)| *h);
    // The txs succeeded (a failed tx is in a block too, and the nodes keep
    // no ABCI results): each tx's first created account has its coin —
    // every tx's up to 1 000 txs, else 1 000 spread evenly and the last.
    let step = funders.div_ceil(1_000).max(1);
    let checked: Vec<usize> = (0..funders)
        .step_by(step)
        .chain(std::iter::once(funders - 1))
        .collect();
    for f in checked {
        let address = created_address(f * per_tx).to_bech32();
        let coin =
            kiln_client::query::balance(&node0, &address, BASE_DENOM, 0).expect("balance query");
        if coin.amount != "1" {
            let ours: std::collections::BTreeSet<Vec<u8>> = txs.iter().cloned().collect();
            let mut listing = Vec::new();
            for (h, n) in &used {
                let block = node0
                    .call_uri("block", &[("height", &h.to_string())])
                    .unwrap();
                let in_block = block["block"]["data"]["txs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let mine = in_block
                    .iter()
                    .filter(|t| {
                        use base64::Engine;
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(t.as_str().unwrap_or_default())
                            .unwrap_or_default();
                        ours.contains(&bytes)
                    })
                    .count();
                listing.push(format!("h{h}: {n} txs, {mine} ours"));
            }
            panic!(
                "the tx of funder {f} did not create {address} (balance {}); blocks: {listing:?}",
                coin.amount,
            );
        }
    }
    println!(
        "  built: {accounts} accounts created by {funders} txs of {per_tx} MsgSends in {} blocks ({}..={}) in {:.1}s",
        used.len(),
        used.first().map_or(0, |(h, _)| *h),
        last_tx_height,
        t.elapsed().as_secs_f64()
    );
    // A snapshot holding every created account: one taken after the last
    // of them (snapshots every `snapshot_interval` blocks), then the trust
    // height (`add-node` trusts latest - interval) past it too.
    net.wait_height(
        0,
        last_tx_height + 2 * snapshot_interval + 1,
        Duration::from_secs(300),
    );
    let probe = created_address(accounts - 1);

    let state = time_join(&net, "statesync", &probe);
    println!(
        "  state sync: caught up in {:.1}s (height {} >= target {}; restored a snapshot, first stored block {})",
        state.seconds, state.height, state.target, state.earliest
    );
    let block = time_join(&net, "blocksync", &probe);
    println!(
        "  block sync: caught up in {:.1}s (height {} >= target {}; replayed every block from {})",
        block.seconds, block.height, block.target, block.earliest
    );
    println!(
        "  both times run from `testnet.sh start` (kilnd and CometBFT start-up, peer dialing) to /status catching_up=false; state sync includes CometBFT's 5 s snapshot discovery (its minimum), the light-client checks, chunk fetch and restore, then block sync of the blocks after the snapshot"
    );
    drop(net);
    let ratio = block.seconds / state.seconds;
    vec![
        format!(
            "RESULT join_{accounts}_accounts state_sync={:.1}s block_sync={:.1}s ({} blocks replayed)",
            state.seconds, block.seconds, block.height
        ),
        format!(
            "RESULT ratio block_sync/state_sync = {ratio:.1} (target >= 10) {}",
            if ratio >= 10.0 { "OK" } else { "BELOW TARGET" }
        ),
    ]
}
