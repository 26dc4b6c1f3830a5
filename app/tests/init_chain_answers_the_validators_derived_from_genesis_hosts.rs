//! InitChain answers with the validator set the app derives from the
//! genesis hosts — hosts with weight > 0, under their consensus keys, at
//! their weights after the power cap — and refuses (stops the node, as
//! CometBFT treats an InitChain failure) a genesis whose `validators` list
//! a different set, or whose hosts give no validator at all.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use kiln_app::KilnApp;
use kiln_store::{Storage, StorageConfig};
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{RequestInitChain, ValidatorUpdate};
use tendermint_proto::v0_38::crypto::{public_key::Sum, PublicKey};

fn genesis(weights: &[u64]) -> kiln_genesis::AppGenesis {
    let mut g = kiln_genesis::AppGenesis::default();
    for (i, w) in weights.iter().enumerate() {
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: kiln_framework::Address([i as u8 + 1; 20]),
            worker_url: format!("http://h{i}.example"),
            consensus_pubkey: hex::encode([i as u8 + 1; 32]),
            models: vec![],
            hardware: String::new(),
            weight: *w,
        });
    }
    g
}

fn update(key: u8, power: i64) -> ValidatorUpdate {
    ValidatorUpdate {
        pub_key: Some(PublicKey {
            sum: Some(Sum::Ed25519(vec![key; 32])),
        }),
        power,
    }
}

fn init_chain(
    g: &kiln_genesis::AppGenesis,
    validators: Vec<ValidatorUpdate>,
) -> Result<Vec<ValidatorUpdate>, String> {
    let dir = tempfile::tempdir().unwrap();
    let app =
        KilnApp::new(Storage::open(dir.path(), StorageConfig { keep_recent: 0 }).unwrap()).unwrap();
    let request = RequestInitChain {
        chain_id: "kiln-init".into(),
        validators,
        app_state_bytes: serde_json::to_vec(g).unwrap().into(),
        initial_height: 1,
        ..Default::default()
    };
    std::panic::catch_unwind(AssertUnwindSafe(|| app.init_chain(request).validators)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

fn as_map(list: &[ValidatorUpdate]) -> BTreeMap<u8, i64> {
    list.iter()
        .map(|u| match u.pub_key.as_ref().and_then(|k| k.sum.as_ref()) {
            Some(Sum::Ed25519(k)) => (k[0], u.power),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn init_chain_answers_the_validators_derived_from_genesis_hosts() {
    // Six hosts, one far above the 25% cap (the cap applies from 5 hosts), one without weight.
    let g = genesis(&[9_000, 500, 300, 150, 50, 0, 1_000]);
    let expected = kiln_genesis::AppGenesis::validators(&g).unwrap();
    let answer = init_chain(&g, Vec::new()).unwrap();
    let answered: BTreeMap<u8, i64> = as_map(&answer);
    let derived: BTreeMap<u8, i64> = expected.iter().map(|(k, p)| (k[0], *p as i64)).collect();
    assert_eq!(answered, derived);
    assert_eq!(answered.len(), 6, "the host without weight is no validator");
    assert!(!answered.contains_key(&6));
    let total: i64 = answered.values().sum();
    assert_eq!(total, 11_000, "the cap keeps the total");
    assert!(
        answered.values().all(|p| *p * 4 <= total),
        "power-capped: {answered:?}"
    );
    assert_eq!(answered[&1], 2_750);

    // The same set listed in genesis.json is accepted.
    let listed: Vec<ValidatorUpdate> = answered.iter().map(|(k, p)| update(*k, *p)).collect();
    assert_eq!(as_map(&init_chain(&g, listed).unwrap()), answered);
}

#[test]
fn init_chain_refuses_genesis_validators_that_differ_from_the_hosts() {
    let g = genesis(&[9_000, 500, 300, 150, 50, 0, 1_000]);
    // The raw (uncapped) weights, a missing validator, an extra one, a key twice.
    let raw: Vec<ValidatorUpdate> = [
        (1, 9_000),
        (2, 500),
        (3, 300),
        (4, 150),
        (5, 50),
        (7, 1_000),
    ]
    .iter()
    .map(|(k, p)| update(*k, *p))
    .collect();
    let e = init_chain(&g, raw).unwrap_err();
    assert!(
        e.contains("differ from the validators derived from app_state.hosts"),
        "{e}"
    );
    let e = init_chain(&genesis(&[10]), vec![update(1, 10), update(9, 10)]).unwrap_err();
    assert!(e.contains("differ"), "{e}");
    let e = init_chain(&genesis(&[10, 10]), vec![update(1, 10)]).unwrap_err();
    assert!(e.contains("differ"), "{e}");
    let e = init_chain(&genesis(&[10]), vec![update(1, 10), update(1, 10)]).unwrap_err();
    assert!(e.contains("twice"), "{e}");
    // No host with weight: no validator set at all.
    let e = init_chain(&genesis(&[0]), Vec::new()).unwrap_err();
    assert!(e.contains("total genesis weight is 0"), "{e}");
}
