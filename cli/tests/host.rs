//! `kiln tx host register|update` and the Kiln JSON queries (`epoch`, `hosts`,
//! `host`, `weights`, `reputation`, `sprint-result`) against a small mock
//! CometBFT JSON-RPC node (`tests/common`).

mod common;
use common::{kiln, mock_node, ok_json, COSMJS_12, COSMJS_24};

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use cosmrs::proto::cosmos::auth::v1beta1::{
    BaseAccount, QueryAccountRequest, QueryAccountResponse,
};
use cosmrs::proto::cosmos::base::abci::v1beta1::GasInfo;
use cosmrs::proto::cosmos::tx::v1beta1::{SimulateResponse, TxBody, TxRaw};
use kiln_hosts::msgs::{MsgRegisterHost, MsgUpdateHost};
use prost::Message;
use serde_json::{json, Value};

const CHAIN: &str = "kiln-mock";
/// Seed of the test consensus key (its public key is [`cons_key`]).
const CONS_SEED: [u8; 32] = [0x42; 32];

fn cons_key() -> [u8; 32] {
    kiln_client::host::ConsensusKeyPair::from_seed(CONS_SEED).public()
}

fn ok_text(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure, got stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(o.status.code(), Some(1));
    String::from_utf8_lossy(&o.stderr).to_string()
}

// ---------------------------------------------------------------------------
// Mock node: accounts, simulate, broadcast, tx, validators and the Kiln JSON
// query paths. The host registry is filled by the MsgRegisterHost it receives.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct MockState {
    funded: String,
    broadcast: Vec<Vec<u8>>,
    /// JSON hosts, as the chain stores them.
    hosts: Vec<Value>,
    /// (owner, weight)
    weights: Vec<(String, u64)>,
    /// (pubkey bytes, power)
    validators: Vec<(Vec<u8>, u64)>,
    queries: Vec<(String, Vec<u8>)>,
}

fn handle(state: &Mutex<MockState>, method: &str, params: &Value) -> Result<Value, (i64, String)> {
    let mut st = state.lock().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    match method {
        "status" => Ok(json!({
            "node_info": {"network": CHAIN, "moniker": "mock", "version": "0.38.0"},
            "sync_info": {"latest_block_height": "15", "latest_block_hash": "AB", "latest_app_hash": "CD", "latest_block_time": "2026-01-01T00:00:00Z", "catching_up": false},
            "validator_info": {"address": "EF", "pub_key": {"type": "tendermint/PubKeyEd25519", "value": "AA=="}, "voting_power": "10"},
        })),
        "validators" => {
            let vals: Vec<Value> = st
                .validators
                .iter()
                .enumerate()
                .map(|(i, (pk, p))| {
                    json!({"address": format!("VAL{i}"), "pub_key": {"type": "tendermint/PubKeyEd25519", "value": b64.encode(pk)},
                        "voting_power": p.to_string(), "proposer_priority": "0"})
                })
                .collect();
            Ok(
                json!({"block_height": "15", "validators": vals, "count": vals.len().to_string(), "total": vals.len().to_string()}),
            )
        }
        "abci_query" => {
            let path = params["path"].as_str().unwrap().to_string();
            let data = hex::decode(params["data"].as_str().unwrap()).unwrap();
            st.queries.push((path.clone(), data.clone()));
            let ok = |v: Vec<u8>| json!({"response": {"code": 0, "log": "", "value": b64.encode(v), "height": "15"}});
            let not_found = |log: String| json!({"response": {"code": 22, "codespace": "sdk", "log": format!("key not found: {log}"), "height": "15"}});
            let addr = String::from_utf8(data.clone()).unwrap_or_default();
            match path.as_str() {
                "/cosmos.auth.v1beta1.Query/Account" => {
                    let req = QueryAccountRequest::decode(data.as_slice()).unwrap();
                    if req.address != st.funded {
                        return Ok(
                            json!({"response": {"code": 22, "codespace": "sdk", "log": format!("account {} not found", req.address)}}),
                        );
                    }
                    let acc = BaseAccount {
                        address: req.address,
                        pub_key: None,
                        account_number: 4,
                        sequence: 1,
                    };
                    let any = cosmrs::Any {
                        type_url: "/cosmos.auth.v1beta1.BaseAccount".into(),
                        value: acc.encode_to_vec(),
                    };
                    Ok(ok(
                        QueryAccountResponse { account: Some(any) }.encode_to_vec()
                    ))
                }
                "/cosmos.tx.v1beta1.Service/Simulate" => Ok(ok(SimulateResponse {
                    gas_info: Some(GasInfo {
                        gas_wanted: 0,
                        gas_used: 80_000,
                    }),
                    result: None,
                }
                .encode_to_vec())),
                "/kiln.epochs.v1.Query/Epoch" => Ok(ok(serde_json::to_vec(&json!({
                    "height": 15, "epoch": 3, "start_height": 9, "stage": "open",
                    "stage_start": 14, "next_stage_height": 17, "blocks_to_next_stage": 2
                }))
                .unwrap())),
                "/kiln.sprint.v1.Query/Hosts" => Ok(ok(serde_json::to_vec(&Value::Array(
                    st.hosts.clone(),
                ))
                .unwrap())),
                "/kiln.sprint.v1.Query/Host" => {
                    match st.hosts.iter().find(|h| h["owner"] == addr.as_str()) {
                        Some(h) => Ok(ok(serde_json::to_vec(h).unwrap())),
                        None => Ok(not_found("no such host".into())),
                    }
                }
                "/kiln.sprint.v1.Query/Weights" => {
                    let total: u64 = st.weights.iter().map(|w| w.1).sum();
                    let rows: Vec<Value> = st
                        .weights
                        .iter()
                        .map(|(h, w)| json!({"host": h, "weight": w, "share_bps": w * 10_000 / total.max(1), "consensus_power": w}))
                        .collect();
                    Ok(ok(serde_json::to_vec(&rows).unwrap()))
                }
                "/kiln.reputation.v1.Query/Reputation" => Ok(ok(serde_json::to_vec(
                    &json!({"address": addr, "good_epochs": 2, "reputation": 66}),
                )
                .unwrap())),
                "/kiln.sprint.v1.Query/Result" => {
                    let req: Value = serde_json::from_slice(&data).unwrap();
                    if req["epoch"] == 2 {
                        Ok(ok(serde_json::to_vec(&json!({"accepted": true, "reason": "", "raw_weight": 900,
                            "effective_weight": 900, "valid_vote_weight": 10, "committee_weight": 10}))
                        .unwrap()))
                    } else {
                        Ok(not_found(format!(
                            "no settled result for {} in epoch {}",
                            req["host"], req["epoch"]
                        )))
                    }
                }
                _ => Ok(
                    json!({"response": {"code": 6, "log": format!("unknown query path {path:?}")}}),
                ),
            }
        }
        "broadcast_tx_sync" => {
            let tx = b64.decode(params["tx"].as_str().unwrap()).unwrap();
            let hash = hex::encode_upper(<sha2::Sha256 as sha2::Digest>::digest(&tx));
            // Apply MsgRegisterHost like the chain would, so later queries see it.
            let raw = TxRaw::decode(tx.as_slice()).unwrap();
            let body = TxBody::decode(raw.body_bytes.as_slice()).unwrap();
            for m in &body.messages {
                if m.type_url == "/kiln.host.v1.MsgRegisterHost" {
                    let r = MsgRegisterHost::decode(m.value.as_slice()).unwrap();
                    st.hosts
                        .push(json!({"owner": r.owner, "worker_url": r.worker_url,
                        "consensus_pubkey": hex::encode(&r.consensus_pubkey), "models": r.models,
                        "hardware": r.hardware, "registered_height": 16}));
                }
            }
            st.broadcast.push(tx);
            Ok(json!({"code": 0, "codespace": "", "log": "", "hash": hash, "data": ""}))
        }
        "tx" => {
            let want = params["hash"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x")
                .to_uppercase();
            let found = st
                .broadcast
                .iter()
                .find(|t| hex::encode_upper(<sha2::Sha256 as sha2::Digest>::digest(t)) == want)
                .cloned();
            match found {
                Some(tx) => Ok(json!({
                    "hash": want, "height": "16", "index": 0,
                    "tx_result": {"code": 0, "codespace": "", "log": "", "gas_wanted": "104000", "gas_used": "70000", "events": []},
                    "tx": b64.encode(tx),
                })),
                None => Err((-32603, format!("tx ({want}) not found"))),
            }
        }
        other => Err((-32601, format!("method {other} not found"))),
    }
}

/// A CometBFT priv_validator_key.json for `seed` at `path`; `pub_key`
/// overrides the public key written (to make a mismatched file).
fn key_file_at(path: &Path, seed: [u8; 32], pub_key: Option<&[u8]>) -> std::path::PathBuf {
    let b64 = base64::engine::general_purpose::STANDARD;
    let public = kiln_client::host::ConsensusKeyPair::from_seed(seed).public();
    let mut private = seed.to_vec();
    private.extend_from_slice(&public);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(
        path,
        json!({
            "address": "0123",
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": b64.encode(pub_key.unwrap_or(&public))},
            "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": b64.encode(&private)},
        })
        .to_string(),
    )
    .unwrap();
    path.to_path_buf()
}

fn key_file(dir: &Path, seed: [u8; 32]) -> std::path::PathBuf {
    key_file_at(&dir.join("priv_validator_key.json"), seed, None)
}

fn register_msg(tx: &[u8]) -> MsgRegisterHost {
    let raw = TxRaw::decode(tx).unwrap();
    let body = TxBody::decode(raw.body_bytes.as_slice()).unwrap();
    assert_eq!(body.messages.len(), 1);
    assert_eq!(body.messages[0].type_url, "/kiln.host.v1.MsgRegisterHost");
    MsgRegisterHost::decode(body.messages[0].value.as_slice()).unwrap()
}

#[test]
fn register_host_then_query_against_mock_node() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let dev = kiln_client::write_test_key(h, "dev", COSMJS_24).unwrap();
    let state = Arc::new(Mutex::new(MockState {
        funded: dev.address.clone(),
        ..Default::default()
    }));
    let node = mock_node(state.clone(), handle);
    let run = |args: &[&str]| {
        let mut c = kiln(h);
        c.args(args)
            .args(["--keyring-backend", "test", "--node", &node]);
        c.output().unwrap()
    };

    // Register from priv_validator_key.json.
    let kf = key_file(h, CONS_SEED);
    let r = ok_json(&run(&[
        "tx",
        "host",
        "register",
        "--from",
        "dev",
        "--worker-url",
        "http://127.0.0.1:9000",
        "--consensus-key-file",
        kf.to_str().unwrap(),
        "--models",
        "llama-3-8b, qwen2-7b",
        "--hardware",
        "1x RTX 4090",
        "--yes",
        "-o",
        "json",
    ]));
    assert_eq!(r["code"], 0);
    assert_eq!(r["height"], "16");
    let tx = state.lock().unwrap().broadcast[0].clone();
    let m = register_msg(&tx);
    assert_eq!(m.owner, dev.address);
    assert_eq!(m.consensus_pubkey, cons_key().to_vec());
    // The proof of possession verifies for this owner on the node's chain.
    let owner: kiln_framework::Address = dev.address.parse().unwrap();
    kiln_hosts::pop::verify(&m.consensus_pubkey, &m.consensus_key_proof, CHAIN, &owner).unwrap();
    assert_eq!(m.worker_url, "http://127.0.0.1:9000");
    assert_eq!(m.models, ["llama-3-8b", "qwen2-7b"]);
    assert_eq!(m.hardware, "1x RTX 4090");

    // Default key file: the home's config/priv_validator_key.json; with
    // --generate-only and --chain-id no node is needed for the proof.
    key_file_at(&h.join("config/priv_validator_key.json"), CONS_SEED, None);
    let g = ok_json(&run(&[
        "tx",
        "host",
        "register",
        "--from",
        "dev",
        "--worker-url",
        "https://w.example",
        "--chain-id",
        "other-chain",
        "--generate-only",
    ]));
    let msg = &g["body"]["messages"][0];
    assert_eq!(msg["@type"], "/kiln.host.v1.MsgRegisterHost");
    assert_eq!(msg["owner"], dev.address.as_str());
    assert_eq!(msg["consensus_pubkey"], hex::encode(cons_key()));
    assert_eq!(msg["models"], json!([]));
    let proof = hex::decode(msg["consensus_key_proof"].as_str().unwrap()).unwrap();
    kiln_hosts::pop::verify(&cons_key(), &proof, "other-chain", &owner).unwrap();
    assert!(kiln_hosts::pop::verify(&cons_key(), &proof, CHAIN, &owner).is_err());

    // Queries. hosts / host (by key name and by address).
    let hosts = ok_json(&run(&["query", "hosts", "-o", "json"]));
    assert_eq!(hosts.as_array().unwrap().len(), 1);
    assert_eq!(hosts[0]["consensus_pubkey"], hex::encode(cons_key()));
    let host = ok_json(&run(&["query", "host", "dev", "-o", "json"]));
    assert_eq!(host["owner"], dev.address.as_str());
    assert_eq!(host["models"], json!(["llama-3-8b", "qwen2-7b"]));
    let q = state.lock().unwrap().queries.clone();
    let (path, data) = q.last().unwrap();
    assert_eq!(path, "/kiln.sprint.v1.Query/Host");
    assert_eq!(data, dev.address.as_bytes(), "data is the bech32 address");
    let t = ok_text(&run(&["q", "host", &dev.address]));
    assert!(t.contains("worker_url: http://127.0.0.1:9000"), "{t}");
    let other = kiln_client::keyring::address_from_mnemonic(COSMJS_12).unwrap();
    let e = failed(&run(&["query", "host", &other]));
    assert!(
        e.contains(&format!("{other} is not a registered host")),
        "{e}"
    );
    let e = failed(&run(&["query", "host", "nobody"]));
    assert!(e.contains("neither a kiln1… address nor a key"), "{e}");

    // epoch: JSON fields and the one-line text form.
    let ep = ok_json(&run(&["query", "epoch", "-o", "json"]));
    assert_eq!(ep["epoch"], 3);
    assert_eq!(ep["stage"], "open");
    assert_eq!(ep["blocks_to_next_stage"], 2);
    assert_eq!(
        ok_text(&run(&["query", "epoch"])),
        "epoch 3, stage open (blocks 14–16), 2 blocks to vote_commit\n"
    );

    // weights with CometBFT power matched by consensus key.
    {
        let mut st = state.lock().unwrap();
        st.weights = vec![(dev.address.clone(), 300), (other.clone(), 900)];
        st.validators = vec![(vec![9; 32], 5), (cons_key().to_vec(), 300)];
    }
    let w = ok_json(&run(&["query", "weights", "-o", "json"]));
    let rows = w["weights"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let dev_row = rows
        .iter()
        .find(|r| r["host"] == dev.address.as_str())
        .unwrap();
    assert_eq!(dev_row["weight"], 300);
    assert_eq!(dev_row["share_bps"], 2500);
    assert_eq!(dev_row["consensus_power"], 300);
    assert_eq!(dev_row["cometbft_voting_power"], 300);
    let other_row = rows.iter().find(|r| r["host"] == other.as_str()).unwrap();
    assert_eq!(other_row["cometbft_voting_power"], Value::Null);
    assert_eq!(w["other_validators"][0]["voting_power"], 5);
    let t = ok_text(&run(&["query", "weights"]));
    assert!(t.contains("SHARE"), "{t}");
    let dev_line = t.lines().find(|l| l.starts_with(&dev.address)).unwrap();
    assert!(dev_line.contains("25.00%"), "{t}");
    assert!(dev_line.trim_end().ends_with("300"), "{t}");
    assert!(t.contains("75.00%"), "{t}");

    // reputation
    let rep = ok_json(&run(&["query", "reputation", "dev", "-o", "json"]));
    assert_eq!(rep["reputation"], 66);
    assert_eq!(rep["good_epochs"], 2);
    assert_eq!(
        ok_text(&run(&["query", "reputation", "dev"])),
        format!("{}: reputation 66/100 (2 good epochs)\n", dev.address)
    );

    // sprint-result: data is JSON {"epoch":N,"host":"kiln1…"}
    let res = ok_json(&run(&[
        "query",
        "sprint-result",
        "2",
        &dev.address,
        "-o",
        "json",
    ]));
    assert_eq!(res["accepted"], true);
    assert_eq!(res["epoch"], 2);
    assert_eq!(res["effective_weight"], 900);
    let q = state.lock().unwrap().queries.clone();
    let (path, data) = q.last().unwrap();
    assert_eq!(path, "/kiln.sprint.v1.Query/Result");
    let req: Value = serde_json::from_slice(data).unwrap();
    assert_eq!(req, json!({"epoch": 2, "host": dev.address}));
    let e = failed(&run(&["query", "sprint-result", "7", "dev"]));
    assert!(e.contains("no settled sprint result"), "{e}");

    // update: fields not given keep their on-chain values.
    ok_json(&run(&[
        "tx",
        "host",
        "update",
        "--from",
        "dev",
        "--hardware",
        "2x RTX 4090",
        "--yes",
        "-o",
        "json",
    ]));
    let tx = state.lock().unwrap().broadcast.last().unwrap().clone();
    let raw = TxRaw::decode(tx.as_slice()).unwrap();
    let body = TxBody::decode(raw.body_bytes.as_slice()).unwrap();
    assert_eq!(body.messages[0].type_url, "/kiln.host.v1.MsgUpdateHost");
    let u = MsgUpdateHost::decode(body.messages[0].value.as_slice()).unwrap();
    assert_eq!(u.owner, dev.address);
    assert_eq!(u.worker_url, "http://127.0.0.1:9000");
    assert_eq!(u.models, ["llama-3-8b", "qwen2-7b"]);
    assert_eq!(u.hardware, "2x RTX 4090");
    assert!(u.consensus_pubkey.is_empty(), "key unchanged unless given");

    // update of an account that is not a host
    kiln_client::write_test_key(h, "other", COSMJS_12).unwrap();
    let e = failed(&run(&[
        "tx", "host", "update", "--from", "other", "--models", "x", "--yes",
    ]));
    assert!(e.contains("is not a registered host"), "{e}");
}

#[test]
fn host_errors() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    kiln_client::write_test_key(h, "dev", COSMJS_24).unwrap();
    let run = |args: &[&str]| {
        let mut c = kiln(h);
        c.args(args)
            .args(["--keyring-backend", "test", "--node", "http://127.0.0.1:1"]);
        c.output().unwrap()
    };
    let reg = |key_args: &[&str]| {
        let mut a = vec![
            "tx",
            "host",
            "register",
            "--from",
            "dev",
            "--worker-url",
            "http://w:1",
            "--yes",
        ];
        a.extend_from_slice(key_args);
        run(&a)
    };
    // No key file in the home (the default) and none given.
    let e = failed(&reg(&[]));
    assert!(
        e.contains("cannot read consensus key file") && e.contains("priv_validator_key.json"),
        "{e}"
    );
    // A key file whose pub_key is not its private key's: refused, so the
    // registered key is always the one that signs the proof.
    let kf = key_file_at(&h.join("mismatch.json"), CONS_SEED, Some(&[3u8; 32]));
    let e = failed(&reg(&["--consensus-key-file", kf.to_str().unwrap()]));
    assert!(e.contains("does not match"), "{e}");
    // A wrong-length public key; a missing key file.
    let kf = key_file_at(&h.join("short.json"), CONS_SEED, Some(&[3u8; 33]));
    let e = failed(&reg(&["--consensus-key-file", kf.to_str().unwrap()]));
    assert!(e.contains("got 33 bytes"), "{e}");
    let e = failed(&reg(&["--consensus-key-file", "/nonexistent/pvk.json"]));
    assert!(e.contains("cannot read consensus key file"), "{e}");
    // bad URL (checked before the key file is read)
    let e = failed(&run(&[
        "tx",
        "host",
        "register",
        "--from",
        "dev",
        "--worker-url",
        "w:1",
        "--yes",
    ]));
    assert!(e.contains("--worker-url must start with http://"), "{e}");
    let kf = key_file(h, CONS_SEED);
    // update --generate-only cannot fill missing fields from the chain.
    let e = failed(&run(&[
        "tx",
        "host",
        "update",
        "--from",
        "dev",
        "--hardware",
        "x",
        "--generate-only",
    ]));
    assert!(
        e.contains("with --generate-only give --worker-url, --models and --hardware"),
        "{e}"
    );
    // Valid input, unreachable node: clear error.
    let e = failed(&reg(&["--consensus-key-file", kf.to_str().unwrap()]));
    assert!(e.contains("cannot reach node at http://127.0.0.1:1"), "{e}");
    for q in [
        vec!["query", "epoch"],
        vec!["query", "hosts"],
        vec!["query", "host", "dev"],
        vec!["query", "weights", "-o", "json"],
        vec!["query", "reputation", "dev"],
        vec!["query", "sprint-result", "1", "dev"],
    ] {
        let e = failed(&run(&q));
        assert!(e.contains("cannot reach node"), "{q:?}: {e}");
        assert!(e.contains("kilnd devnet"), "{q:?}: {e}");
    }
}
