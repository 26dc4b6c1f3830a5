//! Issue 12, "Several real workers on one in-process chain": the devnet node
//! runs in this process (its blocks produced here, SPEC §11's invariants
//! checked after every one); four real `kiln-mlworker run --no-sprint
//! --serve-model smollm2-135m` processes serve the real model for the four
//! genesis hosts (weights 30, 30, 30, 10). Host 3 serves a substitute (the
//! model's weights perturbed by 1%) under the registered model's name.
//!
//! A buyer sends signed completions through the three honest transfer
//! agents until at least 200 honest inferences passed a validation by an
//! honest host. Checked:
//! - the workers validate **exactly** their duties: for every finished
//!   inference and every host, a validation is posted iff `SHA256(seed ‖ id)`
//!   (the seed the worker committed, read from its journal) falls below the
//!   host's share of the rate the chain fixed (`kiln_inference::duties`);
//! - honest work passes every honest validation; the substitute's fails
//!   every one, each such inference is disputed, the dispute upheld and the
//!   buyer refunded, and the substitute becomes INVALID and leaves the draw;
//!   its catch rate is the one its validators' duties predict;
//! - disputes against honest work come only from the substitute (which
//!   validates with its wrong model) and are all rejected;
//! - a start whose executor never hears of it expires: refunded, a miss;
//! - refused without a charge: an unfunded requester (402), a replayed
//!   signature (409), an expired one (401), a forwarded request at a host
//!   the draw does not pick (421), and on chain a start naming the wrong
//!   executor (code 11).

// A test, not consensus code: it waits on the wall clock for processes.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_client::rpc::RpcClient;
use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_inference::duties;
use kiln_inference::state::ServingSet;
use kiln_testkit::inference::SignedRequest;
use kiln_testkit::{any_of, sign_tx, TestKey};
use serde_json::{json, Value};

const CHAIN: &str = "kiln-several-workers";
const MODEL: &str = "smollm2-135m";
const WEIGHTS: [u64; 4] = [30, 30, 30, 10];
const CHEATER: usize = 3;
const WANT_VALIDATED: usize = 200;
const BLOCK_TIME: Duration = Duration::from_millis(200);
const INFERENCE_TIMEOUT_BLOCKS: u64 = 150;

mod worker_procs;
use worker_procs::*;

fn completion_body(prompt: &str) -> Value {
    json!({"model": MODEL, "prompt": prompt, "max_tokens": 3, "temperature": 0})
}

#[test]
fn several_workers_serve_validate_and_catch_a_substitute() {
    worker_bin(); // built, or a clear failure before the chain starts
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_path_buf();

    // Keys: hosts' accounts sign here; their ML keys are in the test
    // keyring the workers read.
    let hosts: Vec<TestKey> = (0..WEIGHTS.len())
        .map(|i| TestKey::from_label(&format!("several-workers-host-{i}")))
        .collect();
    let buyer = TestKey::from_label("several-workers-buyer");
    let pauper = TestKey::from_label("several-workers-pauper");
    let ports: Vec<u16> = hosts.iter().map(|_| free_port()).collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut genesis = kiln_genesis::AppGenesis::with_devnet_params();
    // One long sprint stage: no settle in this test, so the genesis weights
    // (the serving set's) hold throughout; the workers do not sprint.
    genesis.epochs.params.sprint_blocks = 1_000_000;
    genesis.epochs.params.epoch_length = 2_000_000;
    genesis.inference.params.inference_timeout_blocks = INFERENCE_TIMEOUT_BLOCKS;
    genesis.inference.params.record_retention_blocks = 100_000;
    genesis.inference.params.draw_window_blocks = 100;
    // The honest hosts vote after replaying the disputed work, behind their
    // owed validations. In a full `make test` on two cores (four workers,
    // the node and other tests at once) a dispute once closed at its
    // deadline without the honest majority's votes: 300 blocks (60 s) leave
    // room for such a machine; a dispute still closes as soon as a side
    // holds a majority.
    genesis.inference.params.dispute_blocks = 300;
    genesis.add_balance(
        buyer.address,
        vec![Coin::new(BASE_DENOM, 1_000_000_000_000)],
    );
    genesis.add_balance(pauper.address, vec![Coin::new(BASE_DENOM, 1)]);
    for (i, host) in hosts.iter().enumerate() {
        let mnemonic = kiln_client::keyring::generate_mnemonic();
        let ml = kiln_client::write_test_key(&home, &format!("host{i}-ml"), &mnemonic).unwrap();
        let ml = addr(&ml.address);
        genesis.add_balance(host.address, vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
        genesis.add_balance(ml, vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
        genesis.add_ml_ops_grants(host.address, ml);
        let consensus = ed25519_dalek::SigningKey::from_bytes(&[i as u8 + 1; 32]);
        genesis.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: host.address,
            worker_url: urls[i].clone(),
            consensus_pubkey: hex::encode(consensus.verifying_key().as_bytes()),
            models: vec![MODEL.into()],
            hardware: "test cpu".into(),
            weight: WEIGHTS[i],
        });
    }
    let mut model = kiln_genesis::devnet_model();
    model.price_floor_pkiln = 1_000_000; // 1 ukiln per token
    genesis.inference.models = vec![model.clone()];
    let (chain, rpc_url) = start_chain(&home, CHAIN, "several-workers", &genesis, BLOCK_TIME);
    let rpc = RpcClient::new(&rpc_url);

    // The workers.
    let mut workers = Workers(Vec::new());
    for (i, host) in hosts.iter().enumerate() {
        let mut cmd = ServingWorker {
            node: &rpc_url,
            host: &host.address,
            key: &format!("host{i}-ml"),
            home: &home,
            port: ports[i],
            journal: &home.join(format!("journal{i}")),
            log: &home.join(format!("worker{i}.log")),
            model: MODEL,
        }
        .command();
        if i == CHEATER {
            cmd.args(["--test-substitute-perturbation", "0.01"]);
        }
        workers.0.push(cmd.spawn().unwrap());
    }
    let logs = |home: &Path| -> String {
        (0..WEIGHTS.len())
            .map(|i| {
                let text = std::fs::read_to_string(home.join(format!("worker{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- worker {i} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ready_by = Instant::now() + Duration::from_secs(600);
    for url in &urls {
        loop {
            chain.assert_healthy();
            if ureq::get(&format!("{url}/v1/models")).call().is_ok() {
                break;
            }
            for (i, w) in workers.0.iter_mut().enumerate() {
                if let Ok(Some(status)) = w.try_wait() {
                    panic!("worker {i} exited ({status}):\n{}", logs(&home));
                }
            }
            assert!(
                Instant::now() < ready_by,
                "the workers did not load the model in 600 s:\n{}",
                logs(&home)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // Each worker commits its validation seeds for periods 0 and 1 first.
    for host in &hosts {
        let by = Instant::now() + Duration::from_secs(120);
        loop {
            let seeds =
                kiln_client::query::validation_seeds(&rpc, &host.address.to_bech32(), 0).unwrap();
            if seeds["seeds"].as_array().map_or(0, |s| s.len()) == 2 {
                break;
            }
            assert!(
                Instant::now() < by,
                "{} committed no seeds: {seeds}\n{}",
                host.address,
                logs(&home)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let app = chain.app();
    let serving: ServingSet = serde_json::from_value(
        kiln_client::query::json_query(
            &rpc,
            kiln_inference::query::EXECUTORS_PATH,
            MODEL.as_bytes(),
            0,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(serving.entries.len(), 4);

    // Refused at the transfer agent, nothing charged.
    let ta0 = hosts[0].address;
    let sign = |key: &TestKey, ta: &Address, prompt: &str| {
        kiln_client::inference::sign_body(&key.signing, CHAIN, ta, completion_body(prompt), 3)
            .unwrap()
    };
    let completions = |i: usize| format!("{}/v1/completions", urls[i]);
    let pauper_before = balance(&app, &pauper.address);
    let s = sign(&pauper, &ta0, "I cannot pay.");
    let (code, answer) = post(&completions(0), &s.body, &s.headers);
    assert_eq!(
        (code, answer["error"]["code"].as_str()),
        (402, Some("insufficient_funds")),
        "{answer}"
    );
    let buyer_before = balance(&app, &buyer.address);
    let s = sign(&buyer, &ta0, "Once only.");
    let (code, answer) = post(&completions(0), &s.body, &s.headers);
    assert_eq!(code, 200, "{answer}");
    let (code, answer) = post(&completions(0), &s.body, &s.headers);
    assert_eq!(
        (code, answer["error"]["code"].as_str()),
        (409, Some("reused_signature")),
        "{answer}"
    );
    let stale = SignedRequest::new(
        &buyer,
        CHAIN,
        ta0,
        MODEL,
        &serde_json::to_vec(&completion_body("Old.")).unwrap(),
        3,
        unix_now() - 120,
    );
    let body = serde_json::to_vec(&completion_body("Old.")).unwrap();
    let stale_headers = [
        (
            kiln_inference::request::HEADER_PUBKEY,
            hex::encode(&stale.pubkey),
        ),
        (
            kiln_inference::request::HEADER_TIMESTAMP,
            stale.header.timestamp.to_string(),
        ),
        (
            kiln_inference::request::HEADER_SIGNATURE,
            hex::encode(stale.signature),
        ),
    ];
    let (code, answer) = post(&completions(0), &body, &stale_headers);
    assert_eq!(code, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("valid for 60 s"),
        "{answer}"
    );
    // A forwarded request at a host the draw does not pick.
    let height = chain.handle.height();
    let mut misdirected = None;
    for n in 0..50 {
        let prompt = format!("Forwarded {n}.");
        let body = serde_json::to_vec(&completion_body(&prompt)).unwrap();
        let r = SignedRequest::new(&buyer, CHAIN, ta0, MODEL, &body, 3, unix_now());
        let drawn = r.draw(&app.latest_view(), height).unwrap();
        if let Some(other) = (1..3).find(|i| hosts[*i].address != drawn) {
            misdirected = Some((r, body, other));
            break;
        }
    }
    let (r, body, other) = misdirected.unwrap();
    let forwarded_headers = [
        (
            kiln_inference::request::HEADER_PUBKEY,
            hex::encode(&r.pubkey),
        ),
        (
            kiln_inference::request::HEADER_TIMESTAMP,
            r.header.timestamp.to_string(),
        ),
        (
            kiln_inference::request::HEADER_SIGNATURE,
            hex::encode(r.signature),
        ),
        ("x-kiln-transfer-agent", ta0.to_bech32()),
        ("x-kiln-seed-height", height.to_string()),
    ];
    let (code, answer) = post(&completions(other), &body, &forwarded_headers);
    assert_eq!(
        (code, answer["error"]["code"].as_str()),
        (421, Some("not_the_executor")),
        "{answer}"
    );
    // The one served request is charged exactly once.
    let by = Instant::now() + Duration::from_secs(60);
    let once = loop {
        if let Some(rec) = kiln_client::query::inference(&rpc, &hex::encode(s.id), 0).unwrap() {
            if rec["status"] == "finished" {
                break rec;
            }
        }
        assert!(
            Instant::now() < by,
            "the served request never settled\n{}",
            logs(&home)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let paid: u128 = once["paid"].as_str().unwrap().parse().unwrap();
    assert_eq!(buyer_before - balance(&app, &buyer.address), paid, "{once}");
    assert_eq!(balance(&app, &pauper.address), pauper_before);

    // On chain, from host 0's account as transfer agent: a start naming the
    // wrong executor is refused; a right one that no executor hears of
    // expires (checked at the end).
    let height = chain.handle.height();
    let body = serde_json::to_vec(&completion_body("Never served.")).unwrap();
    let orphan = SignedRequest::new(&buyer, CHAIN, ta0, MODEL, &body, 3, unix_now());
    let drawn = orphan.draw(&app.latest_view(), height).unwrap();
    let wrong = hosts
        .iter()
        .map(|h| h.address)
        .find(|a| *a != drawn)
        .unwrap();
    let tx = sign_tx(
        &hosts[0],
        vec![any_of(&orphan.start_msg(5, wrong, height))],
        &options(&app, &hosts[0], CHAIN),
    );
    let result = deliver(&rpc, &tx);
    assert_eq!(
        result["code"],
        kiln_inference::handler::codes::WRONG_EXECUTOR,
        "{result}"
    );
    let tx = sign_tx(
        &hosts[0],
        vec![any_of(&orphan.start_msg(5, drawn, height))],
        &options(&app, &hosts[0], CHAIN),
    );
    let result = deliver(&rpc, &tx);
    assert_eq!(result["code"], 0, "{result}");
    let misses_before = kiln_client::query::host_serving_stats(&rpc, &drawn.to_bech32(), 0)
        .unwrap()["total_missed"]
        .as_u64()
        .unwrap();

    // The load: the buyer through the honest transfer agents.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..3)
        .map(|ta| {
            let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
            let (url, ta_addr, key) = (
                completions(ta),
                hosts[ta].address,
                TestKey::from_label("several-workers-buyer"),
            );
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let s = kiln_client::inference::sign_body(
                        &key.signing,
                        CHAIN,
                        &ta_addr,
                        completion_body(&format!("Fact {ta}-{n}:")),
                        3,
                    )
                    .unwrap();
                    let (code, answer) = post(&url, &s.body, &s.headers);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if code != 200 {
                        failures.lock().unwrap().push(format!("{code}: {answer}"));
                    }
                }
            })
        })
        .collect();
    let mut seen = Seen {
        next_height: 1,
        ..Default::default()
    };
    let honest: BTreeSet<Address> = hosts[..CHEATER].iter().map(|h| h.address).collect();
    let cheater = hosts[CHEATER].address;
    let threshold = model.validation_threshold_micro;
    let validated_honest = |seen: &Seen| -> usize {
        seen.validations
            .iter()
            .filter(|((id, v), score)| {
                honest.contains(v)
                    && **score >= threshold
                    && seen.finished.get(id).is_some_and(|f| honest.contains(&f.0))
            })
            .map(|((id, _), _)| *id)
            .collect::<BTreeSet<_>>()
            .len()
    };
    let load_started = Instant::now();
    let load_by = load_started + Duration::from_secs(1500);
    let mut last_report = Instant::now();
    loop {
        chain.assert_healthy();
        seen.follow(&rpc);
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "[{:>4} s] {} requests, {} finished, {} validations, {} honest inferences validated, {} disputes",
                load_started.elapsed().as_secs(),
                sent.load(Ordering::Relaxed),
                seen.finished.len(),
                seen.validations.len(),
                validated_honest(&seen),
                seen.disputes.len()
            );
        }
        if validated_honest(&seen) >= WANT_VALIDATED && seen.invalid_at.contains_key(&cheater) {
            break;
        }
        assert!(
            Instant::now() < load_by,
            "after {} requests: {} honest inferences validated, cheater invalid: {}; failures: {:?}\n{}",
            sent.load(Ordering::Relaxed),
            validated_honest(&seen),
            seen.invalid_at.contains_key(&cheater),
            failures.lock().unwrap().iter().take(5).collect::<Vec<_>>(),
            logs(&home)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    // Each worker's seed for period 0, from its journal: its duties.
    let seeds: BTreeMap<Address, [u8; 32]> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let file: BTreeMap<u64, String> = serde_json::from_slice(
                &std::fs::read(home.join(format!("journal{i}/validation-seeds.json"))).unwrap(),
            )
            .unwrap();
            (
                h.address,
                hex::decode(&file[&0]).unwrap().try_into().unwrap(),
            )
        })
        .collect();
    let owed_by = |seen: &Seen| -> BTreeSet<([u8; 32], Address)> {
        let mut owed = BTreeSet::new();
        for (id, (executor, period, rate, _)) in &seen.finished {
            assert_eq!(*period, 0);
            for (v, seed) in &seeds {
                let p = duties::probability_in(&serving, executor, v, *rate);
                if duties::is_assigned(seed, id, p) {
                    owed.insert((*id, *v));
                }
            }
        }
        owed
    };
    // Let the last validations, disputes and the orphan's expiry land: every
    // duty done, every dispute resolved, the orphan expired, then 20 quiet
    // blocks (nothing more may come).
    let settle_by = Instant::now() + Duration::from_secs(300);
    let mut quiet_since = (seen.validations.len(), chain.handle.height());
    loop {
        chain.assert_healthy();
        seen.follow(&rpc);
        let h = chain.handle.height();
        if seen.validations.len() != quiet_since.0 {
            quiet_since = (seen.validations.len(), h);
        }
        let all_resolved = seen
            .disputes
            .keys()
            .all(|id| seen.resolved.contains_key(id));
        let pending: Vec<([u8; 32], Address)> = owed_by(&seen)
            .into_iter()
            .filter(|k| !seen.validations.contains_key(k))
            .collect();
        if all_resolved
            && pending.is_empty()
            && h >= quiet_since.1 + 20
            && seen.expired.contains_key(&orphan.id())
        {
            break;
        }
        if Instant::now() >= settle_by {
            let mut report = String::new();
            for (id, v) in &pending {
                let i = hosts.iter().position(|h| h.address == *v).unwrap();
                let text = std::fs::read_to_string(home.join(format!("worker{i}.log")))
                    .unwrap_or_default();
                let prefix = hex::encode(&id[..4]);
                report.push_str(&format!("duty {} of worker {i}:\n", hex::encode(id)));
                for line in text.lines().filter(|l| l.contains(&prefix)) {
                    report.push_str(line);
                    report.push('\n');
                }
            }
            panic!(
                "validations and disputes did not settle in 300 s: {} duties pending, all disputes resolved: {all_resolved}, orphan expired: {}\n{report}\n{}",
                pending.len(),
                seen.expired.contains_key(&orphan.id()),
                logs(&home)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        sent.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );

    // Every worker validated exactly its duties.
    let owed = owed_by(&seen);
    let done: BTreeSet<([u8; 32], Address)> = seen.validations.keys().copied().collect();
    let missing: Vec<_> = owed
        .difference(&done)
        .map(|(id, v)| (hex::encode(&id[..6]), *v))
        .collect();
    let extra: Vec<_> = done
        .difference(&owed)
        .map(|(id, v)| (hex::encode(&id[..6]), *v))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "duties not validated: {missing:?}; validations without a duty: {extra:?}"
    );

    // Honest work passes every honest validation and is never invalidated;
    // disputes over it come from the cheater only, and fail.
    for ((id, v), score) in &seen.validations {
        let executor = seen.finished[id].0;
        match (honest.contains(&executor), honest.contains(v)) {
            (true, true) => assert!(
                *score >= threshold,
                "honest work scored {score} by honest {v}"
            ),
            (false, true) => assert!(
                *score < threshold,
                "the substitute's work passed {v} with {score}"
            ),
            _ => {}
        }
    }
    for (id, opener) in &seen.disputes {
        let executor = seen.finished[id].0;
        let upheld = seen.resolved[id];
        if honest.contains(&executor) {
            assert_eq!(*opener, cheater, "an honest host disputed honest work");
            assert!(!upheld, "a dispute over honest work was upheld");
        } else {
            assert!(
                upheld,
                "a dispute over the substitute's work was rejected (opened at height {:?}, resolved {})",
                seen.disputed_at.get(id),
                seen.resolutions.get(id).map_or("?", String::as_str)
            );
        }
    }
    // Each caught substitute inference was invalidated and refunded.
    let caught: BTreeSet<[u8; 32]> = seen
        .validations
        .keys()
        .filter(|(id, v)| honest.contains(v) && seen.finished[id].0 == cheater)
        .map(|(id, _)| *id)
        .collect();
    for id in &caught {
        let rec = kiln_client::query::inference(&rpc, &hex::encode(id), 0)
            .unwrap()
            .unwrap();
        assert_eq!(rec["status"], "invalidated", "{rec}");
        assert_eq!(rec["paid"], "0", "{rec}");
        assert_eq!(rec["refunded"], rec["escrow"], "{rec}");
    }
    // INVALID, and out of the draw from then on.
    let stats = kiln_client::query::host_serving_stats(&rpc, &cheater.to_bech32(), 0).unwrap();
    assert_eq!(stats["invalid"], true, "{stats}");
    let invalid_at = seen.invalid_at[&cheater];
    let late: Vec<_> = seen
        .started
        .iter()
        .filter(|(_, (executor, h))| *executor == cheater && *h > invalid_at + 10)
        .collect();
    assert!(
        late.is_empty(),
        "the INVALID host was still drawn: {} starts after height {invalid_at}",
        late.len()
    );
    // Its catch rate: what its validators' duties predict.
    let cheats: Vec<&[u8; 32]> = seen
        .finished
        .iter()
        .filter(|(_, f)| f.0 == cheater)
        .map(|(id, _)| id)
        .collect();
    let expected: f64 = cheats
        .iter()
        .map(|id| {
            let rate = seen.finished[*id].2;
            1.0 - honest
                .iter()
                .map(|v| 1.0 - duties::probability_in(&serving, &cheater, v, rate) as f64 / 1e6)
                .product::<f64>()
        })
        .sum();
    println!(
        "substitute: {} of {} inferences caught (expected {:.2} from the duty probabilities); INVALID at height {invalid_at}",
        caught.len(),
        cheats.len(),
        expected
    );
    assert!(!caught.is_empty());

    // The orphaned start expired: refunded in full, a miss for its executor.
    let rec = kiln_client::query::inference(&rpc, &hex::encode(orphan.id()), 0)
        .unwrap()
        .unwrap();
    assert_eq!(rec["status"], "expired", "{rec}");
    assert_eq!(rec["refunded"], rec["escrow"], "{rec}");
    let misses = kiln_client::query::host_serving_stats(&rpc, &drawn.to_bech32(), 0).unwrap()
        ["total_missed"]
        .as_u64()
        .unwrap();
    // At least the orphan's (its record above says it expired); under a
    // loaded machine another drawn executor may miss one too.
    assert!(
        misses > misses_before,
        "{misses} misses, {misses_before} before"
    );

    chain.assert_healthy();
    println!(
        "{} requests; {} inferences finished; {} honest inferences validated by honest hosts; {} validations; {} disputes; invariants held over {} blocks",
        sent.load(Ordering::Relaxed),
        seen.finished.len(),
        validated_honest(&seen),
        seen.validations.len(),
        seen.disputes.len(),
        chain.blocks_checked.load(Ordering::Relaxed)
    );
}
