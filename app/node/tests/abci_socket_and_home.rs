//! ABCI socket server (tendermint-abci wire protocol) and home-file handling.

mod common;

use std::time::Duration;

use common::*;
use kiln_node::home;
use tendermint_abci::ClientBuilder;
use tendermint_proto::v0_38::abci::*;

#[test]
fn abci_socket_server_answers_a_tendermint_abci_client() {
    let app = KvApp::default();
    let server =
        kiln_node::abci_server::bind_abci(app.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    std::thread::spawn(move || {
        let _ = server.listen();
    });
    std::thread::sleep(Duration::from_millis(50));
    let mut client = ClientBuilder::default().connect(addr).unwrap();

    let info = client
        .info(RequestInfo {
            version: "0.38.17".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(info.last_block_height, 0);
    assert_eq!(info.data, "kv");

    client
        .init_chain(RequestInitChain {
            chain_id: "kiln-test".into(),
            initial_height: 1,
            ..Default::default()
        })
        .unwrap();
    let ok = client
        .check_tx(RequestCheckTx {
            tx: b"a=1".to_vec().into(),
            r#type: 0,
        })
        .unwrap();
    assert_eq!(ok.code, 0);
    assert_eq!(ok.gas_wanted, 1);
    let bad = client
        .check_tx(RequestCheckTx {
            tx: b"garbage".to_vec().into(),
            r#type: 0,
        })
        .unwrap();
    assert_eq!(bad.code, 1);

    let fin = client
        .finalize_block(RequestFinalizeBlock {
            txs: vec![b"a=1".to_vec().into(), b"fail=2".to_vec().into()],
            height: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(fin.tx_results.len(), 2);
    assert_eq!(fin.tx_results[0].code, 0);
    assert_eq!(fin.tx_results[1].code, 5);
    assert_eq!(fin.app_hash.len(), 32);
    client.commit().unwrap();

    let info = client.info(RequestInfo::default()).unwrap();
    assert_eq!(info.last_block_height, 1);
    assert_eq!(info.last_block_app_hash, fin.app_hash);
    let q = client
        .query(RequestQuery {
            path: "/store".into(),
            data: b"a".to_vec().into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(&q.value[..], b"1");
    // a second connection (CometBFT opens four) sees the same app
    let mut c2 = ClientBuilder::default().connect(addr).unwrap();
    assert_eq!(
        c2.info(RequestInfo::default()).unwrap().last_block_height,
        1
    );
}

#[test]
fn init_home_writes_cometbft_files_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let out = home::init_home(dir.path(), "kiln-x", "m1", serde_json::json!({"a": 1})).unwrap();
    assert!(out.genesis_written);
    let pv_text = std::fs::read_to_string(home::priv_validator_key_path(dir.path())).unwrap();
    let pv: serde_json::Value = serde_json::from_str(&pv_text).unwrap();
    assert_eq!(pv["pub_key"]["type"], "tendermint/PubKeyEd25519");
    assert_eq!(pv["priv_key"]["type"], "tendermint/PrivKeyEd25519");
    assert_eq!(pv["address"], out.validator_address.to_string());
    assert_eq!(b64d(pv["priv_key"]["value"].as_str().unwrap()).len(), 64);
    let nk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home::node_key_path(dir.path())).unwrap())
            .unwrap();
    assert_eq!(nk["priv_key"]["type"], "tendermint/PrivKeyEd25519");
    assert_eq!(out.node_id.len(), 40);
    let st = home::load_priv_validator_state(dir.path()).unwrap();
    assert_eq!(st.height, 0);
    let raw = std::fs::read_to_string(home::priv_validator_state_path(dir.path())).unwrap();
    assert!(raw.contains("\"height\": \"0\""), "{raw}");

    let (g, _) = home::load_genesis(dir.path()).unwrap();
    assert_eq!(g.chain_id.as_str(), "kiln-x");
    assert_eq!(g.initial_height, 1);
    assert_eq!(g.validators.len(), 1);
    assert_eq!(g.validators[0].address, out.validator_address);
    assert_eq!(g.app_state["a"], 1);

    // CometBFT's config.toml points proxy_app at kilnd's default ABCI address.
    let toml = std::fs::read_to_string(home::config_toml_path(dir.path())).unwrap();
    assert!(
        toml.contains("proxy_app = \"tcp://127.0.0.1:26658\""),
        "{toml}"
    );
    assert!(toml.contains("moniker = \"m1\""), "{toml}");
    // An operator's edits survive a second init.
    std::fs::write(home::config_toml_path(dir.path()), "moniker = \"edited\"\n").unwrap();

    // second run keeps the keys
    let out2 = home::init_home(dir.path(), "kiln-x", "m1", serde_json::json!({})).unwrap();
    assert_eq!(
        std::fs::read_to_string(home::config_toml_path(dir.path())).unwrap(),
        "moniker = \"edited\"\n"
    );
    assert!(!out2.genesis_written);
    assert_eq!(out2.validator_address, out.validator_address);
    assert_eq!(out2.node_id, out.node_id);
    assert_eq!(
        home::load_priv_validator_key(dir.path()).unwrap().address(),
        out.validator_address
    );
}

fn b64d(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn malformed_key_and_genesis_files_give_clear_errors() {
    let k = home::PrivValidatorKey::from_seed([1; 32]);
    let good = k.to_json();
    assert_eq!(
        home::parse_priv_validator_key(&good.to_string())
            .unwrap()
            .address(),
        k.address()
    );

    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "not valid JSON"),
        ("{}".into(), "missing field priv_key"),
        (
            r#"{"priv_key":{"type":"tendermint/PrivKeySecp256k1","value":"AA=="}}"#.into(),
            "unsupported key type",
        ),
        (
            r#"{"priv_key":{"type":"tendermint/PrivKeyEd25519","value":"%%%"}}"#.into(),
            "not valid base64",
        ),
        (
            r#"{"priv_key":{"type":"tendermint/PrivKeyEd25519","value":"AAAA"}}"#.into(),
            "must be 64 bytes",
        ),
        (
            {
                let mut v = good.clone();
                v["address"] = "00".repeat(20).into();
                v.to_string()
            },
            "does not match",
        ),
        (
            {
                let mut v = good.clone();
                v["pub_key"]["value"] = home::PrivValidatorKey::from_seed([2; 32]).to_json()
                    ["pub_key"]["value"]
                    .clone();
                v.to_string()
            },
            "pub_key does not match",
        ),
    ];
    for (text, want) in cases {
        let err = format!("{:#}", home::parse_priv_validator_key(&text).unwrap_err());
        assert!(
            err.contains("priv_validator_key.json") && err.contains(want),
            "{text}: {err}"
        );
    }
    let err = format!(
        "{:#}",
        home::parse_node_key("{\"priv_key\":{}}").unwrap_err()
    );
    assert!(err.contains("node_key.json"), "{err}");

    let gen =
        |v: serde_json::Value| home::parse_genesis(&v.to_string()).map_err(|e| format!("{e:#}"));
    let base = serde_json::json!({
        "genesis_time": "2024-01-01T00:00:00Z",
        "chain_id": "c",
        "consensus_params": home::default_consensus_params(),
        "app_state": {}
    });
    assert!(gen(base.clone()).is_ok());
    for (field, want) in [
        ("chain_id", "missing field chain_id"),
        ("genesis_time", "missing field genesis_time"),
        ("consensus_params", "missing field consensus_params"),
    ] {
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove(field);
        let e = gen(v).unwrap_err();
        assert!(e.contains("genesis.json") && e.contains(want), "{e}");
    }
    let mut v = base.clone();
    v["initial_height"] = "0".into();
    assert!(gen(v).unwrap_err().contains("initial_height"));
    let mut v = base.clone();
    v["genesis_time"] = "yesterday".into();
    assert!(gen(v).unwrap_err().contains("genesis.json"));
    assert!(home::parse_genesis("[1]")
        .unwrap_err()
        .to_string()
        .contains("JSON object"));

    // a devnet refuses to start on a malformed genesis, with the reason
    let dir = tempfile::tempdir().unwrap();
    init_home(dir.path());
    std::fs::write(
        home::genesis_path(dir.path()),
        r#"{"genesis_time":"2024-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(kiln_node::DevnetHandle::start(
            KvApp::default(),
            config(dir.path()),
        ))
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("missing field chain_id"),
        "{err:#}"
    );
}

/// Bad input on the ABCI socket costs only the connection that sent it: the
/// server logs it and closes that connection, and keeps serving the others
/// (tendermint-abci's own server would buffer an oversized frame without
/// bound and `unwrap` a request without a value).
#[test]
fn bad_abci_frames_close_only_their_connection() {
    use std::io::{Read, Write};
    let app = KvApp::default();
    let server = kiln_node::abci_server::bind_abci(app, "127.0.0.1:0".parse().unwrap())
        .unwrap()
        .with_max_frame_bytes(1 << 20);
    let addr = server.local_addr();
    std::thread::spawn(move || {
        let _ = server.listen();
    });
    let mut healthy = ClientBuilder::default().connect(addr).unwrap();
    assert_eq!(healthy.info(RequestInfo::default()).unwrap().data, "kv");

    let closes = |bytes: &[u8], what: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(_) => panic!("{what}: the server answered instead of closing"),
            // A reset is a close too; a timeout means the server kept waiting.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{what}: the connection was not closed ({e})"),
        }
    };
    // A request without a value: an empty protobuf message, length 0.
    closes(&[0x00], "a request without a value");
    // A length prefix of 2 MiB > the 1 MiB limit (nothing else sent).
    closes(&[0x80, 0x80, 0x80, 0x01], "an oversized frame");
    // Eleven continuation bytes are not a varint.
    closes(&[0xff; 11], "a broken length prefix");
    // A 3-byte frame that is not a protobuf Request.
    closes(&[0x03, 0xff, 0xff, 0xff], "garbage");

    // The process and the other connection are still serving.
    assert_eq!(healthy.info(RequestInfo::default()).unwrap().data, "kv");
    let mut fresh = ClientBuilder::default().connect(addr).unwrap();
    assert_eq!(
        fresh
            .echo(RequestEcho {
                message: "still here".into()
            })
            .unwrap()
            .message,
        "still here"
    );
}
