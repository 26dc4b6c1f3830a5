//! `scripts/testnet.sh` as an operator runs it: four validators under the
//! real CometBFT, each with a `kiln-mlworker`. From the first settle on,
//! CometBFT's own `/validators` is `kiln query weights`; every node writes
//! byte-identical snapshots at the same height; `testnet.sh join` brings up
//! a fifth node that state-syncs from a snapshot (trust height and hash read
//! from a peer's RPC), reaches the others' app hash, registers its host with
//! its node's consensus key, grants its ML key, runs a worker, and enters
//! CometBFT's validator set after its first accepted sprint.

// A test, not consensus code: it waits on the wall clock for the network.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "common/testnet.rs"]
mod testnet;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use testnet::Testnet;

/// consensus key (hex) → weight, as `kiln query weights` has it, for the
/// hosts with weight (a host whose sprint was not accepted has weight 0 and
/// no validator: CometBFT lists no zero-power validator). Keyed by the
/// consensus key: right after a settle a host can have weight before
/// CometBFT has its validator (and so before it has a validator address).
fn kiln_weights(net: &Testnet, node: u16) -> BTreeMap<String, u64> {
    let weights = net.kiln(node, &["query", "weights"]);
    weights["weights"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["weight"].as_u64() != Some(0))
        .map(|w| {
            let key = w["consensus_pubkey"].as_str();
            let weight = w["weight"].as_u64();
            match (key, weight) {
                (Some(k), Some(w)) => (k.to_string(), w),
                _ => panic!("unexpected `kiln query weights` entry {w} in {weights}"),
            }
        })
        .collect()
}

/// consensus key (hex) → voting power, from CometBFT's own RPC.
fn cometbft_validators(net: &Testnet, node: u16) -> Option<BTreeMap<String, u64>> {
    use base64::Engine;
    let v = net.get(node, "/validators?per_page=100")?;
    v["result"]["validators"]
        .as_array()?
        .iter()
        .map(|v| {
            let key = base64::engine::general_purpose::STANDARD
                .decode(v["pub_key"]["value"].as_str()?)
                .ok()?;
            Some((hex::encode(key), v["voting_power"].as_str()?.parse().ok()?))
        })
        .collect()
}

/// Waits until CometBFT's set equals Kiln's weights (they differ only for
/// the two blocks after a settle, until CometBFT applies the update).
fn wait_validators_equal_weights(net: &Testnet, within: Duration) -> BTreeMap<String, u64> {
    let start = Instant::now();
    loop {
        let weights = kiln_weights(net, 1);
        let validators = cometbft_validators(net, 2);
        if validators.as_ref() == Some(&weights) {
            return weights;
        }
        assert!(
            start.elapsed() < within,
            "CometBFT validators {validators:?} never equalled kiln weights {weights:?}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn snapshot_heights(home: &Path) -> Vec<u64> {
    let mut heights: Vec<u64> = std::fs::read_dir(home.join("data/snapshots"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    heights.sort();
    heights
}

fn snapshot_files(home: &Path, height: u64) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(home.join(format!("data/snapshots/{height}")))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn consensus_key_hex(home: &Path) -> String {
    use base64::Engine;
    let key: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.join("config/priv_validator_key.json")).unwrap(),
    )
    .unwrap();
    hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(key["pub_key"]["value"].as_str().unwrap())
            .unwrap(),
    )
}

#[test]
fn a_network_of_workers_sets_the_validators_and_a_node_joins_by_state_sync() {
    if testnet::cometbft().is_none() {
        eprintln!("skipped: CometBFT is not installed (scripts/setup.sh installs it into .bin/)");
        return;
    }
    let net = Testnet::up(4, 1, true, "500ms");
    let minutes = |m: u64| Duration::from_secs(60 * m);

    // The first settle turns proven compute into weight (the genesis gave
    // every host 10), and CometBFT's set follows it.
    let start = Instant::now();
    while kiln_weights(&net, 0).values().all(|w| *w == 10) {
        assert!(
            start.elapsed() < minutes(3),
            "no settle changed a weight\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let settled = wait_validators_equal_weights(&net, minutes(1));
    // On a loaded machine a worker can miss an epoch's sprint; most do not.
    assert!(settled.len() >= 2, "{settled:?}");

    // Snapshots of the same height are the same bytes on every node.
    let homes: Vec<_> = (0..4).map(|n| net.home(n)).collect();
    let common = {
        let mut heights = snapshot_heights(&homes[0]);
        heights.retain(|h| homes.iter().all(|home| snapshot_heights(home).contains(h)));
        *heights
            .first()
            .expect("no snapshot height common to all nodes")
    };
    let reference = snapshot_files(&homes[0], common);
    assert!(reference.contains_key("manifest") && reference.len() >= 2);
    for home in &homes[1..] {
        assert!(
            snapshot_files(home, common) == reference,
            "snapshot {common} of {} differs from node0's",
            home.display()
        );
    }

    // A fifth node joins by state sync and becomes a validator.
    net.run(&["join"]);
    let joined = net.home(4);
    let comet_log = std::fs::read_to_string(joined.join("cometbft.log")).unwrap();
    assert!(
        comet_log.contains("Snapshot restored"),
        "node4 did not restore a snapshot:\n{comet_log}"
    );
    let h = net.height(4).unwrap();
    net.wait_height(0, h, minutes(1));
    assert_eq!(net.app_hash_in_block(4, h), net.app_hash_in_block(0, h));
    let newcomer = consensus_key_hex(&joined);
    let start = Instant::now();
    loop {
        let power = cometbft_validators(&net, 0)
            .and_then(|v| v.get(&newcomer).copied())
            .unwrap_or(0);
        if power > 0 {
            break;
        }
        assert!(
            start.elapsed() < minutes(4),
            "node4's validator {newcomer} never got voting power\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let after_join = wait_validators_equal_weights(&net, minutes(1));
    assert!(after_join.contains_key(&newcomer), "{after_join:?}");
    // Its own RPC serves the CLI like any other node's.
    assert!(kiln_weights(&net, 4).contains_key(&newcomer));
}
