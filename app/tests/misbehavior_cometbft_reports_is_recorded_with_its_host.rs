//! Evidence CometBFT commits (FinalizeBlock's `misbehavior`) is recorded in
//! state with the host whose consensus key misbehaved, emitted as an event
//! and answered by `/kiln.staking.v1.Query/Misbehavior` (slashing acts on it
//! when staking arrives); an address the chain never gave CometBFT is kept
//! without a host. Today's code ignored the list.

use kiln_staking::misbehavior::{consensus_address, MisbehaviorRecord};
use kiln_testkit::{BlockDriver, TestKey, GENESIS_VALIDATOR_LABEL};
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{Misbehavior, MisbehaviorType, RequestQuery, Validator};

#[test]
fn misbehavior_cometbft_reports_is_recorded_with_its_host() {
    let user = TestKey::from_label("misbehavior-user");
    let genesis = BlockDriver::genesis_funding(&[&user], 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut driver = BlockDriver::open(dir.path(), "kiln-misbehavior", &genesis, 0).unwrap();
    driver.deliver(vec![]).unwrap();
    let key = driver.validators.keys().next().unwrap().clone();
    let address = consensus_address(&key);
    let evidence = vec![
        Misbehavior {
            r#type: MisbehaviorType::DuplicateVote as i32,
            validator: Some(Validator {
                address: address.to_vec().into(),
                power: 10,
            }),
            height: 1,
            time: None,
            total_voting_power: 10,
        },
        Misbehavior {
            r#type: MisbehaviorType::LightClientAttack as i32,
            validator: Some(Validator {
                address: vec![0xAB; 20].into(),
                power: 3,
            }),
            height: 1,
            time: None,
            total_voting_power: 10,
        },
    ];
    let out = driver
        .deliver_with_misbehavior(vec![], evidence.clone())
        .unwrap();
    let events: Vec<_> = out
        .response
        .events
        .iter()
        .filter(|e| e.r#type == "kiln.staking.v1.EventMisbehavior")
        .collect();
    assert_eq!(events.len(), 2, "{:?}", out.response.events);

    let answer = driver.app.query(RequestQuery {
        path: "/kiln.staking.v1.Query/Misbehavior".into(),
        ..Default::default()
    });
    assert_eq!(answer.code, 0, "{}", answer.log);
    let records: Vec<MisbehaviorRecord> = serde_json::from_slice(&answer.value).unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    let host = TestKey::from_label(GENESIS_VALIDATOR_LABEL).address;
    let double_sign = records.iter().find(|r| r.kind == "duplicate_vote").unwrap();
    assert_eq!(double_sign.host, Some(host));
    assert_eq!(double_sign.validator_address, hex::encode_upper(address));
    assert_eq!(
        (
            double_sign.misbehavior_height,
            double_sign.reported_height,
            double_sign.power
        ),
        (1, 2, 10)
    );
    let unknown = records
        .iter()
        .find(|r| r.kind == "light_client_attack")
        .unwrap();
    assert_eq!(unknown.host, None);
    driver.check_invariants().unwrap();

    // Replicas fed the same block agree (the record is consensus state).
    let dir2 = tempfile::tempdir().unwrap();
    let mut replica = BlockDriver::open(dir2.path(), "kiln-misbehavior", &genesis, 0).unwrap();
    replica.deliver(vec![]).unwrap();
    let same = replica
        .deliver_with_misbehavior(vec![], evidence.clone())
        .unwrap();
    assert_eq!(same.response.app_hash, out.response.app_hash);
    // ...and the evidence is part of the state: without it, another hash.
    let dir3 = tempfile::tempdir().unwrap();
    let mut other = BlockDriver::open(dir3.path(), "kiln-misbehavior", &genesis, 0).unwrap();
    other.deliver(vec![]).unwrap();
    let plain = other.deliver(vec![]).unwrap();
    assert_ne!(plain.response.app_hash, out.response.app_hash);
}
