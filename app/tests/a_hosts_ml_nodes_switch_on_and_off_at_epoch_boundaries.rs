//! Issue 15, "ML nodes on chain" and the chain side of "Sprint across ML
//! nodes" (the last test): a host declares ML nodes with its account key,
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
    // Lane 0 is the host's own worker's; nodes get theirs from 1 on.
    assert_eq!(nodes[0]["lane"], 1);
    assert_eq!(nodes[1]["lane"], 2);
    assert_eq!(nodes[1]["first_nonce"], (2u64 << LANE_BITS).to_string());
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
    assert_eq!(lane, 3, "a removed node's lane is not reused");
}

impl Net {
    /// `key` sends `msg` for the host inside `MsgExec`.
    fn exec(&mut self, key: &TestKey, msg: cosmos_sdk_proto::Any) -> ExecTxResult {
        let mut o = self.d.opts_for(key);
        o.gas_limit = 2_000_000;
        o.fee = 50_000;
        let tx = sign_tx(key, vec![msg_exec(&key.address, vec![msg])], &o);
        let r = self.d.deliver(vec![tx]).unwrap().response.tx_results[0].clone();
        self.d.check_invariants().unwrap();
        r
    }

    /// `key`'s signed `MsgExec` of `msg` for the host (`exec_tx`) or the
    /// host's own signed `msg` (`host_tx`), for [`Net::block`].
    fn exec_tx(&self, key: &TestKey, msg: cosmos_sdk_proto::Any) -> Vec<u8> {
        let mut o = self.d.opts_for(key);
        o.gas_limit = 2_000_000;
        o.fee = 50_000;
        sign_tx(key, vec![msg_exec(&key.address, vec![msg])], &o)
    }

    fn host_tx(&self, msg: cosmos_sdk_proto::Any) -> Vec<u8> {
        sign_tx(&self.host, vec![msg], &self.d.opts_for(&self.host))
    }

    /// One block with `txs` (the stages are a few blocks long); each must pass.
    fn block_ok(&mut self, txs: Vec<Vec<u8>>) {
        let r = self.d.deliver(txs).unwrap();
        for t in &r.response.tx_results {
            assert_eq!(t.code, 0, "{}", t.log);
        }
        self.d.check_invariants().unwrap();
    }

    fn exec_ok(&mut self, key: &TestKey, msg: cosmos_sdk_proto::Any) {
        let r = self.exec(key, msg);
        assert_eq!(r.code, 0, "{}", r.log);
    }

    /// Empty blocks until the next block is in `stage`.
    fn until(&mut self, stage: kiln_epochs::Stage) {
        for _ in 0..200 {
            let next =
                kiln_epochs::EpochExt::epoch_info(&self.d.app.latest_view(), self.d.height + 1)
                    .unwrap();
            if next.stage == stage {
                return;
            }
            self.d.deliver(vec![]).unwrap();
        }
        panic!("stage {stage:?} never came");
    }

    fn epoch(&self) -> u64 {
        kiln_epochs::EpochExt::epoch_info(&self.d.app.latest_view(), self.d.height)
            .unwrap()
            .epoch
    }

    fn grant_ml_ops(&mut self, keys: &[TestKey]) {
        let host = self.host.clone();
        let mut grants: Vec<cosmos_sdk_proto::Any> = Vec::new();
        for k in keys {
            // Fees for the node keys' MsgExec.
            grants.push(kiln_testkit::msg_send(&host.address, &k.address, 1_000_000));
            grants.extend(
                kiln_messages::ml_ops_type_urls()
                    .iter()
                    .map(|url| msg_grant(&host.address, &k.address, url, None)),
            );
        }
        let mut o = self.d.opts_for(&host);
        o.gas_limit = 5_000_000;
        o.fee = 125_000;
        let r = self.d.deliver(vec![sign_tx(&host, grants, &o)]).unwrap();
        let r = &r.response.tx_results[0];
        assert_eq!(r.code, 0, "{}", r.log);
    }
}

/// `count` share leaves in `lane`, nonces strictly increasing.
fn lane_leaves(lane: u64, count: u64) -> Vec<(u64, u32)> {
    (0..count)
        .map(|i| ((lane << LANE_BITS) + i * 3, 12_000 + (i % 1_400) as u32))
        .collect()
}

/// Issue 15, "Sprint across ML nodes", on the chain: each ML node commits,
/// reveals and opens its own tree from its own lane, signed by its own key;
/// a node's key cannot act for another node or for the host's own worker;
/// an opening that reaches into another lane is refused; the host's raw
/// weight is the sum of the counts its units opened, split per node in its
/// result; a disabled node is refused from the next epoch on.
#[test]
fn ml_nodes_sprint_in_their_own_lanes_and_their_counts_add_up() {
    use kiln_epochs::Stage;
    use kiln_sprint::handler::codes;
    use kiln_testkit::sprint::{commit_msg, node_commit_msg, node_open_msg, node_reveal_msg};

    let mut n = net();
    let host = n.host.clone();
    let keys: Vec<TestKey> = (0..3)
        .map(|i| TestKey::from_label(&format!("mlnodes-sprint-key-{i}")))
        .collect();
    n.grant_ml_ops(&keys);
    n.ok(add(&host, "gpu-0", &keys[0]));
    n.ok(add(&host, "gpu-1", &keys[1]));
    n.next_epoch();
    let epoch = n.epoch();
    let h = host.address;
    let (own, gpu0) = (lane_leaves(0, 20), lane_leaves(1, 30));
    // gpu-1 (lane 2) builds its tree from gpu-0's lane: the same nonces.
    let overlapping = lane_leaves(1, 25);

    let sample = n.exec(
        &keys[0],
        any_of(&node_commit_msg(&h, "gpu-1", epoch, &gpu0)),
    );
    assert_eq!(
        (sample.codespace.as_str(), sample.code),
        ("sprint", codes::WRONG_ML_NODE),
        "{}",
        sample.log
    );
    assert!(sample.log.contains("signs with"), "{}", sample.log);
    let r = n.exec(&keys[0], any_of(&commit_msg(&h, epoch, &own)));
    assert_eq!(r.code, codes::WRONG_ML_NODE, "{}", r.log);
    assert!(r.log.contains("name ml_node \"gpu-0\""), "{}", r.log);
    let r = n.exec(
        &keys[2],
        any_of(&node_commit_msg(&h, "gpu-9", epoch, &gpu0)),
    );
    assert_eq!(r.code, codes::ML_NODE_NOT_ENABLED, "{}", r.log);

    // The host's own worker (lane 0, signed here by the host), and both nodes.
    n.ok(any_of(&commit_msg(&h, epoch, &own)));
    n.exec_ok(
        &keys[0],
        any_of(&node_commit_msg(&h, "gpu-0", epoch, &gpu0)),
    );
    n.exec_ok(
        &keys[1],
        any_of(&node_commit_msg(&h, "gpu-1", epoch, &overlapping)),
    );
    n.until(Stage::SecretReveal);
    let reveals = vec![
        n.host_tx(any_of(&node_reveal_msg(&h, "", epoch))),
        n.exec_tx(&keys[0], any_of(&node_reveal_msg(&h, "gpu-0", epoch))),
        n.exec_tx(&keys[1], any_of(&node_reveal_msg(&h, "gpu-1", epoch))),
    ];
    n.block_ok(reveals);

    n.until(Stage::Open);
    let samples = kiln_sprint::state::sprint_params(&n.d.app.latest_view())
        .unwrap()
        .sprint_samples;
    let view = n.d.app.latest_view();
    let open_own = node_open_msg(&view, &h, "", epoch, &own, samples);
    let open_gpu0 = node_open_msg(&view, &h, "gpu-0", epoch, &gpu0, samples);
    let open_gpu1 = node_open_msg(&view, &h, "gpu-1", epoch, &overlapping, samples);
    drop(view);
    let opens = vec![
        n.host_tx(any_of(&open_own)),
        n.exec_tx(&keys[0], any_of(&open_gpu0)),
    ];
    n.block_ok(opens);
    let r = n.exec(&keys[1], any_of(&open_gpu1));
    assert_eq!(
        (r.codespace.as_str(), r.code),
        ("sprint", codes::NONCE_OUTSIDE_LANE),
        "an opening in another node's lane: {}",
        r.log
    );
    assert!(r.log.contains("outside lane 2"), "{}", r.log);

    // The host is the only one with weight: its own committee.
    let salt = [4u8; 32];
    n.until(Stage::VoteCommit);
    n.ok(any_of(&kiln_sprint::msgs::MsgSprintVoteCommit {
        voter: h.to_bech32(),
        epoch,
        host: h.to_bech32(),
        commitment: kiln_sprint::msgs::vote_commitment(
            CHAIN,
            epoch,
            h.as_bytes(),
            h.as_bytes(),
            true,
            &salt,
        )
        .to_vec(),
    }));
    n.until(Stage::VoteReveal);
    n.ok(any_of(&kiln_sprint::msgs::MsgSprintVoteReveal {
        voter: h.to_bech32(),
        epoch,
        host: h.to_bech32(),
        valid: true,
        salt: salt.to_vec(),
    }));
    n.until(Stage::Inference);
    let result = kiln_sprint::state::result(&n.d.app.latest_view(), epoch, &h)
        .unwrap()
        .expect("settled");
    assert!(result.accepted, "{result:?}");
    assert_eq!(result.claimed_count, 20 + 30 + 25);
    assert_eq!(
        result.raw_weight,
        20 + 30,
        "the counts of the units that opened"
    );
    let split: Vec<(&str, u64, bool, u64)> = result
        .nodes
        .iter()
        .map(|u| (u.ml_node.as_str(), u.claimed_count, u.opened, u.raw_weight))
        .collect();
    assert_eq!(
        split,
        vec![
            ("", 20, true, 20),
            ("gpu-0", 30, true, 30),
            ("gpu-1", 25, false, 0)
        ]
    );

    // Disabled from the next epoch: its sprint messages are refused.
    n.ok(switch(&host, "gpu-0", false));
    n.next_epoch();
    let epoch = n.epoch();
    let r = n.send(
        &host,
        any_of(&node_commit_msg(&h, "gpu-0", epoch, &lane_leaves(1, 5))),
    );
    assert_eq!(r.code, codes::ML_NODE_NOT_ENABLED, "{}", r.log);
    assert!(r.log.contains("disabled"), "{}", r.log);
    let r = n.exec(
        &keys[0],
        any_of(&node_commit_msg(&h, "gpu-0", epoch, &lane_leaves(1, 5))),
    );
    assert_ne!(r.code, 0, "a disabled node's key gets no duty");
    n.exec_ok(
        &keys[1],
        any_of(&node_commit_msg(&h, "gpu-1", epoch, &lane_leaves(2, 5))),
    );
}
