//! A host rotating its consensus key (MsgUpdateHost) leaves CometBFT's
//! validator set under the old key and joins it under the new one in the
//! same update list, so the old key stops signing at H + 2 and the two keys
//! never hold power together; rotating again and again never stacks power,
//! two rotations in one block and a rotation back to an earlier key collapse
//! into the net change, and no update ever removes a key CometBFT does not
//! have. The test kit applies every update list with CometBFT 0.38's rules
//! (a list CometBFT refuses fails the block).

use std::collections::BTreeMap;

use kiln_staking::StakingExt;
use kiln_testkit::{BlockDriver, ConsensusTestKey, TestKey};
use tendermint_proto::v0_38::abci::ValidatorUpdate;
use tendermint_proto::v0_38::crypto::public_key::Sum;

const CHAIN: &str = "kiln-rotation";
const URL: &str = "http://alice.example:8080";

fn updates(list: &[ValidatorUpdate]) -> BTreeMap<Vec<u8>, i64> {
    list.iter()
        .map(|u| match u.pub_key.as_ref().and_then(|k| k.sum.as_ref()) {
            Some(Sum::Ed25519(k)) => (k.to_vec(), u.power),
            other => panic!("not an ed25519 update: {other:?}"),
        })
        .collect()
}

fn set(entries: &[(&ConsensusTestKey, u64)]) -> BTreeMap<Vec<u8>, u64> {
    entries
        .iter()
        .map(|(k, p)| (k.public.to_vec(), *p))
        .collect()
}

#[test]
fn rotating_a_consensus_key_removes_the_old_validator() {
    let dir = tempfile::tempdir().unwrap();
    let alice = TestKey::from_label("rotation-alice");
    let keys: Vec<ConsensusTestKey> = (0..4)
        .map(|i| ConsensusTestKey::from_label(&format!("rotation-alice-{i}")))
        .collect();
    let genesis_validator = ConsensusTestKey::from_label(kiln_testkit::GENESIS_VALIDATOR_LABEL);
    let mut g = kiln_genesis::AppGenesis::default();
    g.add_balance(
        alice.address,
        vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
    );
    kiln_testkit::add_genesis_validator(&mut g);
    g.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: alice.address,
        worker_url: URL.into(),
        consensus_pubkey: hex::encode(keys[0].public),
        models: vec![],
        hardware: "cpu".into(),
        weight: 10,
    });
    let mut d =
        BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();
    assert_eq!(
        d.validators,
        set(&[(&keys[0], 10), (&genesis_validator, 10)])
    );

    // Rotate 0 → 1: one list with {old, 0} and {new, 10}.
    let out = d
        .deliver_ok(
            &alice,
            vec![keys[1].msg_rotate_to(CHAIN, &alice.address, URL)],
        )
        .unwrap();
    let h = out.height;
    assert_eq!(
        updates(&out.response.validator_updates),
        [(keys[0].public.to_vec(), 0), (keys[1].public.to_vec(), 10)]
            .into_iter()
            .collect()
    );
    assert_eq!(
        d.validators,
        set(&[(&keys[1], 10), (&genesis_validator, 10)])
    );
    d.check_invariants().unwrap();
    // The old key signs H and H + 1, the new key from H + 2; never both.
    let view = d.app.latest_view();
    for (height, signer) in [(h, &keys[0]), (h + 1, &keys[0]), (h + 2, &keys[1])] {
        let signing = view.consensus_validators(height).unwrap();
        let alice_keys: Vec<&Vec<u8>> = signing
            .iter()
            .filter(|(_, v)| v.owner == alice.address)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(alice_keys, vec![&signer.public.to_vec()], "height {height}");
        assert_eq!(view.consensus_powers(height).unwrap()[&alice.address], 10);
    }

    // Rotate every block, back and forth: power never stacks.
    for round in 0..6 {
        let next = &keys[(round % 3) + 1];
        let prev_block_key = d
            .validators
            .keys()
            .find(|k| **k != genesis_validator.public.to_vec())
            .cloned()
            .unwrap();
        let out = d
            .deliver_ok(&alice, vec![next.msg_rotate_to(CHAIN, &alice.address, URL)])
            .unwrap();
        let u = updates(&out.response.validator_updates);
        if prev_block_key == next.public.to_vec() {
            assert!(
                u.is_empty(),
                "rotating to the current key changes nothing: {u:?}"
            );
        } else {
            assert_eq!(u.len(), 2, "{u:?}");
            assert_eq!(u[&prev_block_key], 0);
            assert_eq!(u[&next.public.to_vec()], 10);
        }
        assert_eq!(d.validators, set(&[(next, 10), (&genesis_validator, 10)]));
        assert_eq!(d.validators.values().sum::<u64>(), 20, "power never stacks");
        d.check_invariants().unwrap();
    }

    // Two rotations in one block (1 → 2 → 3, the middle key never given):
    // the net change only.
    let current = d
        .validators
        .keys()
        .find(|k| **k != genesis_validator.public.to_vec())
        .cloned()
        .unwrap();
    let (a, b) = if current == keys[2].public.to_vec() {
        (&keys[3], &keys[0])
    } else {
        (&keys[2], &keys[0])
    };
    let out = d
        .deliver_ok(
            &alice,
            vec![
                a.msg_rotate_to(CHAIN, &alice.address, URL),
                b.msg_rotate_to(CHAIN, &alice.address, URL),
            ],
        )
        .unwrap();
    assert_eq!(
        updates(&out.response.validator_updates),
        [(current.clone(), 0), (b.public.to_vec(), 10)]
            .into_iter()
            .collect(),
        "the intermediate key is never given to CometBFT"
    );
    assert_eq!(d.validators, set(&[(b, 10), (&genesis_validator, 10)]));

    // Rotating away and back within one block: no update at all.
    let out = d
        .deliver_ok(
            &alice,
            vec![
                keys[1].msg_rotate_to(CHAIN, &alice.address, URL),
                b.msg_rotate_to(CHAIN, &alice.address, URL),
            ],
        )
        .unwrap();
    assert!(out.response.validator_updates.is_empty());
    d.check_invariants().unwrap();

    // A few empty blocks: no update is ever emitted without a change, and
    // the signing set at every height is the final one.
    for _ in 0..3 {
        assert!(d
            .produce_block()
            .unwrap()
            .response
            .validator_updates
            .is_empty());
    }
    let view = d.app.latest_view();
    assert_eq!(
        view.consensus_validators(d.height)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.power))
            .collect::<BTreeMap<_, _>>(),
        set(&[(b, 10), (&genesis_validator, 10)])
    );
}

#[test]
fn rotating_to_a_key_without_its_proof_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let alice = TestKey::from_label("rotation-alice");
    let mut g = kiln_genesis::AppGenesis::default();
    g.add_balance(
        alice.address,
        vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
    );
    let k0 = ConsensusTestKey::from_label("rotation-alice-0");
    g.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: alice.address,
        worker_url: URL.into(),
        consensus_pubkey: hex::encode(k0.public),
        models: vec![],
        hardware: "cpu".into(),
        weight: 10,
    });
    let mut d =
        BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();
    let victim = ConsensusTestKey::from_label("someone-else");
    let stranger = ConsensusTestKey::from_label("stranger");
    // Alice names the victim's key but can only sign with a key she holds.
    let msg = kiln_testkit::any_of(&kiln_hosts::msgs::MsgUpdateHost {
        owner: alice.address.to_string(),
        worker_url: URL.into(),
        consensus_pubkey: victim.public.to_vec(),
        models: vec![],
        hardware: String::new(),
        consensus_key_proof: stranger.proof(CHAIN, &alice.address),
    });
    let opts = d.opts_for(&alice);
    let out = d
        .deliver(vec![kiln_testkit::sign_tx(&alice, vec![msg], &opts)])
        .unwrap();
    let r = &out.response.tx_results[0];
    assert_eq!(
        (r.codespace.as_str(), r.code),
        ("hosts", kiln_hosts::handler::codes::BAD_CONSENSUS_KEY_PROOF),
        "{}",
        r.log
    );
    assert!(out.response.validator_updates.is_empty());
    assert_eq!(d.validators, set(&[(&k0, 10)]));
}
