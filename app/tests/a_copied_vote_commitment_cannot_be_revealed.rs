//! SPEC §4 "Validation" and §6: a vote commitment is
//! `SHA256("kiln/vote/v1" ‖ len-prefixed chain_id ‖ epoch ‖ host ‖ voter ‖
//! vote ‖ salt)`, so a committee member that copies another's commitment
//! (to vote without recomputing) can never reveal it: the copier's reveal of
//! the original vote and salt is refused with REVEAL_MISMATCH. A member that
//! does not reveal, or does not vote at all, counts as not voting (the host
//! is still accepted by the others' votes) and loses one good epoch per
//! missing vote.

mod common;

use common::{at, shares, Net};
use kiln_epochs::Stage;
use kiln_sprint::handler::codes;
use kiln_testkit::any_of;
use kiln_testkit::sprint::{commit_msg, open_msg, reveal_msg};

const HONEST: [usize; 4] = [0, 1, 2, 3];
const COPIER: usize = 4;
const SILENT: usize = 5;

#[test]
fn a_copied_vote_commitment_cannot_be_revealed() {
    let mut net = Net::new("copied-vote", 6, 16);
    let addrs: Vec<_> = net.hosts.iter().map(|h| h.addr()).collect();
    let leaves: Vec<Vec<(u64, u32)>> = (0..6).map(|i| shares(100, i)).collect();
    let txs = (0..6)
        .map(|i| net.exec(i, vec![any_of(&commit_msg(&addrs[i], 1, &leaves[i]))]))
        .collect();
    net.deliver_ok(txs);
    net.until(at(Stage::SecretReveal));
    let txs = (0..6)
        .map(|i| net.exec(i, vec![any_of(&reveal_msg(&addrs[i], 1))]))
        .collect();
    net.deliver_ok(txs);
    net.until(at(Stage::Open));
    let view = net.d.app.latest_view();
    let txs = (0..6)
        .map(|i| {
            let msg = open_msg(&view, &addrs[i], 1, &leaves[i], net.samples);
            net.exec(i, vec![any_of(&msg)])
        })
        .collect();
    net.deliver_ok(txs);

    // Vote commit: the honest members and the copier vote valid on every
    // other host, except that on host 1 the copier posts host 0's
    // commitment, byte for byte. The silent member posts nothing.
    net.until(at(Stage::VoteCommit));
    let salt = |v: usize, h: usize| format!("salt-{v}-{h}").into_bytes();
    let copied = net.commitment(0, addrs[1], true, &salt(0, 1));
    let mut txs = Vec::new();
    for v in HONEST.into_iter().chain([COPIER]) {
        let msgs = (0..6)
            .filter(|h| *h != v)
            .map(|h| {
                let commitment = if v == COPIER && h == 1 {
                    copied
                } else {
                    net.commitment(v, addrs[h], true, &salt(v, h))
                };
                net.vote_commit(v, addrs[h], commitment)
            })
            .collect();
        txs.push(net.exec(v, msgs));
    }
    net.deliver_ok(txs);

    // Reveal: the honest members, and the copier for its own votes; then
    // the copier reveals host 0's vote and salt for its copied commitment,
    // and is refused.
    net.until(at(Stage::VoteReveal));
    let mut txs = Vec::new();
    for v in HONEST.into_iter().chain([COPIER]) {
        let msgs = (0..6)
            .filter(|h| *h != v && !(v == COPIER && *h == 1))
            .map(|h| net.vote_reveal(v, addrs[h], true, &salt(v, h)))
            .collect();
        txs.push(net.exec(v, msgs));
    }
    net.deliver_ok(txs);
    let r = net.send(COPIER, net.vote_reveal(COPIER, addrs[1], true, &salt(0, 1)));
    assert_eq!(
        (r.codespace.as_str(), r.code),
        ("sprint", codes::REVEAL_MISMATCH),
        "{}",
        r.log
    );

    // Settle: missing votes are not invalid votes — every host is accepted
    // on the votes that were revealed…
    net.until(at(Stage::Settle) + 1);
    for (i, &a) in addrs.iter().enumerate() {
        let r = net.result(a);
        assert!(r.accepted, "host {i}: {r:?}");
    }
    // …host 1's tally did not count the copier.
    assert_eq!(net.result(addrs[1]).valid_vote_weight, 300);
    // Reputation: +1 for the accepted epoch, −1 per missing vote (floor 0).
    assert_eq!(net.good_epochs(addrs[0]), 1, "an honest member gains");
    assert_eq!(
        net.good_epochs(addrs[COPIER]),
        0,
        "the copier's unrevealable vote cost it its good epoch"
    );
    assert_eq!(
        net.good_epochs(addrs[SILENT]),
        0,
        "a member that never voted loses reputation"
    );
}
