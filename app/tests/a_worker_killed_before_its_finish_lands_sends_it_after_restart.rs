//! A worker that answered a paid request and was killed before any block
//! took the inference's finish sends that finish when it restarts on the
//! same journal (`<journal>/market-pending.json`), so the executor is paid
//! and the requester charged for what it received.
//!
//! The chain runs in this process; one real `kiln-mlworker run
//! --serve-model` serves the only host. Its `--node` is a small proxy in
//! front of the chain's RPC that, while told to, refuses every broadcast of
//! a tx holding a `MsgFinishInference` (as an unreachable node would): the
//! start lands, the answer reaches the buyer, the finish cannot. The worker
//! is then killed (SIGKILL), the proxy lets everything through, and the
//! worker restarts on the same journal. Checked: the finish was journaled
//! before the buyer had the answer, no block took it while the proxy
//! refused it, and after the restart the record settles as finished, the
//! buyer charged exactly what it paid, the journal emptied.

// A test, not consensus code: it waits on the wall clock for processes.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kiln_client::rpc::RpcClient;
use kiln_framework::{Coin, MsgKind, BASE_DENOM};
use kiln_testkit::TestKey;
use serde_json::{json, Value};

mod worker_procs;
use worker_procs::*;

const CHAIN: &str = "kiln-finish-after-restart";
const MODEL: &str = "smollm2-135m";
const BLOCK_TIME: Duration = Duration::from_millis(200);

/// The proxy's switch and what it did.
#[derive(Default)]
struct ProxyState {
    refuse_finishes: AtomicBool,
    refused: AtomicU64,
}

/// Serves HTTP/1.1 on a free port and forwards every request to
/// `upstream`, except `broadcast_tx_*` calls whose tx holds a
/// `MsgFinishInference` while `refuse_finishes` is set: those get a 503.
fn start_proxy(upstream: String, state: Arc<ProxyState>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (upstream, state) = (upstream.clone(), state.clone());
            std::thread::spawn(move || {
                let _ = serve_connection(stream, &upstream, &state);
            });
        }
    });
    url
}

fn holds_a_finish(body: &[u8]) -> bool {
    let Ok(call) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let is_broadcast = call["method"]
        .as_str()
        .is_some_and(|m| m.starts_with("broadcast_tx"));
    let tx = call["params"]["tx"]
        .as_str()
        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
    let needle = kiln_inference::msgs::FinishInference::TYPE_URL.as_bytes();
    is_broadcast && tx.is_some_and(|tx| tx.windows(needle.len()).any(|w| w == needle))
}

fn serve_connection(stream: TcpStream, upstream: &str, state: &ProxyState) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(()); // the client closed its kept-alive connection
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("GET").to_string(),
            parts.next().unwrap_or("/").to_string(),
        );
        let mut content_length = 0usize;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body)?;
        let (status, answer) =
            if state.refuse_finishes.load(Ordering::SeqCst) && holds_a_finish(&body) {
                state.refused.fetch_add(1, Ordering::SeqCst);
                (503, b"{\"error\":\"refused by the test proxy\"}".to_vec())
            } else {
                let request = ureq::request(&method, &format!("{upstream}{path}"))
                    .set("Content-Type", "application/json")
                    .timeout(Duration::from_secs(30));
                let response = if method == "GET" {
                    request.call()
                } else {
                    request.send_bytes(&body)
                };
                match response {
                    Ok(r) | Err(ureq::Error::Status(_, r)) => {
                        let status = r.status();
                        let mut bytes = Vec::new();
                        r.into_reader().read_to_end(&mut bytes)?;
                        (status, bytes)
                    }
                    Err(e) => (502, format!("{{\"error\":\"{e}\"}}").into_bytes()),
                }
            };
        write!(
            writer,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        )?;
        writer.write_all(&answer)?;
        writer.flush()?;
    }
}

fn spawn_worker(home: &Path, node: &str, host: &TestKey, port: u16, run: u32) -> Child {
    ServingWorker {
        node,
        host: &host.address,
        key: "host-ml",
        home,
        port,
        journal: &home.join("journal"),
        log: &home.join(format!("worker-run{run}.log")),
        model: MODEL,
    }
    .spawn()
}

fn log_tail(home: &Path, run: u32) -> String {
    let text =
        std::fs::read_to_string(home.join(format!("worker-run{run}.log"))).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(25).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn wait_until<T>(
    what: &str,
    seconds: u64,
    chain: &Chain,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let by = Instant::now() + Duration::from_secs(seconds);
    loop {
        chain.assert_healthy();
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < by,
            "{what} within {seconds} s\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_worker_killed_before_its_finish_lands_sends_it_after_restart() {
    worker_bin(); // built, or a clear failure before the chain starts
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_path_buf();
    let host = TestKey::from_label("finish-after-restart-host");
    let buyer = TestKey::from_label("finish-after-restart-buyer");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");

    let mut genesis = kiln_genesis::AppGenesis::with_devnet_params();
    // No settle during the test: the genesis weight is the serving set.
    genesis.epochs.params.sprint_blocks = 1_000_000;
    genesis.epochs.params.epoch_length = 2_000_000;
    // Long enough for a restart and a model load before the start expires.
    genesis.inference.params.inference_timeout_blocks = 1_500;
    genesis.inference.params.record_retention_blocks = 100_000;
    genesis.add_balance(
        buyer.address,
        vec![Coin::new(BASE_DENOM, 1_000_000_000_000)],
    );
    let mnemonic = kiln_client::keyring::generate_mnemonic();
    let ml = kiln_client::write_test_key(&home, "host-ml", &mnemonic).unwrap();
    let ml = addr(&ml.address);
    genesis.add_balance(host.address, vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
    genesis.add_balance(ml, vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
    genesis.add_ml_ops_grants(host.address, ml);
    let consensus = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    genesis.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: host.address,
        worker_url: url.clone(),
        consensus_pubkey: hex::encode(consensus.verifying_key().as_bytes()),
        models: vec![MODEL.into()],
        hardware: "test cpu".into(),
        weight: 100,
    });
    let mut model = kiln_genesis::devnet_model();
    model.price_floor_pkiln = 1_000_000; // 1 ukiln per token
    genesis.inference.models = vec![model];
    let (chain, rpc_url) = start_chain(&home, CHAIN, "finish-after-restart", &genesis, BLOCK_TIME);
    let rpc = RpcClient::new(&rpc_url);
    let proxy = Arc::new(ProxyState::default());
    let node = start_proxy(rpc_url.clone(), proxy.clone());

    let mut first = Workers(vec![spawn_worker(&home, &node, &host, port, 1)]);
    wait_until(
        "the worker serves the model",
        600,
        &chain,
        || ureq::get(&format!("{url}/v1/models")).call().ok(),
        || log_tail(&home, 1),
    );

    // A paid request while the proxy refuses finishes: the buyer is
    // answered, the start lands (the record is open), the finish does not.
    proxy.refuse_finishes.store(true, Ordering::SeqCst);
    let app = chain.app();
    let buyer_before = balance(&app, &buyer.address);
    let signed = kiln_client::inference::sign_body(
        &buyer.signing,
        CHAIN,
        &host.address,
        json!({"model": MODEL, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}),
        8,
    )
    .unwrap();
    let id_hex = hex::encode(signed.id);
    let (code, answer) = post(
        &format!("{url}/v1/completions"),
        &signed.body,
        &signed.headers,
    );
    assert_eq!(code, 200, "{answer}\n{}", log_tail(&home, 1));
    let journal = home.join("journal").join("market-pending.json");
    let kind = format!("inference-finish-{}", &id_hex[..8]);
    let journaled = std::fs::read_to_string(&journal).unwrap_or_default();
    assert!(
        journaled.contains(&kind),
        "the finish is journaled before the buyer has its answer: {journaled}"
    );
    wait_until(
        "the start lands",
        60,
        &chain,
        || {
            kiln_client::query::inference(&rpc, &id_hex, 0)
                .ok()
                .flatten()
        },
        || log_tail(&home, 1),
    );
    wait_until(
        "the worker tries to send the finish (and the proxy refuses it)",
        60,
        &chain,
        || (proxy.refused.load(Ordering::SeqCst) > 0).then_some(()),
        || log_tail(&home, 1),
    );
    let height = chain.handle.height();
    wait_until(
        "a few more blocks",
        30,
        &chain,
        || (chain.handle.height() >= height + 5).then_some(()),
        String::new,
    );
    let record = kiln_client::query::inference(&rpc, &id_hex, 0)
        .unwrap()
        .unwrap();
    assert_eq!(
        record["status"], "open",
        "no block took the finish: {record}"
    );

    // Killed (SIGKILL: no chance to flush anything), then restarted on the
    // same journal with a node that takes everything.
    for child in &mut first.0 {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    proxy.refuse_finishes.store(false, Ordering::SeqCst);
    let _second = Workers(vec![spawn_worker(&home, &node, &host, port, 2)]);
    let finished = wait_until(
        "the restarted worker's finish settles the inference",
        300,
        &chain,
        || {
            kiln_client::query::inference(&rpc, &id_hex, 0)
                .ok()
                .flatten()
                .filter(|r| r["status"] == "finished")
        },
        || log_tail(&home, 2),
    );
    let paid: u128 = finished["paid"].as_str().unwrap().parse().unwrap();
    assert!(paid > 0, "{finished}");
    assert_eq!(
        buyer_before - balance(&app, &buyer.address),
        paid,
        "the buyer is charged exactly what the record says it paid: {finished}"
    );
    assert!(
        std::fs::read_to_string(home.join("worker-run2.log"))
            .unwrap_or_default()
            .contains("sending again the inference messages no block took before the last stop"),
        "{}",
        log_tail(&home, 2)
    );
    wait_until(
        "the journal strikes the finish off",
        60,
        &chain,
        || {
            let text = std::fs::read_to_string(&journal).unwrap_or_default();
            (!text.contains(&kind)).then_some(())
        },
        || std::fs::read_to_string(&journal).unwrap_or_default(),
    );
}
