//! kiln-node's CometBFT hashing rules checked against blocks produced by a
//! real CometBFT 0.38 node (fixtures from tendermint-rs).

use serde_json::Value;
use tendermint::{block, validator, Block, PublicKey};

use kiln_node::chain;

fn fixture(name: &str) -> (Block, block::Id) {
    let text = match name {
        "1" => include_str!("fixtures/block_at_height_1.json"),
        _ => include_str!("fixtures/block_at_height_10.json"),
    };
    let v: Value = serde_json::from_str(text).unwrap();
    let mut blk = v["result"]["block"].clone();
    // Go's empty LastCommit at the initial height
    if blk["last_commit"]["height"] == "0" {
        blk["last_commit"] = Value::Null;
    }
    (
        serde_json::from_value(blk).unwrap(),
        serde_json::from_value(v["result"]["block_id"].clone()).unwrap(),
    )
}

fn fixture_validator() -> validator::Info {
    let pk: PublicKey = serde_json::from_value(serde_json::json!({
        "type": "tendermint/PubKeyEd25519",
        "value": "bNNlGls5R25wC3Sd8720F/3+7IZBhXcD22MNFtPk/v0="
    }))
    .unwrap();
    validator::Info::new(pk, 10u32.into())
}

#[test]
fn block_id_header_hash_and_part_set_match_cometbft() {
    for name in ["1", "10"] {
        let (mut blk, want) = fixture(name);
        let (got, _) = chain::block_id(&blk);
        assert_eq!(got, want, "block {name}");
        if name == "1" {
            // the devnet builds its initial block with an explicit empty commit
            blk.last_commit = Some(chain::empty_commit());
            assert_eq!(chain::block_id(&blk).0, want);
        }
    }
}

#[test]
fn data_commit_validators_consensus_and_results_hashes_match_cometbft() {
    let (blk, _) = fixture("10");
    assert_eq!(blk.header.data_hash.unwrap(), chain::txs_hash(&blk.data));
    assert_eq!(
        blk.header.last_commit_hash.unwrap(),
        chain::commit_hash(blk.last_commit.as_ref())
    );
    assert_eq!(
        blk.header.validators_hash,
        chain::validators_hash(&[fixture_validator()])
    );
    // The fixture's chain ran CometBFT's own defaults (unlimited block
    // gas); Kiln's genesis sets a finite limit.
    let mut cometbft_default_params = kiln_node::home::default_consensus_params();
    cometbft_default_params["block"]["max_gas"] = serde_json::json!("-1");
    let params = kiln_node::home::parse_genesis(
        &serde_json::json!({
            "genesis_time": "2023-05-17T14:12:48.347696215Z",
            "chain_id": "dockerchain",
            "consensus_params": cometbft_default_params,
            "app_state": {}
        })
        .to_string(),
    )
    .unwrap()
    .consensus_params;
    assert_eq!(blk.header.consensus_hash, chain::params_hash(&params));
    assert_eq!(
        blk.header.last_results_hash.unwrap().as_bytes(),
        &chain::results_hash(&[])[..]
    );
    assert_eq!(blk.header.evidence_hash.unwrap(), chain::empty_hash());
    let (b1, _) = fixture("1");
    assert_eq!(
        b1.header.last_commit_hash.unwrap(),
        chain::commit_hash(None)
    );
}

#[test]
fn cometbft_commit_signature_verifies_with_our_sign_bytes() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let (blk, _) = fixture("10");
    let lc = blk.last_commit.unwrap();
    let bytes = chain::commit_sign_bytes(&"dockerchain".parse().unwrap(), &lc, 0).unwrap();
    let PublicKey::Ed25519(pk) = fixture_validator().pub_key else {
        panic!()
    };
    let vk = VerifyingKey::from_bytes(pk.as_bytes().try_into().unwrap()).unwrap();
    let block::CommitSig::BlockIdFlagCommit { signature, .. } = &lc.signatures[0] else {
        panic!()
    };
    let sig = Signature::from_slice(signature.as_ref().unwrap().as_bytes()).unwrap();
    vk.verify(&bytes, &sig)
        .expect("CometBFT's own signature verifies over our sign bytes");
}

#[test]
fn block_json_reproduces_cometbft_output_exactly() {
    for text in [
        include_str!("fixtures/block_at_height_1.json"),
        include_str!("fixtures/block_at_height_10.json"),
    ] {
        let v: Value = serde_json::from_str(text).unwrap();
        let want = v["result"]["block"].clone();
        let blk: Block = serde_json::from_value(want.clone()).unwrap();
        assert_eq!(kiln_node::devnet::block_json(&blk), want);
        let id: block::Id = serde_json::from_value(v["result"]["block_id"].clone()).unwrap();
        assert_eq!(serde_json::to_value(id).unwrap(), v["result"]["block_id"]);
    }
}
