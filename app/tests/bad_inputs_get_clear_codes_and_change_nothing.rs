//! Every bad input of the chain-core issue gets a precise code and leaves the
//! state (balances, sequences, app hash apart from block metadata) untouched.

use cosmos_sdk_proto::cosmos::tx::v1beta1::TxRaw;
use kiln_testkit::{msg_exec, msg_grant, msg_send, sign_tx, BlockDriver, TestKey, TxOptions};
use prost::Message;
use tendermint_abci::Application;

const CHAIN: &str = "kiln-test";

struct Fixture {
    _dir: tempfile::TempDir,
    driver: BlockDriver,
    alice: TestKey,
    bob: TestKey,
    hot: TestKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let alice = TestKey::from_label("alice");
    let bob = TestKey::from_label("bob");
    let hot = TestKey::from_label("alice-hot");
    let genesis = BlockDriver::genesis_funding(&[&alice, &bob, &hot], 1_000_000_000);
    let driver = BlockDriver::open(dir.path(), CHAIN, &genesis, 0).unwrap();
    Fixture {
        _dir: dir,
        driver,
        alice,
        bob,
        hot,
    }
}

/// Delivers `tx` in a block of its own and returns (code, codespace, log),
/// asserting that balances and the sender's sequence did not change.
fn deliver_expect_failure(
    sender: kiln_framework::Address,
    f: &mut Fixture,
    tx: Vec<u8>,
) -> (u32, String, String) {
    let before = (
        f.driver.balance(&f.alice.address),
        f.driver.balance(&f.bob.address),
        f.driver.balance(&f.hot.address),
        f.driver.account(&sender),
    );
    let check = f
        .driver
        .app
        .check_tx(tendermint_proto::v0_38::abci::RequestCheckTx {
            tx: tx.clone().into(),
            r#type: 0,
        });
    assert_ne!(check.code, 0, "CheckTx must refuse it too: {}", check.log);
    let out = f.driver.deliver(vec![tx]).unwrap();
    let result = &out.response.tx_results[0];
    assert_ne!(result.code, 0);
    assert!(!result.log.is_empty() && !result.codespace.is_empty());
    let after = (
        f.driver.balance(&f.alice.address),
        f.driver.balance(&f.bob.address),
        f.driver.balance(&f.hot.address),
        f.driver.account(&sender),
    );
    assert_eq!(
        before, after,
        "state changed after a failed tx: {}",
        result.log
    );
    (result.code, result.codespace.clone(), result.log.clone())
}

fn good_send(f: &Fixture, opts: &TxOptions) -> Vec<u8> {
    sign_tx(
        &f.alice,
        vec![msg_send(&f.alice.address, &f.bob.address, 10)],
        opts,
    )
}

#[test]
fn garbage_truncated_and_empty_bytes_are_decode_errors() {
    let mut f = fixture();
    let opts = f.driver.opts_for(&f.alice);
    let tx = good_send(&f, &opts);
    for bad in [vec![0xff, 0x00, 0x13], tx[..tx.len() / 2].to_vec(), vec![]] {
        let (code, space, log) = deliver_expect_failure(f.alice.address, &mut f, bad);
        assert_eq!((code, space.as_str()), (2, "sdk"), "{log}");
    }
}

#[test]
fn non_canonical_encodings_and_unknown_fields_are_rejected() {
    let mut f = fixture();
    let opts = f.driver.opts_for(&f.alice);
    let tx = good_send(&f, &opts);
    // An unknown field (number 15, varint) appended to TxRaw.
    let mut unknown = tx.clone();
    unknown.extend_from_slice(&[0x78, 0x01]);
    let (code, _, log) = deliver_expect_failure(f.alice.address, &mut f, unknown);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("non-canonical"), "{log}");
    // Fields out of order: signatures before body.
    let raw = TxRaw::decode(tx.as_slice()).unwrap();
    let mut reordered = Vec::new();
    prost::encoding::bytes::encode(3, &raw.signatures[0], &mut reordered);
    prost::encoding::bytes::encode(1, &raw.body_bytes, &mut reordered);
    prost::encoding::bytes::encode(2, &raw.auth_info_bytes, &mut reordered);
    let (code, _, log) = deliver_expect_failure(f.alice.address, &mut f, reordered);
    assert_eq!(code, 2, "{log}");
    // A non-minimal varint length inside the body (0x80 0x00 style padding).
    let mut padded_body = vec![0x0a];
    let msg_len = raw.body_bytes[1];
    padded_body.push(msg_len | 0x80);
    padded_body.push(0x00);
    padded_body.extend_from_slice(&raw.body_bytes[2..]);
    let bad = TxRaw {
        body_bytes: padded_body,
        ..raw.clone()
    }
    .encode_to_vec();
    let (code, _, log) = deliver_expect_failure(f.alice.address, &mut f, bad);
    assert_eq!(code, 2, "{log}");
}

#[test]
fn wrong_chain_id_fails_signature_verification() {
    let mut f = fixture();
    let mut opts = f.driver.opts_for(&f.alice);
    opts.chain_id = "some-other-chain".into();
    let tx = good_send(&f, &opts);
    let (code, _, log) = deliver_expect_failure(f.alice.address, &mut f, tx);
    assert_eq!(code, 4, "{log}");
    assert!(log.contains("signature verification failed"), "{log}");
}

#[test]
fn replayed_sequence_is_refused() {
    let mut f = fixture();
    let opts = f.driver.opts_for(&f.alice);
    let tx = good_send(&f, &opts);
    let out = f.driver.deliver(vec![tx.clone()]).unwrap();
    assert_eq!(
        out.response.tx_results[0].code, 0,
        "{}",
        out.response.tx_results[0].log
    );
    let (code, _, log) = deliver_expect_failure(f.alice.address, &mut f, tx);
    assert_eq!(code, 32, "{log}");
    assert!(log.contains("expected 1, got 0"), "{log}");
}

#[test]
fn high_s_signature_is_refused() {
    let mut f = fixture();
    let opts = f.driver.opts_for(&f.alice);
    let tx = good_send(&f, &opts);
    let mut raw = TxRaw::decode(tx.as_slice()).unwrap();
    // s' = n - s is a valid but high-S twin of the signature.
    let sig = k256::ecdsa::Signature::from_slice(&raw.signatures[0]).unwrap();
    let (r, s) = sig.split_scalars();
    let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    assert!(
        high.normalize_s().is_some(),
        "constructed signature must be high-S"
    );
    raw.signatures[0] = high.to_bytes().to_vec();
    let (code, _, log) = deliver_expect_failure(f.alice.address, &mut f, raw.encode_to_vec());
    assert_eq!(code, 4, "{log}");
    assert!(log.contains("high-S"), "{log}");
}

#[test]
fn insufficient_fee_is_refused() {
    let mut f = fixture();
    let mut opts = f.driver.opts_for(&f.alice);
    opts.fee = 4_999; // 200 000 gas × 0.025 = 5 000
    let tx = good_send(&f, &opts);
    let (code, _, log) = deliver_expect_failure(f.alice.address, &mut f, tx);
    assert_eq!(code, 13, "{log}");
    assert!(log.contains("required at least 5000ukiln"), "{log}");
}

#[test]
fn hot_key_cannot_move_granter_funds_through_exec() {
    let mut f = fixture();
    // Alice grants the hot key every ML-ops message type, and nothing else.
    let grants: Vec<_> = kiln_messages::ml_ops_type_urls()
        .iter()
        .map(|url| msg_grant(&f.alice.address, &f.hot.address, url, None))
        .collect();
    let opts = f.driver.opts_for(&f.alice);
    let out = f
        .driver
        .deliver(vec![sign_tx(&f.alice, grants, &opts)])
        .unwrap();
    assert_eq!(
        out.response.tx_results[0].code, 0,
        "{}",
        out.response.tx_results[0].log
    );

    let steal = msg_exec(
        &f.hot.address,
        vec![msg_send(&f.alice.address, &f.hot.address, 1_000)],
    );
    let hot_opts = f.driver.opts_for(&f.hot);
    let tx = sign_tx(&f.hot, vec![steal], &hot_opts);
    let alice_before = f.driver.balance(&f.alice.address);
    let out = f.driver.deliver(vec![tx]).unwrap();
    let result = &out.response.tx_results[0];
    assert_eq!(result.code, 4, "{}", result.log);
    assert!(
        result.log.contains("authorization not found"),
        "{}",
        result.log
    );
    assert_eq!(
        f.driver.balance(&f.alice.address),
        alice_before,
        "the granter's funds moved"
    );
}

#[test]
fn expired_grant_is_refused() {
    let mut f = fixture();
    let send_url = kiln_bank::handler::MSG_SEND_TYPE_URL;
    // Expires two seconds (= two blocks) after the next block.
    let expiry = kiln_testkit::GENESIS_TIME + 3;
    let opts = f.driver.opts_for(&f.alice);
    let out = f
        .driver
        .deliver(vec![sign_tx(
            &f.alice,
            vec![msg_grant(
                &f.alice.address,
                &f.bob.address,
                send_url,
                Some(expiry),
            )],
            &opts,
        )])
        .unwrap();
    assert_eq!(
        out.response.tx_results[0].code, 0,
        "{}",
        out.response.tx_results[0].log
    );
    // While valid, the grant works.
    let bob_opts = f.driver.opts_for(&f.bob);
    let exec = msg_exec(
        &f.bob.address,
        vec![msg_send(&f.alice.address, &f.bob.address, 7)],
    );
    let out = f
        .driver
        .deliver(vec![sign_tx(&f.bob, vec![exec.clone()], &bob_opts)])
        .unwrap();
    assert_eq!(
        out.response.tx_results[0].code, 0,
        "{}",
        out.response.tx_results[0].log
    );
    f.driver.deliver(vec![]).unwrap();
    // After expiry: refused, nothing moves.
    let bob_opts = f.driver.opts_for(&f.bob);
    let alice_before = f.driver.balance(&f.alice.address);
    let out = f
        .driver
        .deliver(vec![sign_tx(&f.bob, vec![exec], &bob_opts)])
        .unwrap();
    let result = &out.response.tx_results[0];
    assert_eq!(result.code, 4, "{}", result.log);
    assert!(result.log.contains("expired"), "{}", result.log);
    assert_eq!(f.driver.balance(&f.alice.address), alice_before);
}

#[test]
fn a_successful_send_moves_coins_and_charges_the_fee() {
    let mut f = fixture();
    let opts = f.driver.opts_for(&f.alice);
    let (a0, b0) = (
        f.driver.balance(&f.alice.address),
        f.driver.balance(&f.bob.address),
    );
    let out = f.driver.deliver(vec![good_send(&f, &opts)]).unwrap();
    let r = &out.response.tx_results[0];
    assert_eq!(r.code, 0, "{}", r.log);
    assert!(r.gas_used > 0 && r.gas_used <= r.gas_wanted);
    assert!(r.events.iter().any(|e| e.r#type == "transfer"));
    assert_eq!(f.driver.balance(&f.alice.address), a0 - 10 - 5_000);
    assert_eq!(f.driver.balance(&f.bob.address), b0 + 10);
    assert_eq!(f.driver.account(&f.alice.address).unwrap().1, 1);
}

#[test]
fn several_txs_from_one_account_fit_in_one_block() {
    let mut f = fixture();
    let mut opts = f.driver.opts_for(&f.alice);
    for _ in 0..5 {
        let tx = good_send(&f, &opts);
        let check = f.driver.submit(tx);
        assert_eq!(check.code, 0, "{}", check.log);
        opts.sequence += 1;
    }
    let out = f.driver.produce_block().unwrap();
    assert_eq!(out.included.len(), 5);
    assert!(out.response.tx_results.iter().all(|r| r.code == 0));
    assert_eq!(f.driver.account(&f.alice.address).unwrap().1, 5);
}

#[test]
fn message_failure_keeps_fee_and_sequence_but_reverts_the_message() {
    let mut f = fixture();
    let opts = f.driver.opts_for(&f.alice);
    let a0 = f.driver.balance(&f.alice.address);
    let tx = sign_tx(
        &f.alice,
        vec![msg_send(&f.alice.address, &f.bob.address, 10_000_000_000)],
        &opts,
    );
    let out = f.driver.deliver(vec![tx]).unwrap();
    let r = &out.response.tx_results[0];
    assert_eq!(r.code, 5, "{}", r.log);
    assert_eq!(f.driver.balance(&f.alice.address), a0 - 5_000);
    assert_eq!(f.driver.account(&f.alice.address).unwrap().1, 1);
}

#[test]
fn malformed_genesis_is_a_clear_error() {
    let err =
        kiln_genesis::AppGenesis::from_json_bytes(br#"{"bank": {"balances": 7}}"#).unwrap_err();
    assert!(
        err.to_string().contains("genesis app_state is invalid"),
        "{err}"
    );
}
