//! `kilnd genesis validate <file>` (the real binary) refuses a genesis the
//! chain cannot run: total genesis weight 0 (no validator), parameters out
//! of range, and CometBFT `validators` that are not the ones derived from
//! the genesis hosts; it accepts the devnet-shaped genesis. InitChain runs
//! the same app-state validation (`AppGenesis::from_json_bytes`).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

fn kilnd(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kilnd"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

/// A valid genesis: `kilnd init`, then one genesis host whose consensus key
/// is the node's validator key, with the validator's power as its weight.
fn valid_genesis(home: &Path) -> Value {
    let o = kilnd(home, &["init", "--chain-id", "kiln-validate"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = home.join("config/genesis.json");
    let mut g: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(g["validators"][0]["pub_key"]["value"].as_str().unwrap())
        .unwrap();
    let owner = kiln_testkit::TestKey::from_label("validate-host").address;
    let mut app = kiln_genesis::AppGenesis::default();
    app.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner,
        worker_url: "http://host.example:8080".into(),
        consensus_pubkey: hex::encode(key),
        models: vec![],
        hardware: "cpu".into(),
        weight: 10,
    });
    g["app_state"] = serde_json::to_value(&app).unwrap();
    g
}

/// An edit of a genesis document.
type Edit = Box<dyn Fn(&mut Value)>;

fn check(home: &Path, genesis: &Value) -> Result<String, String> {
    let file = home.join("candidate.json");
    std::fs::write(&file, serde_json::to_string_pretty(genesis).unwrap()).unwrap();
    let o = kilnd(home, &["genesis", "validate", file.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    if o.status.success() {
        Ok(out)
    } else {
        Err(err)
    }
}

#[test]
fn genesis_validate_refuses_zero_weight_and_out_of_range_params() {
    let home = tempfile::tempdir().unwrap();
    let base = valid_genesis(home.path());
    let ok = check(home.path(), &base).unwrap();
    assert!(
        ok.contains("is valid") && ok.contains("1 genesis validators"),
        "{ok}"
    );

    // The app_state edits that must be refused, with the words the error must contain.
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "zero weight",
            Box::new(|g| g["app_state"]["hosts"]["hosts"][0]["weight"] = json!(0)),
            "total genesis weight is 0",
        ),
        (
            "no hosts",
            Box::new(|g| g["app_state"]["hosts"]["hosts"] = json!([])),
            "total genesis weight is 0",
        ),
        (
            "no app_state",
            Box::new(|g| g["app_state"] = Value::Null),
            "total genesis weight is 0",
        ),
        (
            "sprint_samples 0",
            Box::new(|g| g["app_state"]["sprint"]["params"]["sprint_samples"] = json!(0)),
            "sprint_samples must be in 1..=10000",
        ),
        (
            "sprint_samples too many",
            Box::new(|g| g["app_state"]["sprint"]["params"]["sprint_samples"] = json!(10_001)),
            "sprint_samples must be in 1..=10000",
        ),
        (
            "committee 0",
            Box::new(|g| g["app_state"]["sprint"]["params"]["sprint_committee"] = json!(0)),
            "sprint_committee must be at least 1",
        ),
        (
            "r_target 0",
            Box::new(|g| g["app_state"]["sprint"]["params"]["r_target_micro"] = json!(0)),
            "r_target_micro must be in 1..=2000000",
        ),
        (
            "r_target above 2",
            Box::new(|g| g["app_state"]["sprint"]["params"]["r_target_micro"] = json!(2_000_001)),
            "r_target_micro must be in",
        ),
        (
            "tolerance too large",
            Box::new(|g| {
                g["app_state"]["sprint"]["params"]["sprint_tolerance_micro"] = json!(100_001)
            }),
            "sprint_tolerance_micro must be at most 100000",
        ),
        (
            "power share above 100%",
            Box::new(|g| {
                g["app_state"]["staking"]["params"]["max_power_share_bps"] = json!(10_001)
            }),
            "max_power_share_bps must be in 1..=10000",
        ),
        (
            "validation stage too short",
            Box::new(|g| g["app_state"]["epochs"]["params"]["validation_blocks"] = json!(1)),
            "validation_blocks must be at least 2",
        ),
        (
            "stages longer than the epoch",
            Box::new(|g| g["app_state"]["epochs"]["params"]["epoch_length"] = json!(10)),
            "epoch_length 10 is shorter",
        ),
        (
            "validators that are not the hosts'",
            Box::new(|g| g["validators"][0]["power"] = json!("11")),
            "differ from the validators derived from app_state.hosts",
        ),
    ];
    for (name, edit, want) in cases {
        let mut g = base.clone();
        // Fill the sections the edit reaches into with their defaults first.
        let mut app: kiln_genesis::AppGenesis = if g["app_state"].is_null() {
            kiln_genesis::AppGenesis::default()
        } else {
            serde_json::from_value(g["app_state"].clone()).unwrap()
        };
        app.epochs.params = kiln_epochs::EpochParams::devnet();
        g["app_state"] = serde_json::to_value(&app).unwrap();
        assert!(
            check(home.path(), &g).is_ok(),
            "{name}: the filled base is valid"
        );
        edit(&mut g);
        let err = check(home.path(), &g).expect_err(name);
        assert!(err.contains(want), "{name}: expected {want:?} in {err}");
        // InitChain's parse runs the same app-state validation.
        if !name.starts_with("validators") {
            let bytes = serde_json::to_vec(&g["app_state"]).unwrap();
            let bytes = if g["app_state"].is_null() {
                Vec::new()
            } else {
                bytes
            };
            let e = kiln_genesis::AppGenesis::from_json_bytes(&bytes).expect_err(name);
            assert!(e.to_string().contains(want), "{name}: InitChain: {e}");
        }
    }
}
