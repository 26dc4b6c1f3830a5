//! SPEC §4 "Challenge and opening": each host commits a secret hash with its
//! sprint commitment and reveals the secret in the `SecretReveal` stage; a
//! host that committed and did not reveal cannot open and gets weight 0 for
//! the epoch (result reason `unrevealed`, reputation reset like an unopened
//! host). Reveals outside the stage, of the wrong secret, or twice are
//! refused with their own codes.

mod common;

use common::{at, shares, Net};
use kiln_epochs::Stage;
use kiln_sprint::handler::codes;
use kiln_sprint::msgs::MsgSprintRevealSecret;
use kiln_testkit::any_of;
use kiln_testkit::sprint::{commit_msg, open_msg, reveal_msg};

#[test]
fn a_host_that_does_not_reveal_its_secret_gets_no_weight() {
    let mut net = Net::new("unrevealed", 4, 16);
    let leaves: Vec<Vec<(u64, u32)>> = (0..4).map(|i| shares(200, i)).collect();
    let addrs: Vec<_> = net.hosts.iter().map(|h| h.addr()).collect();

    // Sprint: all four commit.
    let txs = (0..4)
        .map(|i| net.exec(i, vec![any_of(&commit_msg(&addrs[i], 1, &leaves[i]))]))
        .collect();
    net.deliver_ok(txs);

    // A reveal before the commit deadline has passed is refused.
    let early = net.send(3, any_of(&reveal_msg(&addrs[3], 1)));
    assert_eq!(
        (early.codespace.as_str(), early.code),
        ("sprint", codes::WRONG_STAGE),
        "{}",
        early.log
    );

    // Secret reveal: hosts 0–2 reveal; host 3 only manages a wrong secret.
    net.until(at(Stage::SecretReveal));
    let txs = (0..3)
        .map(|i| net.exec(i, vec![any_of(&reveal_msg(&addrs[i], 1))]))
        .collect();
    net.deliver_ok(txs);
    // In the stage's second block: host 3's wrong secret, host 0's second reveal.
    let wrong = net.exec(
        3,
        vec![any_of(&MsgSprintRevealSecret {
            host: addrs[3].to_bech32(),
            ml_node: String::new(),
            epoch: 1,
            secret: vec![0xAB; 32],
        })],
    );
    let twice = net.exec(0, vec![any_of(&reveal_msg(&addrs[0], 1))]);
    let r = net.deliver(vec![wrong, twice]);
    assert_eq!(
        (r[0].codespace.as_str(), r[0].code),
        ("sprint", codes::SECRET_MISMATCH),
        "{}",
        r[0].log
    );
    assert_eq!(r[1].code, codes::SECRET_ALREADY_REVEALED, "{}", r[1].log);

    // Open: the three that revealed open; host 3 cannot.
    net.until(at(Stage::Open));
    let view = net.d.app.latest_view();
    let txs = (0..3)
        .map(|i| {
            let msg = open_msg(&view, &addrs[i], 1, &leaves[i], net.samples);
            net.exec(i, vec![any_of(&msg)])
        })
        .collect();
    net.deliver_ok(txs);
    let msg = open_msg(&view, &addrs[3], 1, &leaves[3], net.samples);
    let refused = net.send(3, any_of(&msg));
    assert_eq!(
        (refused.codespace.as_str(), refused.code),
        ("sprint", codes::SECRET_NOT_REVEALED),
        "{}",
        refused.log
    );

    // Every host (host 3 included, as a committee member) votes valid on every opening.
    net.until(at(Stage::VoteCommit));
    let salt = |v: usize, h: usize| format!("salt-{v}-{h}").into_bytes();
    let txs = (0..4)
        .map(|v| {
            let msgs = (0..3)
                .filter(|h| *h != v)
                .map(|h| {
                    net.vote_commit(v, addrs[h], net.commitment(v, addrs[h], true, &salt(v, h)))
                })
                .collect();
            net.exec(v, msgs)
        })
        .collect();
    net.deliver_ok(txs);
    net.until(at(Stage::VoteReveal));
    let txs = (0..4)
        .map(|v| {
            let msgs = (0..3)
                .filter(|h| *h != v)
                .map(|h| net.vote_reveal(v, addrs[h], true, &salt(v, h)))
                .collect();
            net.exec(v, msgs)
        })
        .collect();
    net.deliver_ok(txs);

    // Settle: host 3 gets nothing, the others their share counts.
    net.until(at(Stage::Settle) + 1);
    let r = net.result(addrs[3]);
    assert!(!r.accepted, "{r:?}");
    assert_eq!(
        (r.reason.as_str(), r.raw_weight, r.effective_weight),
        ("unrevealed", 0, 0)
    );
    for &a in &addrs[..3] {
        let r = net.result(a);
        assert!(r.accepted, "{r:?}");
        assert_eq!(r.raw_weight, 200);
    }
    let weights = kiln_staking::StakingExt::weights_in_force(&net.d.app.latest_view()).unwrap();
    assert_eq!(
        weights.get(&addrs[3]).copied().unwrap_or(0),
        0,
        "{weights:?}"
    );
    assert_eq!(net.good_epochs(addrs[3]), 0);
    assert_eq!(net.good_epochs(addrs[0]), 1);
}
