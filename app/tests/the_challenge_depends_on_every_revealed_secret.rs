//! SPEC §4 "Challenge and opening", in the exact form of the README's
//! protocol notes: at the challenge block the chain computes once
//! `beacon = SHA256("kiln/beacon/v1" ‖ challenge block hash ‖ every revealed
//! secret in host-address order)`, and each host's challenge is
//! `SHA256(beacon ‖ addr)`. So the sample depends on every revealed secret
//! (a block proposer grinding the challenge block's hash alone no longer
//! chooses it), a secret that was not revealed does not enter, and an
//! opening drawn from the block hash alone (the old rule) is refused.

mod common;

use common::{at, shares, Net};
use kiln_epochs::{EpochExt, Stage};
use kiln_sprint::handler::codes;
use kiln_sprint::msgs::MsgSprintOpen;
use kiln_sprint_protocol::challenge::{challenge_seed, sample_indices};
use kiln_testkit::any_of;
use kiln_testkit::sprint::{
    commit_msg, host_challenge, open_msg, opened_leaves, reveal_msg, test_secret,
};
use sha2::{Digest, Sha256};

fn beacon_of(block_hash: &[u8], secrets: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"kiln/beacon/v1");
    h.update(block_hash);
    for s in secrets {
        h.update(s);
    }
    h.finalize().into()
}

#[test]
fn the_challenge_depends_on_every_revealed_secret() {
    let mut net = Net::new("beacon", 4, 16);
    let leaves = shares(200, 3);
    let addrs: Vec<_> = net.hosts.iter().map(|h| h.addr()).collect();
    let txs = (0..4)
        .map(|i| net.exec(i, vec![any_of(&commit_msg(&addrs[i], 1, &leaves))]))
        .collect();
    net.deliver_ok(txs);
    // Hosts 0, 1 and 2 reveal; host 3 does not.
    net.until(at(Stage::SecretReveal));
    let txs = (0..3)
        .map(|i| net.exec(i, vec![any_of(&reveal_msg(&addrs[i], 1))]))
        .collect();
    net.deliver_ok(txs);
    net.until(at(Stage::Open));

    let view = net.d.app.latest_view();
    let block_hash = view.challenge_block_hash(1).unwrap().unwrap();
    let mut revealed: Vec<_> = addrs[..3].to_vec();
    revealed.sort();
    let secrets: Vec<[u8; 32]> = revealed.iter().map(|a| test_secret(a, 1)).collect();
    let beacon = beacon_of(&block_hash, &secrets);
    assert_eq!(
        kiln_sprint::beacon::beacon(&view, 1).unwrap(),
        Some(beacon),
        "beacon = SHA256(tag ‖ challenge block hash ‖ revealed secrets in address order)"
    );
    for a in &addrs {
        let mut h = Sha256::new();
        h.update(beacon);
        h.update(a.as_bytes());
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(
            host_challenge(&view, 1, a),
            expected,
            "challenge = SHA256(beacon ‖ addr)"
        );
    }

    // Every revealed secret matters: changing or dropping any one of them,
    // or adding the unrevealed one, changes every host's sampled leaves.
    let sample = |beacon: &[u8; 32], a: &kiln_framework::Address| {
        sample_indices(&challenge_seed(beacon, a.as_bytes()), 200, 16)
    };
    let mut variants = Vec::new();
    for i in 0..secrets.len() {
        let mut changed = secrets.clone();
        changed[i][0] ^= 1;
        variants.push(beacon_of(&block_hash, &changed));
        let mut dropped = secrets.clone();
        dropped.remove(i);
        variants.push(beacon_of(&block_hash, &dropped));
    }
    let mut with_unrevealed: Vec<_> = addrs.clone();
    with_unrevealed.sort();
    let all: Vec<[u8; 32]> = with_unrevealed.iter().map(|a| test_secret(a, 1)).collect();
    variants.push(beacon_of(&block_hash, &all));
    for v in &variants {
        for a in &addrs {
            assert_ne!(sample(v, a), sample(&beacon, a));
        }
    }

    // An opening drawn from the block hash alone (the grindable old rule) is refused…
    let old_challenge = challenge_seed(&block_hash, addrs[0].as_bytes());
    let old = MsgSprintOpen {
        host: addrs[0].to_bech32(),
        ml_node: String::new(),
        epoch: 1,
        leaves: opened_leaves(&leaves, &old_challenge, 16),
    };
    let r = net.send(0, any_of(&old));
    // Refused as not the challenged opening: a wrong index, or a wrong leaf
    // count when the old draw sampled the last leaf (it has no neighbour).
    assert_eq!(r.codespace.as_str(), "sprint", "{}", r.log);
    assert!(
        r.code == codes::WRONG_LEAF_INDEX || r.code == codes::WRONG_LEAF_COUNT,
        "{}: {}",
        r.code,
        r.log
    );
    // …and the one from the beacon is accepted.
    let msg = open_msg(&net.d.app.latest_view(), &addrs[0], 1, &leaves, 16);
    let r = net.send(0, any_of(&msg));
    assert_eq!(r.code, 0, "{}", r.log);
}
