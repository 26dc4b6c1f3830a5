//! `abci_query` as a light client uses it: Cosmos query paths at past heights,
//! raw-key reads with `prove=true` whose JMT proof verifies against the app
//! hash of that height, and pruned heights refused with a clear error.

use cosmos_sdk_proto::cosmos::bank::v1beta1::{QueryBalanceRequest, QueryBalanceResponse};
use kiln_testkit::{msg_send, sign_tx, BlockDriver, TestKey};
use prost::Message;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::RequestQuery;

fn balance_at(d: &BlockDriver, who: &TestKey, height: i64) -> Result<u128, String> {
    let data = QueryBalanceRequest {
        address: who.address.to_bech32(),
        denom: "ukiln".into(),
    }
    .encode_to_vec();
    let r = d.app.query(RequestQuery {
        path: "/cosmos.bank.v1beta1.Query/Balance".into(),
        data: data.into(),
        height,
        prove: false,
    });
    if r.code != 0 {
        return Err(r.log);
    }
    Ok(QueryBalanceResponse::decode(r.value.as_ref())
        .unwrap()
        .balance
        .unwrap()
        .amount
        .parse()
        .unwrap())
}

#[test]
fn past_heights_proofs_and_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let alice = TestKey::from_label("q-alice");
    let bob = TestKey::from_label("q-bob");
    // Keep 5 recent versions.
    let mut d = BlockDriver::open(
        dir.path(),
        "kiln-query",
        &BlockDriver::genesis_funding(&[&alice], 1_000_000_000),
        5,
    )
    .unwrap();
    let mut hashes = vec![Vec::new()];
    for i in 0..12u128 {
        let o = d.opts_for(&alice);
        d.deliver(vec![sign_tx(
            &alice,
            vec![msg_send(&alice.address, &bob.address, 100 + i)],
            &o,
        )])
        .unwrap();
        hashes.push(d.last_app_hash.clone());
    }
    // Bob received 100, 101, ... 111 at heights 1..12.
    assert_eq!(balance_at(&d, &bob, 0).unwrap(), (100..112).sum::<u128>());
    assert_eq!(balance_at(&d, &bob, 10).unwrap(), (100..110).sum::<u128>());
    let err = balance_at(&d, &bob, 2).unwrap_err();
    assert!(err.contains("not available"), "{err}");
    let err = balance_at(&d, &bob, 99).unwrap_err();
    assert!(err.contains("future"), "{err}");

    // Raw key with proof at height 11, checked against that height's app hash.
    let key = [b"bank/bal/".as_slice(), bob.address.as_bytes(), b"ukiln"].concat();
    let r = d.app.query(RequestQuery {
        path: "/store/kiln/key".into(),
        data: key.clone().into(),
        height: 11,
        prove: true,
    });
    assert_eq!(r.code, 0, "{}", r.log);
    let proof = &r.proof_ops.as_ref().unwrap().ops[0];
    assert_eq!(proof.r#type, kiln_app::query::PROOF_OP_TYPE);
    let root: [u8; 32] = hashes[11].clone().try_into().unwrap();
    assert!(kiln_store::verify_proof(
        &root,
        &key,
        Some(r.value.as_ref()),
        &proof.data
    ));
    // The same proof does not verify a different value or another height's root.
    assert!(!kiln_store::verify_proof(
        &root,
        &key,
        Some(b"forged".as_slice()),
        &proof.data
    ));
    let other: [u8; 32] = hashes[12].clone().try_into().unwrap();
    assert!(!kiln_store::verify_proof(
        &other,
        &key,
        Some(r.value.as_ref()),
        &proof.data
    ));
    // Absence proofs work too.
    let missing = b"bank/bal/nobody".to_vec();
    let r = d.app.query(RequestQuery {
        path: "/store/kiln/key".into(),
        data: missing.clone().into(),
        height: 11,
        prove: true,
    });
    assert_eq!(r.code, 0);
    assert!(r.value.is_empty());
    assert!(kiln_store::verify_proof(
        &root,
        &missing,
        None,
        &r.proof_ops.unwrap().ops[0].data
    ));
    // Unknown paths are refused clearly.
    let r = d.app.query(RequestQuery {
        path: "/nope".into(),
        ..Default::default()
    });
    assert_eq!(r.code, 6, "{}", r.log);
}
