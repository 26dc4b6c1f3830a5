//! Issue 14, "An upgrade": a `MsgSoftwareUpgrade` passes governance; at its
//! height
//! - a build that does not know the upgrade halts before finalizing the
//!   block, writes cosmovisor's `upgrade-info.json` (`name`, `height`,
//!   `info`) and, restarted, halts at the same block again (nothing of it
//!   was committed);
//! - two replicas of a build with the upgrade's handler run its migration
//!   (doubling governance's minimum deposit), record the upgrade as
//!   applied and go on, agreeing on every app hash;
//! - the old build refuses to start on the upgraded state;
//! - a cancelled plan never halts anything.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::gov::v1::{MsgSubmitProposal, MsgVote};
use cosmos_sdk_proto::cosmos::upgrade::v1beta1::{MsgCancelUpgrade, MsgSoftwareUpgrade, Plan};
use cosmos_sdk_proto::Any;
use kiln_app::upgrades::{UpgradeHandlers, TEST_UPGRADE_NAME};
use kiln_framework::params::gov_authority;
use kiln_framework::{Coin, BASE_DENOM};
use kiln_testkit::{any_of, sign_tx, BlockDriver, TestKey};
use serde_json::Value;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::RequestQuery;

const CHAIN: &str = "kiln-upgrade";
const KILN: u128 = 1_000_000;

fn genesis(hosts: &[TestKey]) -> Value {
    let mut g = kiln_genesis::AppGenesis::with_devnet_params();
    for (i, (h, weight)) in hosts.iter().zip([60u64, 40]).enumerate() {
        g.add_balance(h.address, vec![Coin::new(BASE_DENOM, 100 * KILN)]);
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: h.address,
            worker_url: format!("http://host{i}.test:8080"),
            consensus_pubkey: hex::encode([i as u8 + 1; 32]),
            models: vec![],
            hardware: "test".into(),
            weight,
        });
    }
    serde_json::to_value(&g).unwrap()
}

fn query(d: &BlockDriver, path: &str, data: &str) -> Value {
    let r = d.app.query(RequestQuery {
        path: path.into(),
        data: data.as_bytes().to_vec().into(),
        height: 0,
        prove: false,
    });
    assert_eq!(r.code, 0, "{path}: {}", r.log);
    serde_json::from_slice(&r.value).unwrap()
}

fn ok(d: &mut BlockDriver, key: &TestKey, msg: Any) -> tendermint_proto::v0_38::abci::ExecTxResult {
    let tx = sign_tx(key, vec![msg], &d.opts_for(key));
    let r = d.deliver(vec![tx]).unwrap().response.tx_results[0].clone();
    assert_eq!(r.code, 0, "{}", r.log);
    d.check_invariants().unwrap();
    r
}

/// Passes a proposal carrying `messages` with both hosts' votes; returns
/// the height its voting ended at.
fn pass(d: &mut BlockDriver, hosts: &[TestKey], messages: Vec<Any>) {
    let r = ok(
        d,
        &hosts[0],
        any_of(&MsgSubmitProposal {
            messages,
            initial_deposit: vec![ProtoCoin {
                denom: BASE_DENOM.into(),
                amount: (10 * KILN).to_string(),
            }],
            proposer: hosts[0].address.to_bech32(),
            metadata: String::new(),
            title: "upgrade".into(),
            summary: "the test upgrade".into(),
            expedited: false,
        }),
    );
    let id: u64 = r
        .events
        .iter()
        .find(|e| e.r#type == "submit_proposal")
        .and_then(|e| e.attributes.iter().find(|a| a.key == "proposal_id"))
        .map(|a| a.value.parse().unwrap())
        .unwrap();
    for h in hosts {
        ok(
            d,
            h,
            any_of(&MsgVote {
                proposal_id: id,
                voter: h.address.to_bech32(),
                option: 1,
                metadata: String::new(),
            }),
        );
    }
    let end = query(d, kiln_gov::PROPOSAL_PATH, &id.to_string())["voting_end_height"]
        .as_u64()
        .unwrap();
    while d.height < end {
        d.deliver(vec![]).unwrap();
    }
    let p = query(d, kiln_gov::PROPOSAL_PATH, &id.to_string());
    assert_eq!(p["status"], "passed", "{p}");
}

fn upgrade_msg(name: &str, height: u64) -> Any {
    any_of(&MsgSoftwareUpgrade {
        authority: gov_authority().to_bech32(),
        plan: Some(Plan {
            name: name.into(),
            height: height as i64,
            info: "{\"binaries\":{}}".into(),
            ..Default::default()
        }),
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn new_build() -> UpgradeHandlers {
    UpgradeHandlers::default().with(TEST_UPGRADE_NAME, kiln_app::upgrades::test_migration)
}

#[test]
fn old_builds_halt_at_the_height_and_new_builds_migrate_in_agreement() {
    let hosts: Vec<TestKey> = (0..2)
        .map(|i| TestKey::from_label(&format!("upgrade-host-{i}")))
        .collect();
    let g = genesis(&hosts);
    let root = tempfile::tempdir().unwrap();
    let chain_dir = root.path().join("chain");
    let upgrade_height;
    {
        let mut d = BlockDriver::open(&chain_dir, CHAIN, &g, 0).unwrap();
        d.deliver(vec![]).unwrap();
        upgrade_height = d.height + 40;
        pass(
            &mut d,
            &hosts,
            vec![upgrade_msg(TEST_UPGRADE_NAME, upgrade_height)],
        );
        let up = query(&d, kiln_gov::UPGRADE_PATH, "");
        assert_eq!(up["plan"]["name"], TEST_UPGRADE_NAME, "{up}");
        assert_eq!(up["plan"]["height"], upgrade_height);
        while d.height < upgrade_height - 1 {
            d.deliver(vec![]).unwrap();
        }
        assert_eq!(
            query(&d, "/kiln.gov.v1.Query/Params", "")["params"]["min_deposit"],
            (10 * KILN).to_string()
        );
    }
    let (old_dir, new_a, new_b) = (
        root.path().join("old"),
        root.path().join("new-a"),
        root.path().join("new-b"),
    );
    for dir in [&old_dir, &new_a, &new_b] {
        copy_dir(&chain_dir, dir);
    }

    // The old build halts at the upgrade height, before finalizing it.
    let info_dir = root.path().join("home-data");
    for attempt in 0..2 {
        let mut old = BlockDriver::open(&old_dir, CHAIN, &g, 0).unwrap();
        assert_eq!(
            old.height,
            upgrade_height - 1,
            "attempt {attempt}: nothing was committed"
        );
        old.app = old.app.clone().with_upgrade_info_dir(&info_dir);
        let halted = std::panic::catch_unwind(AssertUnwindSafe(|| old.deliver(vec![])));
        let message = match halted {
            Ok(_) => panic!("the old build finalized the upgrade block"),
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        };
        assert!(
            message.contains(&format!(
                "UPGRADE \"{TEST_UPGRADE_NAME}\" NEEDED at height {upgrade_height}"
            )),
            "{message}"
        );
        let info: Value =
            serde_json::from_slice(&std::fs::read(info_dir.join("upgrade-info.json")).unwrap())
                .unwrap();
        assert_eq!(info["name"], TEST_UPGRADE_NAME);
        assert_eq!(info["height"], upgrade_height);
        assert_eq!(info["info"], "{\"binaries\":{}}");
    }

    // Two replicas of the new build migrate and agree.
    let mut a = BlockDriver::open_with_upgrades(&new_a, CHAIN, &g, 0, new_build()).unwrap();
    let mut b = BlockDriver::open_with_upgrades(&new_b, CHAIN, &g, 0, new_build()).unwrap();
    for _ in 0..5 {
        let ra = a.deliver(vec![]).unwrap();
        let rb = b.deliver(vec![]).unwrap();
        assert_eq!(
            ra.response.app_hash, rb.response.app_hash,
            "height {}",
            ra.height
        );
        if ra.height == upgrade_height {
            assert!(ra
                .response
                .events
                .iter()
                .any(|e| e.r#type == "kiln.gov.v1.EventUpgradeApplied"));
        }
        a.check_invariants().unwrap();
    }
    let params = query(&a, "/kiln.gov.v1.Query/Params", "");
    assert_eq!(
        params["params"]["min_deposit"],
        (20 * KILN).to_string(),
        "migrated"
    );
    let up = query(&a, kiln_gov::UPGRADE_PATH, "");
    assert!(up["plan"].is_null(), "{up}");
    assert_eq!(up["applied"][0]["name"], TEST_UPGRADE_NAME);
    assert_eq!(up["applied"][0]["height"], upgrade_height);
    drop(a);

    // The old build refuses the upgraded state.
    let refused = BlockDriver::open(&new_a, CHAIN, &g, 0)
        .err()
        .expect("the old build opened an upgraded state");
    assert!(
        refused.to_string().contains("refusing to start")
            && refused.to_string().contains(TEST_UPGRADE_NAME),
        "{refused}"
    );
}

#[test]
fn a_cancelled_upgrade_never_halts() {
    let hosts: Vec<TestKey> = (0..2)
        .map(|i| TestKey::from_label(&format!("cancel-host-{i}")))
        .collect();
    let g = genesis(&hosts);
    let dir = tempfile::tempdir().unwrap();
    let mut d = BlockDriver::open(dir.path(), CHAIN, &g, 0).unwrap();
    d.deliver(vec![]).unwrap();
    let height = d.height + 80;
    pass(&mut d, &hosts, vec![upgrade_msg("never", height)]);
    assert_eq!(
        query(&d, kiln_gov::UPGRADE_PATH, "")["plan"]["name"],
        "never"
    );
    pass(
        &mut d,
        &hosts,
        vec![any_of(&MsgCancelUpgrade {
            authority: gov_authority().to_bech32(),
        })],
    );
    assert!(query(&d, kiln_gov::UPGRADE_PATH, "")["plan"].is_null());
    while d.height <= height + 1 {
        d.deliver(vec![]).unwrap();
    }
    // A plan at a past height is refused.
    let r = {
        let msg = any_of(&MsgSubmitProposal {
            messages: vec![upgrade_msg("late", 1)],
            initial_deposit: vec![ProtoCoin {
                denom: BASE_DENOM.into(),
                amount: (10 * KILN).to_string(),
            }],
            proposer: hosts[0].address.to_bech32(),
            metadata: String::new(),
            title: "late".into(),
            summary: String::new(),
            expedited: false,
        });
        let tx = sign_tx(&hosts[0], vec![msg], &d.opts_for(&hosts[0]));
        d.deliver(vec![tx]).unwrap().response.tx_results[0].clone()
    };
    // Submitting is fine (the height is checked when it executes)...
    assert_eq!(r.code, 0, "{}", r.log);
    // ...and names with a path separator are refused at once.
    let tx = sign_tx(
        &hosts[0],
        vec![any_of(&MsgSubmitProposal {
            messages: vec![upgrade_msg("../evil", height + 500)],
            initial_deposit: vec![],
            proposer: hosts[0].address.to_bech32(),
            metadata: String::new(),
            title: "evil".into(),
            summary: String::new(),
            expedited: false,
        })],
        &d.opts_for(&hosts[0]),
    );
    let r = d.deliver(vec![tx]).unwrap().response.tx_results[0].clone();
    assert_ne!(r.code, 0);
    assert!(r.log.contains("directory name"), "{}", r.log);
}
