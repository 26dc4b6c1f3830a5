//! Runs the `kiln` binary: keys commands, and tx/query commands against an
//! unreachable node and against a small mock CometBFT JSON-RPC node.

mod common;
use common::{kiln, mock_node, ok_json, COSMJS_12, COSMJS_24};

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use k256::ecdsa::signature::Verifier;
use prost::Message;
use serde_json::{json, Value};

fn run_with_stdin(mut c: Command, input: &str) -> Output {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn keys_test_backend_add_list_show_delete() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let o = kiln(h)
        .args([
            "keys",
            "add",
            "alice",
            "--keyring-backend",
            "test",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let added = ok_json(&o);
    assert_eq!(added["name"], "alice");
    assert_eq!(added["type"], "local");
    assert!(added["address"].as_str().unwrap().starts_with("kiln1"));
    let mnemonic = added["mnemonic"].as_str().unwrap().to_string();
    assert_eq!(mnemonic.split(' ').count(), 24);
    let pk: Value = serde_json::from_str(added["pubkey"].as_str().unwrap()).unwrap();
    assert_eq!(pk["@type"], "/cosmos.crypto.secp256k1.PubKey");
    assert!(added["pubkey_bech32"]
        .as_str()
        .unwrap()
        .starts_with("kilnpub1"));
    assert_eq!(
        added["address"].as_str().unwrap(),
        kiln_client::keyring::address_from_mnemonic(&mnemonic).unwrap()
    );

    // The file on disk is labelled unencrypted.
    let text = std::fs::read_to_string(h.join("keyring-test/alice.json")).unwrap();
    assert!(text.contains("UNENCRYPTED — for devnets only"));

    // recover from stdin
    let mut c = kiln(h);
    c.args([
        "keys",
        "recover",
        "bob",
        "--keyring-backend",
        "test",
        "-o",
        "json",
    ]);
    let bob = ok_json(&run_with_stdin(c, &format!("{COSMJS_12}\n")));
    assert!(
        bob.get("mnemonic").is_none(),
        "recover must not print the mnemonic"
    );
    assert_eq!(
        bob["address"].as_str().unwrap(),
        kiln_client::keyring::address_from_mnemonic(COSMJS_12).unwrap()
    );

    // list: JSON and text
    let o = kiln(h)
        .args(["keys", "list", "--keyring-backend", "test", "-o", "json"])
        .output()
        .unwrap();
    let list = ok_json(&o);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(list[0]["warning"], "UNENCRYPTED — for devnets only");
    let o = kiln(h)
        .args(["keys", "list", "--keyring-backend", "test"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("UNENCRYPTED — for devnets only"));

    // show (by name, by address, --address)
    let o = kiln(h)
        .args([
            "keys",
            "show",
            "alice",
            "--keyring-backend",
            "test",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let shown = ok_json(&o);
    for f in ["name", "address", "pubkey", "type"] {
        assert_eq!(shown[f], added[f], "{f}");
    }
    let addr = added["address"].as_str().unwrap();
    let o = kiln(h)
        .args([
            "keys",
            "show",
            addr,
            "--keyring-backend",
            "test",
            "--address",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), addr);
    // env var selects the backend
    let o = kiln(h)
        .env("KILN_KEYRING_BACKEND", "test")
        .args(["keys", "show", "alice", "-a"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), addr);

    // export (test backend, --yes)
    let o = kiln(h)
        .args([
            "keys",
            "export",
            "alice",
            "--keyring-backend",
            "test",
            "--yes",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), mnemonic);
    let o = kiln(h)
        .args([
            "keys",
            "export",
            "alice",
            "--keyring-backend",
            "test",
            "--yes",
            "--unarmored-hex",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim().len(), 64);
    // export without confirmation (stdin closed) refuses
    let o = kiln(h)
        .args(["keys", "export", "alice", "--keyring-backend", "test"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());

    // errors: duplicate, invalid name, invalid mnemonic, missing key
    let o = kiln(h)
        .args(["keys", "add", "alice", "--keyring-backend", "test"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = kiln(h)
        .args(["keys", "add", "bad/name", "--keyring-backend", "test"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid key name"));
    let mut c = kiln(h);
    c.args([
        "keys",
        "add",
        "carol",
        "--recover",
        "--keyring-backend",
        "test",
    ]);
    let o = run_with_stdin(c, "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon\n");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid mnemonic"), "{}", stderr(&o));
    let o = kiln(h)
        .args(["keys", "show", "nobody", "--keyring-backend", "test"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not found"));

    // delete: refused without confirmation, done with --yes
    let o = kiln(h)
        .args(["keys", "delete", "alice", "--keyring-backend", "test"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(h.join("keyring-test/alice.json").exists());
    let o = kiln(h)
        .args([
            "keys",
            "delete",
            "alice",
            "--keyring-backend",
            "test",
            "--yes",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!h.join("keyring-test/alice.json").exists());
}

#[test]
fn keys_file_backend_passphrases() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // Passphrase from the environment; file is the default backend.
    let o = kiln(h)
        .env("KILN_KEYRING_PASSPHRASE", "env passphrase 1")
        .args(["keys", "add", "alice", "-o", "json"])
        .output()
        .unwrap();
    let alice = ok_json(&o);
    let path = h.join("keyring-file/alice.json");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!std::fs::read_to_string(&path)
        .unwrap()
        .contains(alice["mnemonic"].as_str().unwrap()));

    // The env passphrase decrypts it again.
    let o = kiln(h)
        .env("KILN_KEYRING_PASSPHRASE", "env passphrase 1")
        .args(["keys", "export", "alice", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(ok_json(&o)["mnemonic"], alice["mnemonic"]);

    // Recover with mnemonic then passphrase on stdin.
    let mut c = kiln(h);
    c.args(["keys", "add", "bob", "--recover", "-o", "json"]);
    let bob = ok_json(&run_with_stdin(
        c,
        &format!("{COSMJS_24}\nstdin passphrase\n"),
    ));
    assert_eq!(
        bob["address"].as_str().unwrap(),
        kiln_client::keyring::address_from_mnemonic(COSMJS_24).unwrap()
    );

    // list/show need no passphrase.
    let o = kiln(h)
        .args(["keys", "list", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(ok_json(&o).as_array().unwrap().len(), 2);

    // export with the right passphrase (stdin), then the wrong one (env).
    let mut c = kiln(h);
    c.args(["keys", "export", "bob"]);
    let o = run_with_stdin(c, "stdin passphrase\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), COSMJS_24);
    let before = std::fs::read(h.join("keyring-file/bob.json")).unwrap();
    let o = kiln(h)
        .env("KILN_KEYRING_PASSPHRASE", "wrong passphrase")
        .args(["keys", "export", "bob"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("wrong passphrase for key 'bob'"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    assert_eq!(
        std::fs::read(h.join("keyring-file/bob.json")).unwrap(),
        before
    );

    // Too-short passphrase and missing passphrase.
    let mut c = kiln(h);
    c.args(["keys", "add", "carol"]);
    let o = run_with_stdin(c, "short\n");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("too short"));
    let o = kiln(h).args(["keys", "add", "carol"]).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("passphrase"), "{}", stderr(&o));
    assert!(!h.join("keyring-file/carol.json").exists());
}

#[test]
fn tx_against_unreachable_node_fails_clearly() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    kiln_client::write_test_key(h, "dev", COSMJS_24).unwrap();
    let to = kiln_client::keyring::address_from_mnemonic(COSMJS_12).unwrap();
    let o = kiln(h)
        .args([
            "tx",
            "bank",
            "send",
            "dev",
            &to,
            "1kiln",
            "--keyring-backend",
            "test",
            "--yes",
            "--node",
            "http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("cannot reach node at http://127.0.0.1:1"), "{e}");
    assert!(e.contains("kilnd devnet"), "{e}");
    let o = kiln(h)
        .args(["status", "--node", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot reach node"));
    // Bad amount is caught before contacting the node.
    let o = kiln(h)
        .args([
            "tx",
            "bank",
            "send",
            "dev",
            &to,
            "1.0000001kiln",
            "--keyring-backend",
            "test",
            "--yes",
            "--node",
            "http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("at most 6 decimals"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------
// Mock node
// ---------------------------------------------------------------------------

use cosmrs::proto::cosmos::auth::v1beta1::{
    BaseAccount, QueryAccountRequest, QueryAccountResponse,
};
use cosmrs::proto::cosmos::bank::v1beta1::{QueryAllBalancesRequest, QueryAllBalancesResponse};
use cosmrs::proto::cosmos::base::abci::v1beta1::GasInfo;
use cosmrs::proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmrs::proto::cosmos::tx::v1beta1::{SignDoc, SimulateRequest, SimulateResponse, TxRaw};

const CHAIN: &str = "kiln-mock";
const ACC_NUM: u64 = 12;
const SEQ: u64 = 3;

#[derive(Default)]
struct MockState {
    funded: String,
    funded_pubkey: Vec<u8>,
    broadcast: Vec<Vec<u8>>,
    simulated: usize,
    tx_polls: usize,
    check_tx_code: u32,
    never_include: bool,
}

fn verify(state: &MockState, tx: &[u8]) -> Result<(), String> {
    let raw = TxRaw::decode(tx).map_err(|e| e.to_string())?;
    let sd = SignDoc {
        body_bytes: raw.body_bytes.clone(),
        auth_info_bytes: raw.auth_info_bytes.clone(),
        chain_id: CHAIN.into(),
        account_number: ACC_NUM,
    };
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&state.funded_pubkey).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(raw.signatures.first().ok_or("no signature")?)
        .map_err(|e| e.to_string())?;
    if sig.normalize_s().is_some() {
        return Err("high-S".into());
    }
    vk.verify(&sd.encode_to_vec(), &sig)
        .map_err(|e| e.to_string())
}

fn handle(state: &Mutex<MockState>, method: &str, params: &Value) -> Result<Value, (i64, String)> {
    let mut st = state.lock().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    match method {
        "status" => Ok(json!({
            "node_info": {"network": CHAIN, "moniker": "mock", "version": "0.38.0"},
            "sync_info": {"latest_block_height": "5", "latest_block_hash": "AB", "latest_app_hash": "CD", "latest_block_time": "2026-01-01T00:00:00Z", "catching_up": false},
            "validator_info": {"address": "EF", "pub_key": {"type": "tendermint/PubKeyEd25519", "value": "AA=="}, "voting_power": "10"},
        })),
        "abci_query" => {
            let path = params["path"].as_str().unwrap();
            let data = hex::decode(params["data"].as_str().unwrap()).unwrap();
            let ok = |v: Vec<u8>| json!({"response": {"code": 0, "log": "", "value": b64.encode(v), "height": "5"}});
            match path {
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
                        account_number: ACC_NUM,
                        sequence: SEQ,
                    };
                    let any = cosmrs::Any {
                        type_url: "/cosmos.auth.v1beta1.BaseAccount".into(),
                        value: acc.encode_to_vec(),
                    };
                    Ok(ok(
                        QueryAccountResponse { account: Some(any) }.encode_to_vec()
                    ))
                }
                "/cosmos.bank.v1beta1.Query/AllBalances" => {
                    let req = QueryAllBalancesRequest::decode(data.as_slice()).unwrap();
                    let balances = if req.address == st.funded {
                        vec![ProtoCoin {
                            denom: "ukiln".into(),
                            amount: "2500000".into(),
                        }]
                    } else {
                        vec![]
                    };
                    Ok(ok(QueryAllBalancesResponse {
                        balances,
                        pagination: None,
                    }
                    .encode_to_vec()))
                }
                "/cosmos.tx.v1beta1.Service/Simulate" => {
                    let req = SimulateRequest::decode(data.as_slice()).unwrap();
                    if let Err(e) = verify(&st, &req.tx_bytes) {
                        return Ok(
                            json!({"response": {"code": 4, "codespace": "sdk", "log": format!("signature: {e}")}}),
                        );
                    }
                    st.simulated += 1;
                    let resp = SimulateResponse {
                        gas_info: Some(GasInfo {
                            gas_wanted: 0,
                            gas_used: 100_000,
                        }),
                        result: None,
                    };
                    Ok(ok(resp.encode_to_vec()))
                }
                _ => Ok(json!({"response": {"code": 6, "log": "unknown query path"}})),
            }
        }
        "broadcast_tx_sync" => {
            let tx = b64.decode(params["tx"].as_str().unwrap()).unwrap();
            let hash = hex::encode_upper(<sha2::Sha256 as sha2::Digest>::digest(&tx));
            if let Err(e) = verify(&st, &tx) {
                return Ok(
                    json!({"code": 4, "codespace": "sdk", "log": e, "hash": hash, "data": ""}),
                );
            }
            st.broadcast.push(tx);
            if st.check_tx_code != 0 {
                return Ok(
                    json!({"code": st.check_tx_code, "codespace": "sdk", "log": "insufficient fee", "hash": hash, "data": ""}),
                );
            }
            Ok(json!({"code": 0, "codespace": "", "log": "", "hash": hash, "data": ""}))
        }
        "tx" => {
            let want = params["hash"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x")
                .to_uppercase();
            st.tx_polls += 1;
            let found = st
                .broadcast
                .iter()
                .find(|t| hex::encode_upper(<sha2::Sha256 as sha2::Digest>::digest(t)) == want)
                .cloned();
            match found {
                Some(tx) if st.tx_polls > 1 && !st.never_include => Ok(json!({
                    "hash": want, "height": "6", "index": 0,
                    "tx_result": {"code": 0, "codespace": "", "log": "", "gas_wanted": "130000", "gas_used": "95000",
                        "events": [{"type": "transfer", "attributes": [{"key": "amount", "value": "1500000ukiln", "index": true}]}]},
                    "tx": b64.encode(tx),
                })),
                _ => Err((-32603, format!("tx ({want}) not found"))),
            }
        }
        other => Err((-32601, format!("method {other} not found"))),
    }
}

#[test]
fn tx_and_queries_against_mock_node() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let dev = kiln_client::write_test_key(h, "dev", COSMJS_24).unwrap();
    let to = kiln_client::keyring::address_from_mnemonic(COSMJS_12).unwrap();
    let state = Arc::new(Mutex::new(MockState {
        funded: dev.address.clone(),
        funded_pubkey: dev.pubkey.clone(),
        ..Default::default()
    }));
    let node = mock_node(state.clone(), handle);
    let base = |c: &mut Command| {
        c.args(["--keyring-backend", "test", "--node", &node]);
    };

    // status
    let mut c = kiln(h);
    c.args(["status", "-o", "json"]);
    base(&mut c);
    let st = ok_json(&c.output().unwrap());
    assert_eq!(st["chain_id"], CHAIN);
    assert_eq!(st["latest_block_height"], 5);

    // balances (by key name)
    let mut c = kiln(h);
    c.args(["query", "bank", "balances", "dev", "-o", "json"]);
    base(&mut c);
    let b = ok_json(&c.output().unwrap());
    assert_eq!(
        b["balances"][0],
        json!({"denom": "ukiln", "amount": "2500000"})
    );

    // send: simulate → gas 130000, fee ceil(130000 × 0.025) = 3250ukiln, sign, broadcast, wait.
    let mut c = kiln(h);
    c.args([
        "tx", "bank", "send", "dev", &to, "1.5kiln", "--yes", "-o", "json", "--memo", "hello",
    ]);
    base(&mut c);
    let r = ok_json(&c.output().unwrap());
    let st = state.lock().unwrap();
    assert_eq!(st.simulated, 2, "once without and once with the fee");
    assert_eq!(st.broadcast.len(), 1);
    let tx = st.broadcast[0].clone();
    drop(st);
    assert_eq!(
        r["txhash"],
        hex::encode_upper(<sha2::Sha256 as sha2::Digest>::digest(&tx))
    );
    assert_eq!(r["height"], "6");
    assert_eq!(r["code"], 0);
    assert_eq!(r["gas_used"], "95000");
    let raw = TxRaw::decode(tx.as_slice()).unwrap();
    let auth = cosmrs::proto::cosmos::tx::v1beta1::AuthInfo::decode(raw.auth_info_bytes.as_slice())
        .unwrap();
    let fee = auth.fee.unwrap();
    assert_eq!(fee.gas_limit, 130_000);
    assert_eq!(
        fee.amount,
        vec![ProtoCoin {
            denom: "ukiln".into(),
            amount: "3250".into()
        }]
    );
    assert_eq!(auth.signer_infos[0].sequence, SEQ);
    let body =
        cosmrs::proto::cosmos::tx::v1beta1::TxBody::decode(raw.body_bytes.as_slice()).unwrap();
    assert_eq!(body.memo, "hello");
    let send =
        cosmrs::proto::cosmos::bank::v1beta1::MsgSend::decode(body.messages[0].value.as_slice())
            .unwrap();
    assert_eq!(
        (send.from_address.as_str(), send.to_address.as_str()),
        (dev.address.as_str(), to.as_str())
    );
    assert_eq!(
        send.amount,
        vec![ProtoCoin {
            denom: "ukiln".into(),
            amount: "1500000".into()
        }]
    );

    // query tx decodes messages and events
    let mut c = kiln(h);
    c.args(["query", "tx", r["txhash"].as_str().unwrap(), "-o", "json"]);
    base(&mut c);
    let q = ok_json(&c.output().unwrap());
    assert_eq!(
        q["tx"]["body"]["messages"][0]["@type"],
        "/cosmos.bank.v1beta1.MsgSend"
    );
    assert_eq!(q["events"][0]["type"], "transfer");

    // grant-ml-ops: one tx with one MsgGrant per ML-ops type URL; fixed gas skips simulation.
    let mut c = kiln(h);
    c.args([
        "tx",
        "authz",
        "grant-ml-ops",
        &to,
        "--from",
        "dev",
        "--gas",
        "400000",
        "--fees",
        "10000ukiln",
        "--yes",
        "-o",
        "json",
    ]);
    base(&mut c);
    ok_json(&c.output().unwrap());
    let st = state.lock().unwrap();
    assert_eq!(st.simulated, 2, "--gas skips simulation");
    let raw = TxRaw::decode(st.broadcast[1].as_slice()).unwrap();
    drop(st);
    let body =
        cosmrs::proto::cosmos::tx::v1beta1::TxBody::decode(raw.body_bytes.as_slice()).unwrap();
    assert_eq!(body.messages.len(), kiln_messages::ml_ops_type_urls().len());
    assert!(body
        .messages
        .iter()
        .all(|m| m.type_url == "/cosmos.authz.v1beta1.MsgGrant"));

    // --dry-run simulates and prints gas/fee; --generate-only needs no node.
    let mut c = kiln(h);
    c.args([
        "tx",
        "bank",
        "send",
        "dev",
        &to,
        "1ukiln",
        "--dry-run",
        "-o",
        "json",
    ]);
    base(&mut c);
    let d = ok_json(&c.output().unwrap());
    assert_eq!(d["gas_estimate"], 130_000);
    assert_eq!(d["fee"][0], "3250ukiln");
    let mut c = kiln(h);
    c.args([
        "tx",
        "bank",
        "send",
        "dev",
        &to,
        "2kiln",
        "--generate-only",
        "--keyring-backend",
        "test",
        "--node",
        "http://127.0.0.1:1",
    ]);
    let g = ok_json(&c.output().unwrap());
    assert_eq!(g["body"]["messages"][0]["amount"][0]["amount"], "2000000");
    assert_eq!(state.lock().unwrap().broadcast.len(), 2);

    // A key of the other backend gets a hint.
    let mut c = kiln(h);
    c.args([
        "tx", "bank", "send", "dev", &to, "1ukiln", "--yes", "--node", &node,
    ]);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--keyring-backend test"),
        "{}",
        stderr(&o)
    );

    // Without --yes and with stdin closed nothing is broadcast.
    let mut c = kiln(h);
    c.args(["tx", "bank", "send", "dev", &to, "1ukiln"]);
    base(&mut c);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not confirmed"), "{}", stderr(&o));
    assert_eq!(state.lock().unwrap().broadcast.len(), 2);

    // Accepted but never included: clear timeout error.
    state.lock().unwrap().never_include = true;
    let mut c = kiln(h);
    c.args([
        "tx",
        "bank",
        "send",
        "dev",
        &to,
        "1ukiln",
        "--yes",
        "--timeout",
        "1s",
    ]);
    base(&mut c);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not included within 1s"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("kiln query tx"), "{}", stderr(&o));
    state.lock().unwrap().never_include = false;

    // CheckTx failure: code printed, non-zero exit.
    state.lock().unwrap().check_tx_code = 13;
    let mut c = kiln(h);
    c.args([
        "tx", "bank", "send", "dev", &to, "1ukiln", "--yes", "-o", "json",
    ]);
    base(&mut c);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["code"], 13);
    assert!(stderr(&o).contains("insufficient fee"));

    // Unfunded sender.
    kiln_client::write_test_key(h, "empty", COSMJS_12).unwrap();
    let mut c = kiln(h);
    c.args([
        "tx",
        "bank",
        "send",
        "empty",
        &dev.address,
        "1ukiln",
        "--yes",
    ]);
    base(&mut c);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "account {to} not found on chain: it has never received funds"
        )),
        "{}",
        stderr(&o)
    );
}
