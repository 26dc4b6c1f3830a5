//! The harness of the multi-process inference tests: the devnet node in
//! this process (blocks produced by a thread that checks SPEC §11's
//! invariants after each), real `kiln-mlworker` processes, and what the
//! blocks said about inference (`Seen`, from `block_results`).

// A test harness, not consensus code: it waits on the wall clock for processes.
#![allow(clippy::disallowed_types, clippy::disallowed_methods, dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_app::KilnApp;
use kiln_client::rpc::RpcClient;
use kiln_framework::{Address, BASE_DENOM};
use kiln_testkit::{BlockDriver, TestKey, TxOptions};
use serde_json::{json, Value};

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Worker processes, killed when the test ends (pass or fail).
pub struct Workers(pub Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The chain: the devnet node in this process, blocks produced by a thread
/// that checks the invariants after each.
pub struct Chain {
    pub _runtime: tokio::runtime::Runtime,
    pub handle: kiln_node::DevnetHandle<KilnApp>,
    pub stop: Arc<AtomicBool>,
    pub failure: Arc<Mutex<Option<String>>>,
    pub blocks_checked: Arc<AtomicU64>,
    pub producer: Option<std::thread::JoinHandle<()>>,
}

impl Chain {
    pub fn start(
        home: &Path,
        genesis_supply: BTreeMap<String, u128>,
        block_time: Duration,
    ) -> Chain {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let data = kiln_node::home::data_dir(home).join("application.db");
        let storage =
            kiln_store::Storage::open(&data, kiln_store::StorageConfig { keep_recent: 1000 })
                .unwrap();
        let app = KilnApp::new(storage).unwrap();
        let mut cfg = kiln_node::DevnetConfig::new(home);
        cfg.rpc_listen = "127.0.0.1:0".parse().unwrap();
        cfg.manual_blocks = true;
        let handle = runtime
            .block_on(kiln_node::DevnetHandle::start(app, cfg))
            .unwrap();
        let node = handle.node().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let blocks_checked = Arc::new(AtomicU64::new(0));
        let (stop2, failure2, checked2) = (stop.clone(), failure.clone(), blocks_checked.clone());
        let producer = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = node.produce_block().and_then(|_| {
                    let validators: BTreeMap<Vec<u8>, u64> = node
                        .state()
                        .next_validators
                        .iter()
                        .map(|v| (v.pub_key.to_bytes(), v.power.value()))
                        .collect();
                    BlockDriver::check_invariants_with(
                        &node.app().latest_view(),
                        &genesis_supply,
                        &validators,
                    )
                });
                if let Err(e) = outcome {
                    *failure2.lock().unwrap() = Some(format!("at height {}: {e:#}", node.height()));
                    return;
                }
                checked2.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(block_time.saturating_sub(started.elapsed()));
            }
        });
        Chain {
            _runtime: runtime,
            handle,
            stop,
            failure,
            blocks_checked,
            producer: Some(producer),
        }
    }

    pub fn assert_healthy(&self) {
        if let Some(f) = self.failure.lock().unwrap().clone() {
            panic!("a block broke SPEC §11's invariants or failed: {f}");
        }
        if self.producer.as_ref().is_some_and(|p| p.is_finished()) {
            panic!(
                "the block producer stopped (panicked) at height {}",
                self.handle.height()
            );
        }
    }

    pub fn app(&self) -> KilnApp {
        self.handle.node().app()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
    }
}

/// What the blocks said about inference, from `block_results`.
#[derive(Default)]
pub struct Seen {
    pub next_height: u64,
    /// id → (executor, period, rate, height)
    pub finished: BTreeMap<[u8; 32], (Address, u64, u64, u64)>,
    pub started: BTreeMap<[u8; 32], (Address, u64)>,
    /// (id, validator) → score
    pub validations: BTreeMap<([u8; 32], Address), u64>,
    /// id → opener
    pub disputes: BTreeMap<[u8; 32], Address>,
    /// id → upheld
    pub resolved: BTreeMap<[u8; 32], bool>,
    /// id → how it was resolved (weights for and against, height), for
    /// failure messages
    pub resolutions: BTreeMap<[u8; 32], String>,
    /// id → the height its dispute opened at
    pub disputed_at: BTreeMap<[u8; 32], u64>,
    pub invalid_at: BTreeMap<Address, u64>,
    pub expired: BTreeMap<[u8; 32], Address>,
}

pub fn attr(event: &Value, key: &str) -> Option<String> {
    event["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"].as_str())
        .map(str::to_string)
}

pub fn id_of(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

pub fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

impl Seen {
    pub fn follow(&mut self, rpc: &RpcClient) {
        let latest =
            kiln_client::rpc::json_u64(&rpc.status().unwrap()["sync_info"]["latest_block_height"])
                .unwrap();
        while self.next_height <= latest {
            let h = self.next_height;
            let results = rpc
                .call_uri("block_results", &[("height", &h.to_string())])
                .unwrap();
            let tx_events = results["txs_results"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|tx| tx["events"].as_array().cloned().unwrap_or_default());
            let block_events = results["finalize_block_events"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for e in tx_events.chain(block_events) {
                let a = |k: &str| attr(&e, k).unwrap_or_default();
                match e["type"].as_str().unwrap_or("") {
                    "kiln.inference.v1.EventInferenceStarted" => {
                        self.started
                            .insert(id_of(&a("id")), (addr(&a("executor")), h));
                    }
                    "kiln.inference.v1.EventInferenceFinished" => {
                        self.finished.insert(
                            id_of(&a("id")),
                            (
                                addr(&a("executor")),
                                a("period").parse().unwrap(),
                                a("validation_rate_micro").parse().unwrap(),
                                h,
                            ),
                        );
                    }
                    "kiln.inference.v1.EventInferenceValidated" => {
                        self.validations.insert(
                            (id_of(&a("id")), addr(&a("validator"))),
                            a("score_micro").parse().unwrap(),
                        );
                    }
                    "kiln.inference.v1.EventDisputeOpened" => {
                        self.disputes.insert(id_of(&a("id")), addr(&a("validator")));
                        self.disputed_at.insert(id_of(&a("id")), h);
                    }
                    "kiln.inference.v1.EventDisputeResolved" => {
                        self.resolved.insert(id_of(&a("id")), a("upheld") == "true");
                        self.resolutions.insert(
                            id_of(&a("id")),
                            format!(
                                "at height {h}: invalid weight {}, valid weight {}, eligible {}",
                                a("invalid_weight"),
                                a("valid_weight"),
                                a("eligible_weight")
                            ),
                        );
                    }
                    "kiln.inference.v1.EventHostInvalid" => {
                        self.invalid_at.entry(addr(&a("host"))).or_insert(h);
                    }
                    "kiln.inference.v1.EventInferenceExpired" => {
                        self.expired.insert(id_of(&a("id")), addr(&a("executor")));
                    }
                    _ => {}
                }
            }
            self.next_height += 1;
        }
    }
}

/// A POST of a signed body to a worker; (status, JSON answer).
pub fn post(url: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, Value) {
    let mut req = ureq::post(url)
        .set("content-type", "application/json")
        .timeout(Duration::from_secs(120));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    match req.send_bytes(body) {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => (0, json!({"transport": e.to_string()})),
    }
}

pub fn balance(app: &KilnApp, a: &Address) -> u128 {
    kiln_bank::state::balance_readonly(&app.latest_view(), a, BASE_DENOM).unwrap()
}

pub fn options(app: &KilnApp, key: &TestKey, chain_id: &str) -> TxOptions {
    let (number, sequence) = kiln_bank::state::AuthExt::account(&app.latest_view(), &key.address)
        .unwrap()
        .map(|a| (a.account_number, a.sequence))
        .unwrap_or((0, 0));
    TxOptions::new(chain_id, number, sequence)
}

/// Broadcasts `tx` and waits for its block; the tx result.
pub fn deliver(rpc: &RpcClient, tx: &[u8]) -> Value {
    let sent = rpc.broadcast_tx_sync(tx).unwrap();
    assert_eq!(sent.code, 0, "CheckTx refused: {}", sent.log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(found) = rpc.tx(&sent.hash).unwrap() {
            return found["tx_result"].clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("tx {} was not included within 30 s", sent.hash);
}

/// Validates `genesis`, writes a node home for it at `home` (the
/// validators left to InitChain, which derives them from the genesis
/// hosts) and starts the chain; returns it with its RPC URL.
pub fn start_chain(
    home: &Path,
    chain_id: &str,
    moniker: &str,
    genesis: &kiln_genesis::AppGenesis,
    block_time: Duration,
) -> (Chain, String) {
    genesis.validate().unwrap();
    let mut supply: BTreeMap<String, u128> = BTreeMap::new();
    for b in &genesis.bank.balances {
        for c in &b.coins {
            *supply.entry(c.denom.clone()).or_insert(0) += c.amount;
        }
    }
    kiln_node::home::init_home(
        home,
        chain_id,
        moniker,
        serde_json::to_value(genesis).unwrap(),
    )
    .unwrap();
    let path = kiln_node::home::genesis_path(home);
    let mut file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    file["validators"] = json!([]);
    std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    let chain = Chain::start(home, supply, block_time);
    let rpc_url = format!("http://{}", chain.handle.rpc_addr());
    (chain, rpc_url)
}

/// The `kiln-mlworker` binary built next to `kilnd`.
pub fn worker_bin() -> std::path::PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_kilnd"))
        .parent()
        .unwrap()
        .join("kiln-mlworker");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build --workspace --bins` first (make test does)",
        bin.display()
    );
    bin
}

/// `kiln-mlworker run` serving `model` for `host` with the ML key `key`
/// from the test keyring under `home`: no sprint, one torch thread, its
/// output appended to `log`. Callers add flags, then spawn.
pub struct ServingWorker<'a> {
    pub node: &'a str,
    pub host: &'a Address,
    pub key: &'a str,
    pub home: &'a Path,
    pub port: u16,
    pub journal: &'a Path,
    pub log: &'a Path,
    pub model: &'a str,
}

impl ServingWorker<'_> {
    pub fn command(&self) -> std::process::Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .unwrap();
        let mut cmd = std::process::Command::new(worker_bin());
        cmd.args([
            "run",
            "--node",
            self.node,
            "--host",
            &self.host.to_bech32(),
            "--key",
            self.key,
            "--keyring-backend",
            "test",
            "--home",
            self.home.to_str().unwrap(),
            "--http",
            &format!("127.0.0.1:{}", self.port),
            "--journal",
            self.journal.to_str().unwrap(),
            "--serve-model",
            self.model,
            "--no-sprint",
            "--threads",
            "1",
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(log));
        cmd
    }

    pub fn spawn(&self) -> Child {
        self.command().spawn().unwrap()
    }
}
