//! Issue 12, "Price": each registered model's price per token moves at the
//! end of every block toward 40–60% utilisation — with no traffic it falls
//! by the whole 2% step per block and stops at its floor — and
//! `Query/Models` / `Query/Prices` answer the registry and the price in
//! force, through the real pipeline (genesis → FinalizeBlock → Commit →
//! Query). The devnet genesis registers SmolLM2 at its floor.

use kiln_testkit::BlockDriver;
use serde_json::Value;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::RequestQuery;

fn query(d: &BlockDriver, path: &str) -> Value {
    let r = d.app.query(RequestQuery {
        path: path.into(),
        data: Default::default(),
        height: 0,
        prove: false,
    });
    assert_eq!(r.code, 0, "{path}: {}", r.log);
    serde_json::from_slice(&r.value).unwrap()
}

fn price(d: &BlockDriver) -> u64 {
    let rows = query(d, kiln_inference::query::PRICES_PATH);
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    rows[0]["price_pkiln"].as_u64().unwrap()
}

#[test]
fn an_idle_model_loses_two_percent_a_block_down_to_its_floor() {
    let dev = kiln_testkit::TestKey::from_label("inference-price-dev");
    let ml = kiln_testkit::TestKey::from_label("inference-price-ml");
    let mut g = kiln_genesis::devnet_app_genesis(dev.address, 1_000_000_000, ml.address);
    g.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: dev.address,
        worker_url: "http://dev.example:8080".into(),
        consensus_pubkey: hex::encode([9u8; 32]),
        models: vec!["smollm2-135m".into()],
        hardware: "test".into(),
        weight: 10,
    });
    // The devnet's model starts at its floor; this test starts it above.
    let model = &mut g.inference.models[0];
    assert_eq!(model.id, "smollm2-135m");
    assert_eq!(model.initial_price(), model.price_floor_pkiln);
    model.price_floor_pkiln = 900_000;
    model.initial_price_pkiln = Some(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut d = BlockDriver::open(
        dir.path(),
        "kiln-price",
        &serde_json::to_value(&g).unwrap(),
        0,
    )
    .unwrap();
    // Queries answer from the first committed block on.
    let mut seen = vec![];
    for _ in 0..8 {
        d.deliver(vec![]).unwrap();
        d.check_invariants().unwrap();
        seen.push(price(&d));
    }
    // 1 000 000 × 0.98ⁿ (rounded down each block) until the floor.
    assert_eq!(
        seen,
        vec![980_000, 960_400, 941_192, 922_369, 903_922, 900_000, 900_000, 900_000]
    );

    let models = query(&d, kiln_inference::query::MODELS_PATH);
    let m = &models[0];
    assert_eq!(m["id"], "smollm2-135m");
    assert_eq!(
        m["gguf_sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(m["validation_threshold_micro"], 995_000);
    assert_eq!(m["price_floor_pkiln"], 900_000);
    assert_eq!(m["price_pkiln"], 900_000);
}

#[test]
fn a_genesis_with_a_bad_model_is_refused_with_the_reason() {
    let mut g = kiln_genesis::AppGenesis::with_devnet_params();
    g.inference.models[0].price_floor_pkiln = 0;
    let err = g.validate_contents().unwrap_err().to_string();
    assert!(
        err.contains("inference.models[0] (smollm2-135m)") && err.contains("never free"),
        "{err}"
    );
}
