//! Issue 12, "Settlement": through the real pipeline (CheckTx → FinalizeBlock
//! → Commit), with SPEC §11's invariants checked after every block (escrow
//! total = sum of open escrows = what the escrow account holds):
//! - `MsgStartInference` escrows `(prompt + max_tokens) × price`, and
//!   `MsgFinishInference` pays `(prompt + completion) × price` and refunds
//!   the rest — in either order;
//! - an inference not finished in `inference_timeout_blocks` is refunded in
//!   full and counts a miss; `dead_after_misses` misses in a row take the
//!   executor out of the draw;
//! - the chain re-derives the draw: the wrong executor, a replayed or
//!   expired request signature, a tampered request, a seed outside the
//!   window and an unfunded requester are refused with their codes, and
//!   nothing is charged.

use kiln_framework::Address;
use kiln_inference::handler::codes;
use kiln_inference::query;
use kiln_testkit::inference::{finish_msg, SignedRequest};
use kiln_testkit::{any_of, GENESIS_TIME};

mod inference_net;
use inference_net::{assert_refused, net, CHAIN, FEE, MODEL};

#[test]
fn start_then_finish_pays_the_tokens_used_and_refunds_the_rest() {
    let mut n = net();
    n.block(vec![]);
    let ta = n.hosts[0].address;
    let (r, executor) = n.request(&n.requester.clone(), ta, r#"{"messages":"hi"}"#, 64);
    let before = n.d.balance(&n.requester.address);
    let start = r.start_msg(20, executor, n.d.height);
    let res = n.block(vec![n.tx(&n.hosts[0], vec![any_of(&start)])]);
    assert_eq!(res[0].code, 0, "{}", res[0].log);
    // (20 + 64) tokens × 1 ukiln escrowed.
    assert_eq!(n.d.balance(&n.requester.address), before - 84);
    let rec = n.record(r.id());
    assert_eq!(rec["status"], "open");
    assert_eq!(rec["escrow"], "84");
    assert_eq!(rec["executor"], executor.to_bech32());

    let exec_before = n.d.balance(&executor);
    let finish = finish_msg(executor, r.id(), 30, b"the answer");
    let key = n.host(executor).clone();
    let res = n.block(vec![n.tx(&key, vec![any_of(&finish)])]);
    assert_eq!(res[0].code, 0, "{}", res[0].log);
    // Paid (20 + 30) × 1, the other 34 refunded; the executor paid its fee.
    assert_eq!(n.d.balance(&n.requester.address), before - 50);
    assert_eq!(n.d.balance(&executor), exec_before + 50 - FEE);
    let rec = n.record(r.id());
    assert_eq!(rec["status"], "finished");
    assert_eq!(rec["paid"], "50");
    assert_eq!(rec["refunded"], "34");
    assert_eq!(
        rec["response_hash"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"the answer"))
    );

    // A second finish is refused; the stats and the requester's list show it.
    let res = n.block(vec![n.tx(&key, vec![any_of(&finish)])]);
    assert_refused(&res[0], codes::ALREADY_SETTLED, "already");
    let (_, stats, _) = n.query(query::HOST_STATS_PATH, &executor.to_bech32());
    assert_eq!(stats["total_completed"], 1);
    assert_eq!(stats["total_earned"], "50");
    let (_, list, _) = n.query(query::BY_REQUESTER_PATH, &n.requester.address.to_bech32());
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], hex::encode(r.id()));
}

#[test]
fn a_finish_may_arrive_before_its_start() {
    let mut n = net();
    n.block(vec![]);
    let (r, executor) = n.request(&n.requester.clone(), n.hosts[1].address, "body", 10);
    let before = n.d.balance(&n.requester.address);
    let key = n.host(executor).clone();
    let res = n.block(vec![
        n.tx(&key, vec![any_of(&finish_msg(executor, r.id(), 4, b"x"))])
    ]);
    assert_eq!(res[0].code, 0, "{}", res[0].log);
    assert_eq!(
        n.query(query::INFERENCE_PATH, &hex::encode(r.id())).0,
        22,
        "no record yet"
    );
    // The start settles it at once: (6 + 4) paid, nothing left open.
    let start = r.start_msg(6, executor, n.d.height - 1);
    let res = n.block(vec![n.tx(&n.hosts[1], vec![any_of(&start)])]);
    assert_eq!(res[0].code, 0, "{}", res[0].log);
    assert_eq!(n.d.balance(&n.requester.address), before - 10);
    let rec = n.record(r.id());
    assert_eq!(rec["status"], "finished");
    assert_eq!(rec["paid"], "10");
    assert_eq!(rec["refunded"], "6");
}

#[test]
fn an_unfinished_inference_is_refunded_and_misses_take_the_executor_out_of_the_draw() {
    let mut n = net();
    n.block(vec![]);
    let before = n.d.balance(&n.requester.address);
    // Requests until one host has been drawn three times; none finishes.
    let mut victim: Option<Address> = None;
    let mut ids = Vec::new();
    let mut drawn = std::collections::BTreeMap::<Address, u32>::new();
    for i in 0..60 {
        let (r, executor) = n.request(
            &n.requester.clone(),
            n.hosts[0].address,
            &format!("req {i}"),
            5,
        );
        if victim.is_some_and(|v| v != executor) {
            continue;
        }
        let start = r.start_msg(5, executor, n.d.height);
        let res = n.block(vec![n.tx(&n.hosts[0], vec![any_of(&start)])]);
        assert_eq!(res[0].code, 0, "{}", res[0].log);
        ids.push(r.id());
        *drawn.entry(executor).or_default() += 1;
        victim = Some(executor);
        if drawn[&executor] == 3 {
            break;
        }
    }
    let victim = victim.unwrap();
    assert_eq!(drawn[&victim], 3);
    assert_eq!(n.d.balance(&n.requester.address), before - 30);
    // 20 blocks later every one has expired: refunded in full, three misses.
    for _ in 0..21 {
        n.block(vec![]);
    }
    assert_eq!(n.d.balance(&n.requester.address), before);
    for id in &ids {
        let rec = n.record(*id);
        assert_eq!(rec["status"], "expired");
        assert_eq!(rec["refunded"], "10");
    }
    let (_, stats, _) = n.query(query::HOST_STATS_PATH, &victim.to_bech32());
    assert_eq!(stats["epoch_missed"], 3);
    assert_eq!(stats["consecutive_misses"], 3);
    // A late finish is refused and pays nothing.
    let key = n.host(victim).clone();
    let res =
        n.block(vec![n.tx(
            &key,
            vec![any_of(&finish_msg(victim, ids[0], 1, b"late"))],
        )]);
    assert_refused(&res[0], codes::ALREADY_SETTLED, "Expired");
    // The dead host is marked and no longer drawn.
    let (_, set, _) = n.query(query::EXECUTORS_PATH, MODEL);
    let entry = set["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["host"] == victim.to_bech32())
        .unwrap();
    assert!(entry["dead_since"].is_u64(), "{set}");
    for i in 0..200 {
        let (_, executor) = n.request(
            &n.requester.clone(),
            n.hosts[0].address,
            &format!("after {i}"),
            5,
        );
        assert_ne!(executor, victim, "a dead host is drawn");
    }
}

#[test]
fn the_chain_refuses_bad_requests_and_charges_nothing() {
    let mut n = net();
    n.block(vec![]);
    n.block(vec![]);
    let ta = n.hosts[0].address;
    let ta_key = n.hosts[0].clone();
    let requester = n.requester.clone();
    let before = n.d.balance(&requester.address);
    // Each refusal: the start alone in a block, refused with its code.
    macro_rules! check {
        ($start:expr, $code:expr, $words:expr $(,)?) => {{
            let start = $start;
            let res = n.block(vec![n.tx(&ta_key, vec![any_of(&start)])]);
            assert_refused(&res[0], $code, $words);
        }};
    }

    // The wrong executor: the chain names the right one.
    let (r, executor) = n.request(&requester, ta, "a", 8);
    let wrong = n
        .hosts
        .iter()
        .map(|h| h.address)
        .find(|h| *h != executor)
        .unwrap();
    check!(
        r.start_msg(2, wrong, n.d.height),
        codes::WRONG_EXECUTOR,
        &executor.to_bech32(),
    );

    // A seed older than the window, or not yet committed.
    let (r, executor) = n.request(&requester, ta, "b", 8);
    for _ in 0..21 {
        n.block(vec![]);
    }
    let stale = r.start_msg(2, executor, n.d.height - 21);
    check!(stale, codes::SEED_OUT_OF_WINDOW, "seed_height");
    let (r, executor) = n.request(&requester, ta, "c", 8);
    check!(
        r.start_msg(2, executor, n.d.height + 1),
        codes::SEED_OUT_OF_WINDOW,
        "seed_height",
    );

    // An expired signature (signed 61 s before the block).
    let old = GENESIS_TIME + n.d.height as i64 + 1 - 61;
    let r = SignedRequest::new(&requester, CHAIN, ta, MODEL, b"d", 8, old);
    let executor = r.draw(&n.d.app.latest_view(), n.d.height).unwrap();
    check!(
        r.start_msg(2, executor, n.d.height),
        codes::EXPIRED_REQUEST,
        "60 s",
    );

    // A tampered request: the transfer agent raises max_tokens.
    let (r, executor) = n.request(&requester, ta, "e", 8);
    let mut tampered = r.start_msg(2, executor, n.d.height);
    tampered.max_tokens = 800;
    // CheckTx refuses it already (requester signatures need no state) …
    let check_tx = n.d.submit(n.tx(&ta_key, vec![any_of(&tampered)]));
    assert_eq!(
        (check_tx.codespace.as_str(), check_tx.code),
        ("inference", codes::BAD_REQUEST_SIGNATURE),
        "{}",
        check_tx.log
    );
    n.d.mempool.clear();
    // … and a block that carries it anyway fails it.
    check!(tampered, codes::BAD_REQUEST_SIGNATURE, "signature");
    // … or sends it as another transfer agent.
    let (r, executor) = n.request(&requester, n.hosts[1].address, "f", 8);
    let mut retargeted = r.start_msg(2, executor, n.d.height);
    retargeted.transfer_agent = ta.to_bech32();
    check!(retargeted, codes::BAD_REQUEST_SIGNATURE, "signature",);

    // An unfunded requester: 50 ukiln cannot escrow 2 + 100 tokens.
    let (r, executor) = n.request(&n.poor.clone(), ta, "g", 100);
    check!(
        r.start_msg(2, executor, n.d.height),
        codes::REQUESTER_CANNOT_PAY,
        "escrows 102",
    );
    assert_eq!(n.d.balance(&n.poor.address), 50);

    // A good start, then its replay.
    let (r, executor) = n.request(&requester, ta, "h", 8);
    let start = r.start_msg(2, executor, n.d.height);
    let res = n.block(vec![n.tx(&ta_key, vec![any_of(&start)])]);
    assert_eq!(res[0].code, 0, "{}", res[0].log);
    let mut replay = start.clone();
    replay.seed_height = n.d.height;
    check!(replay, codes::REUSED_REQUEST, "used once");
    // Only the good start is charged.
    assert_eq!(n.d.balance(&requester.address), before - 10);

    // A finish from a host that is not the executor; one over max_tokens.
    let other = n
        .hosts
        .iter()
        .find(|h| h.address != executor)
        .unwrap()
        .clone();
    let res = n.block(vec![n.tx(
        &other,
        vec![any_of(&finish_msg(other.address, r.id(), 1, b"x"))],
    )]);
    assert_refused(&res[0], codes::NOT_THE_EXECUTOR, "drawn to");
    let key = n.host(executor).clone();
    let res = n.block(vec![
        n.tx(&key, vec![any_of(&finish_msg(executor, r.id(), 9, b"x"))])
    ]);
    assert_refused(&res[0], codes::TOO_MANY_TOKENS, "max_tokens 8");
    assert_eq!(n.record(r.id())["status"], "open");

    // Malformed messages never reach a block: CheckTx refuses them.
    let mut short = r.start_msg(2, executor, n.d.height);
    short.prompt_hash = vec![1; 31];
    let check_tx = n.d.submit(n.tx(&ta_key, vec![any_of(&short)]));
    assert_eq!(check_tx.code, codes::BAD_FIELD, "{}", check_tx.log);
    assert!(
        check_tx.log.contains("prompt_hash must be 32 bytes"),
        "{}",
        check_tx.log
    );
    let mut bad_id = r.start_msg(2, executor, n.d.height);
    bad_id.id = vec![0; 32];
    let check_tx = n.d.submit(n.tx(&ta_key, vec![any_of(&bad_id)]));
    assert_eq!(check_tx.code, codes::BAD_ID, "{}", check_tx.log);
}
