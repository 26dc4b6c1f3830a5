//! Issue 15, "ML nodes on chain" (the registry; sprint and inference duties
//! per node come next): a host declares ML nodes with its account key,
//! each with its own ML key and a nonce lane no other node of the host ever
//! gets; adding, disabling and enabling take effect at the next epoch
//! start; a node's key sends the ML-ops messages only while its node is
//! enabled in force; a node is removed only once disabled in force; bad
//! requests are refused with reasons. SPEC §11's invariants hold after
//! every block.

use kiln_hosts::mlnodes::{
    MsgAddMlNode, MsgRemoveMlNode, MsgSetMlNodeEnabled, MsgUpdateMlNode, LANE_BITS,
};
use kiln_testkit::{any_of, msg_exec, msg_grant, sign_tx, BlockDriver, TestKey};
use serde_json::Value;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{ExecTxResult, RequestQuery};

const CHAIN: &str = "kiln-mlnodes";

struct Net {
    d: BlockDriver,
    host: TestKey,
    stranger: TestKey,
    _dir: tempfile::TempDir,
}

fn net() -> Net {
    let host = TestKey::from_label("mlnodes-host");
    let stranger = TestKey::from_label("mlnodes-stranger");
    let mut g = kiln_genesis::AppGenesis::with_devnet_params();
    for k in [&host, &stranger] {
        g.add_balance(
            k.address,
            vec![kiln_framework::Coin::new("ukiln", 100_000_000)],
        );
    }
    g.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: host.address,
        worker_url: "http://host.test:8080".into(),
        consensus_pubkey: hex::encode([1u8; 32]),
        models: vec![],
        hardware: "test".into(),
        weight: 10,
    });
    let dir = tempfile::tempdir().unwrap();
    let mut d =
        BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();
    d.deliver(vec![]).unwrap();
    Net {
        d,
        host,
        stranger,
        _dir: dir,
    }
}

fn add(owner: &TestKey, id: &str, ml_key: &TestKey) -> cosmos_sdk_proto::Any {
    any_of(&MsgAddMlNode {
        owner: owner.address.to_bech32(),
        id: id.into(),
        worker_url: format!("http://{id}.test:8090"),
        models: vec!["smollm2-135m".into()],
        hardware: "1x test GPU".into(),
        ml_key: ml_key.address.to_bech32(),
    })
}

fn switch(owner: &TestKey, id: &str, enabled: bool) -> cosmos_sdk_proto::Any {
    any_of(&MsgSetMlNodeEnabled {
        owner: owner.address.to_bech32(),
        id: id.into(),
        enabled,
    })
}

fn remove(owner: &TestKey, id: &str) -> cosmos_sdk_proto::Any {
    any_of(&MsgRemoveMlNode {
        owner: owner.address.to_bech32(),
        id: id.into(),
    })
}

/// The message got past the grant and the ML-node check to the inference
/// module (which may still refuse it by its own rules, e.g. the period).
fn passed_the_gate(r: &ExecTxResult) -> bool {
    r.code == 0 || r.codespace == "inference"
}

impl Net {
    fn send(&mut self, key: &TestKey, msg: cosmos_sdk_proto::Any) -> ExecTxResult {
        let tx = sign_tx(key, vec![msg], &self.d.opts_for(key));
        let r = self.d.deliver(vec![tx]).unwrap().response.tx_results[0].clone();
        self.d.check_invariants().unwrap();
        r
    }

    fn ok(&mut self, msg: cosmos_sdk_proto::Any) {
        let host = self.host.clone();
        let r = self.send(&host, msg);
        assert_eq!(r.code, 0, "{}", r.log);
    }

    fn refused(&mut self, key: &TestKey, msg: cosmos_sdk_proto::Any, reason: &str) {
        let r = self.send(key, msg);
        assert_ne!(r.code, 0, "accepted; expected a refusal about {reason:?}");
        assert!(
            r.log.contains(reason),
            "{:?} does not mention {reason:?}",
            r.log
        );
    }

    fn nodes(&self) -> Vec<Value> {
        let r = self.d.app.query(RequestQuery {
            path: kiln_hosts::query::HOST_PATH.into(),
            data: self.host.address.to_bech32().into_bytes().into(),
            height: 0,
            prove: false,
        });
        assert_eq!(r.code, 0, "{}", r.log);
        let v: Value = serde_json::from_slice(&r.value).unwrap();
        v["ml_nodes"].as_array().unwrap().clone()
    }

    fn state_of(&self, id: &str) -> String {
        self.nodes()
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| n["state"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "absent".into())
    }

    /// `key` sends an ML-ops message (a validation-seed commitment) for the
    /// host through `MsgExec`; returns the result.
    fn ml_ops_from(&mut self, key: &TestKey) -> ExecTxResult {
        let period = kiln_epochs::EpochExt::epoch_info(&self.d.app.latest_view(), self.d.height)
            .unwrap()
            .epoch
            + 1;
        let msg = any_of(&kiln_inference::msgs::MsgCommitValidationSeed {
            host: self.host.address.to_bech32(),
            period,
            commitment: vec![7; 32],
        });
        let mut o = self.d.opts_for(key);
        o.gas_limit = 1_000_000;
        o.fee = 25_000;
        let tx = sign_tx(key, vec![msg_exec(&key.address, vec![msg])], &o);
        let r = self.d.deliver(vec![tx]).unwrap().response.tx_results[0].clone();
        self.d.check_invariants().unwrap();
        r
    }

    fn next_epoch(&mut self) {
        let info =
            kiln_epochs::EpochExt::epoch_info(&self.d.app.latest_view(), self.d.height).unwrap();
        let params = kiln_epochs::EpochExt::epoch_params(&self.d.app.latest_view()).unwrap();
        let next = info.start_height + params.epoch_length;
        while self.d.height < next {
            self.d.deliver(vec![]).unwrap();
        }
        self.d.check_invariants().unwrap();
    }
}

#[test]
fn ml_nodes_switch_at_epoch_boundaries_and_never_share_a_lane() {
    let mut n = net();
    let host = n.host.clone();
    let stranger = n.stranger.clone();
    let keys: Vec<TestKey> = (0..4)
        .map(|i| TestKey::from_label(&format!("mlnodes-key-{i}")))
        .collect();

    // Each node key gets the ML-ops grant (the CLI sends it with the add).
    let mut grants: Vec<cosmos_sdk_proto::Any> = Vec::new();
    for k in &keys {
        grants.extend(
            kiln_messages::ml_ops_type_urls()
                .iter()
                .map(|url| msg_grant(&host.address, &k.address, url, None)),
        );
    }
    let mut o = n.d.opts_for(&host);
    o.gas_limit = 5_000_000;
    o.fee = 125_000;
    let r = n.d.deliver(vec![sign_tx(&host, grants, &o)]).unwrap();
    assert_eq!(
        r.response.tx_results[0].code, 0,
        "{}",
        r.response.tx_results[0].log
    );
    for k in &keys {
        n.d.deliver(vec![sign_tx(
            &host,
            vec![kiln_testkit::msg_send(&host.address, &k.address, 1_000_000)],
            &n.d.opts_for(&host),
        )])
        .unwrap();
    }

    n.ok(add(&host, "gpu-0", &keys[0]));
    n.ok(add(&host, "gpu-1", &keys[1]));
    // Not enabled yet: the node keys' grants do not work.
    let r = n.ml_ops_from(&keys[0]);
    assert!(r.code != 0 && r.log.contains("enabling"), "{}", r.log);
    let nodes = n.nodes();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["state"], "enabling", "{nodes:?}");
    assert_eq!(nodes[0]["lane"], 0);
    assert_eq!(nodes[1]["lane"], 1);
    assert_eq!(nodes[1]["first_nonce"], (1u64 << LANE_BITS).to_string());
    assert_eq!(nodes[1]["ml_key"], keys[1].address.to_bech32());

    // Bad requests.
    n.refused(
        &host,
        add(&host, "gpu-0", &keys[2]),
        "already has an ML node",
    );
    n.refused(&host, add(&host, "gpu-2", &keys[0]), "already signs with");
    n.refused(
        &host,
        add(&host, "gpu-2", &host),
        "must not be the host's account key",
    );
    n.refused(&host, add(&host, "GPU 2", &keys[2]), "a-z, 0-9");
    n.refused(
        &stranger,
        add(&stranger, "gpu-0", &keys[2]),
        "not a registered host",
    );
    n.refused(&host, switch(&host, "gpu-9", false), "has no ML node");
    n.refused(
        &host,
        remove(&host, "gpu-1"),
        "disable it, wait for the next epoch",
    );

    n.next_epoch();
    assert_eq!(n.state_of("gpu-0"), "enabled");
    assert_eq!(n.state_of("gpu-1"), "enabled");
    let r = n.ml_ops_from(&keys[0]);
    assert!(
        passed_the_gate(&r),
        "an enabled node's key acts for its host: {}",
        r.log
    );
    // A key that is no node's is not restricted by the registry.
    let r = n.ml_ops_from(&keys[3]);
    assert!(passed_the_gate(&r), "{}", r.log);

    // Disable gpu-1; disable then re-enable gpu-0 (the switch is cancelled).
    n.ok(switch(&host, "gpu-1", false));
    n.ok(switch(&host, "gpu-0", false));
    assert_eq!(n.state_of("gpu-0"), "disabling");
    n.ok(switch(&host, "gpu-0", true));
    assert_eq!(n.state_of("gpu-0"), "enabled");
    n.refused(&host, switch(&host, "gpu-0", true), "already enabled");
    assert_eq!(n.state_of("gpu-1"), "disabling");
    n.refused(&host, remove(&host, "gpu-1"), "disabling");

    // Disabling takes effect at the boundary, not before.
    let r = n.ml_ops_from(&keys[1]);
    assert!(passed_the_gate(&r), "still enabled this epoch: {}", r.log);
    n.next_epoch();
    assert_eq!(n.state_of("gpu-0"), "enabled");
    assert_eq!(n.state_of("gpu-1"), "disabled");
    let r = n.ml_ops_from(&keys[1]);
    assert!(r.code != 0 && r.log.contains("disabled"), "{}", r.log);
    n.ok(any_of(&MsgUpdateMlNode {
        owner: host.address.to_bech32(),
        id: "gpu-0".into(),
        worker_url: "http://box-a.test:8090".into(),
        models: vec![],
        hardware: "2x test GPU".into(),
    }));
    assert_eq!(n.nodes()[0]["hardware"], "2x test GPU");

    // Removed, its lane is never handed out again.
    n.ok(remove(&host, "gpu-1"));
    assert_eq!(n.state_of("gpu-1"), "absent");
    n.ok(add(&host, "gpu-1", &keys[1]));
    let lane = n.nodes().iter().find(|x| x["id"] == "gpu-1").unwrap()["lane"].clone();
    assert_eq!(lane, 2, "a removed node's lane is not reused");
}
