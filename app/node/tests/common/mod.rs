//! Shared test fixtures: a toy kv Application, a tiny HTTP client, setup.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kiln_node::{DevnetConfig, DevnetHandle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::*;
use tendermint_proto::v0_38::crypto::{public_key, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
pub struct KvState {
    /// Committed store.
    pub committed: BTreeMap<String, String>,
    pub height: i64,
    pub app_hash: Vec<u8>,
    /// Working state of the block being finalized.
    pub pending: Option<(BTreeMap<String, String>, i64, Vec<u8>)>,
    /// Committed history for simulated crashes: height -> (store, app hash).
    pub history: BTreeMap<i64, (BTreeMap<String, String>, Vec<u8>)>,
    /// Keys whose txs CheckTx (incl. Recheck) now rejects.
    pub invalid_keys: BTreeSet<String>,
    pub init_chain_calls: u32,
    pub init_chain_request: Option<RequestInitChain>,
    pub finalize_calls: u32,
    pub recheck_calls: u32,
    /// Like Cosmos SDK's `min-retain-blocks`: Commit at height H returns
    /// `retain_height = H - n + 1` (0 = keep every block).
    pub min_retain_blocks: i64,
}

/// Txs are `key=value`. Special keys: `bad*` fails CheckTx, `fail*` fails in
/// FinalizeBlock (code 5), `poison*` makes ProcessProposal reject the block,
/// `val` = `<base64 ed25519 pubkey>!<power>` is a validator update.
#[derive(Clone, Default)]
pub struct KvApp {
    pub s: Arc<Mutex<KvState>>,
}

pub fn app_hash_of(m: &BTreeMap<String, String>) -> Vec<u8> {
    let mut h = Sha256::new();
    for (k, v) in m {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize().to_vec()
}

fn parse(tx: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(tx).ok()?;
    let (k, v) = s.split_once('=')?;
    if k.is_empty() {
        return None;
    }
    Some((k.to_string(), v.to_string()))
}

fn attr(k: &str, v: &str) -> EventAttribute {
    EventAttribute {
        key: k.into(),
        value: v.into(),
        index: true,
    }
}

impl KvApp {
    /// Simulate a crash after the node stored block `h+1` but before the app
    /// committed it: roll the committed state back to height `h`.
    pub fn rollback_to(&self, h: i64) {
        let mut s = self.s.lock().unwrap();
        let (m, hash) = s.history.get(&h).cloned().unwrap_or_default();
        s.committed = m;
        s.app_hash = hash;
        s.height = h;
        s.pending = None;
        let keys: Vec<i64> = s.history.keys().filter(|k| **k > h).cloned().collect();
        for k in keys {
            s.history.remove(&k);
        }
    }
    pub fn height(&self) -> i64 {
        self.s.lock().unwrap().height
    }
    pub fn app_hash(&self) -> Vec<u8> {
        self.s.lock().unwrap().app_hash.clone()
    }
    pub fn get(&self, k: &str) -> Option<String> {
        self.s.lock().unwrap().committed.get(k).cloned()
    }
}

impl Application for KvApp {
    fn info(&self, _r: RequestInfo) -> ResponseInfo {
        let s = self.s.lock().unwrap();
        ResponseInfo {
            data: "kv".into(),
            version: "1.0.0".into(),
            app_version: 1,
            last_block_height: s.height,
            last_block_app_hash: s.app_hash.clone().into(),
        }
    }

    fn init_chain(&self, r: RequestInitChain) -> ResponseInitChain {
        let mut s = self.s.lock().unwrap();
        s.init_chain_calls += 1;
        s.init_chain_request = Some(r.clone());
        let mut m = BTreeMap::new();
        if let Ok(v) = serde_json::from_slice::<Value>(&r.app_state_bytes) {
            if let Some(obj) = v.get("kv").and_then(Value::as_object) {
                for (k, v) in obj {
                    m.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
            }
        }
        s.app_hash = app_hash_of(&m);
        s.committed = m.clone();
        let ah = s.app_hash.clone();
        s.history.insert(0, (m, ah));
        ResponseInitChain {
            app_hash: s.app_hash.clone().into(),
            ..Default::default()
        }
    }

    fn query(&self, r: RequestQuery) -> ResponseQuery {
        let s = self.s.lock().unwrap();
        let key = String::from_utf8_lossy(&r.data).to_string();
        if r.path != "/store" {
            return ResponseQuery {
                code: 2,
                log: format!("unknown path {}", r.path),
                ..Default::default()
            };
        }
        match s.committed.get(&key) {
            Some(v) => ResponseQuery {
                key: r.data.clone(),
                value: v.clone().into_bytes().into(),
                log: "exists".into(),
                height: s.height,
                ..Default::default()
            },
            None => ResponseQuery {
                key: r.data.clone(),
                log: "does not exist".into(),
                height: s.height,
                ..Default::default()
            },
        }
    }

    fn check_tx(&self, r: RequestCheckTx) -> ResponseCheckTx {
        let mut s = self.s.lock().unwrap();
        if r.r#type == CheckTxType::Recheck as i32 {
            s.recheck_calls += 1;
        }
        match parse(&r.tx) {
            None => ResponseCheckTx {
                code: 1,
                log: "tx must be key=value".into(),
                codespace: "kv".into(),
                ..Default::default()
            },
            Some((k, _)) if k.starts_with("bad") || s.invalid_keys.contains(&k) => {
                ResponseCheckTx {
                    code: 3,
                    log: format!("key {k} is not allowed"),
                    codespace: "kv".into(),
                    ..Default::default()
                }
            }
            Some(_) => ResponseCheckTx {
                code: 0,
                gas_wanted: 1,
                data: b"ok".to_vec().into(),
                ..Default::default()
            },
        }
    }

    fn process_proposal(&self, r: RequestProcessProposal) -> ResponseProcessProposal {
        let reject = r.txs.iter().any(|t| {
            parse(t)
                .map(|(k, _)| k.starts_with("poison"))
                .unwrap_or(false)
        });
        ResponseProcessProposal {
            status: if reject {
                response_process_proposal::ProposalStatus::Reject as i32
            } else {
                response_process_proposal::ProposalStatus::Accept as i32
            },
        }
    }

    fn finalize_block(&self, r: RequestFinalizeBlock) -> ResponseFinalizeBlock {
        let mut s = self.s.lock().unwrap();
        s.finalize_calls += 1;
        let mut m = s.committed.clone();
        let mut results = vec![];
        let mut vus = vec![];
        for tx in &r.txs {
            match parse(tx) {
                Some((k, _)) if k.starts_with("fail") => results.push(ExecTxResult {
                    code: 5,
                    log: "failed on purpose".into(),
                    codespace: "kv".into(),
                    gas_wanted: 1,
                    gas_used: 1,
                    ..Default::default()
                }),
                Some((k, v)) => {
                    if k == "val" {
                        if let Some((pk, p)) = v.split_once('!') {
                            let pk = B64.decode(pk).unwrap_or_default();
                            vus.push(ValidatorUpdate {
                                pub_key: Some(PublicKey {
                                    sum: Some(public_key::Sum::Ed25519(pk)),
                                }),
                                power: p.parse().unwrap_or(0),
                            });
                        }
                    }
                    m.insert(k.clone(), v.clone());
                    results.push(ExecTxResult {
                        code: 0,
                        data: k.clone().into_bytes().into(),
                        gas_wanted: 1,
                        gas_used: 1,
                        events: vec![
                            Event {
                                r#type: "message".into(),
                                attributes: vec![attr("sender", &k), attr("action", "set")],
                            },
                            Event {
                                r#type: "transfer".into(),
                                attributes: vec![attr("recipient", &v)],
                            },
                        ],
                        ..Default::default()
                    })
                }
                None => results.push(ExecTxResult {
                    code: 1,
                    log: "bad tx".into(),
                    ..Default::default()
                }),
            }
        }
        let hash = app_hash_of(&m);
        s.pending = Some((m, r.height, hash.clone()));
        ResponseFinalizeBlock {
            events: vec![Event {
                r#type: "block".into(),
                attributes: vec![attr("height", &r.height.to_string())],
            }],
            tx_results: results,
            validator_updates: vus,
            consensus_param_updates: None,
            app_hash: hash.into(),
        }
    }

    fn commit(&self) -> ResponseCommit {
        let mut s = self.s.lock().unwrap();
        if let Some((m, h, hash)) = s.pending.take() {
            s.committed = m.clone();
            s.height = h;
            s.app_hash = hash.clone();
            s.history.insert(h, (m, hash));
        }
        let n = s.min_retain_blocks;
        let retain_height = if n > 0 && s.height >= n {
            s.height - n + 1
        } else {
            0
        };
        ResponseCommit { retain_height }
    }
}

pub fn init_home(home: &Path) {
    kiln_node::home::init_home(
        home,
        "kiln-test",
        "tester",
        json!({"kv": {"genesis": "yes"}}),
    )
    .unwrap();
}

pub fn config(home: &Path) -> DevnetConfig {
    let mut c = DevnetConfig::new(home);
    c.rpc_listen = "127.0.0.1:0".parse().unwrap();
    c.manual_blocks = true;
    c.broadcast_tx_commit_timeout = Duration::from_secs(10);
    c
}

pub async fn start(app: KvApp, home: &Path) -> DevnetHandle<KvApp> {
    DevnetHandle::start(app, config(home)).await.unwrap()
}

/// Minimal HTTP/1.1 client: returns (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![];
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("http timeout")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((len, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// POST a JSON-RPC request; returns the whole response object.
pub async fn rpc_raw(addr: SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string();
    let (_, resp) = http(addr, "POST", "/", Some(&body)).await;
    serde_json::from_str(&resp).unwrap_or_else(|e| panic!("bad JSON from {method}: {e}: {resp}"))
}

/// POST a JSON-RPC request; returns `result`, panicking on an error.
pub async fn rpc(addr: SocketAddr, method: &str, params: Value) -> Value {
    let v = rpc_raw(addr, method, params).await;
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 7);
    match v.get("result") {
        Some(r) => r.clone(),
        None => panic!("{method} failed: {v}"),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Value {
    let (_, body) = http(addr, "GET", path, None).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad JSON from GET {path}: {e}: {body}"))
}

pub fn b64(b: &[u8]) -> String {
    B64.encode(b)
}
