//! Issue 15, "Inference across ML nodes": a host with ML nodes executes
//! the requests the draw gives it on the least loaded of its own worker and
//! its ML nodes enabled in force that serve the model, retries on another
//! when one fails, and never routes to a disabled node. Real processes on
//! the devnet node in this process (SPEC §11's invariants after every
//! block): host 0 (weight 80) runs its own worker (the transfer agent at
//! its registered URL) and three ML nodes declared in genesis — `n1`, `n2`
//! enabled, `n3` disabled — each a `kiln-mlworker run --serve-model`
//! with its own ML key; host 1 (weight 20) serves too and validates host
//! 0's work, fetching each payload where it was served. Checked:
//! - concurrent requests spread over the enabled nodes and the host's own
//!   worker; the disabled node gets none; each is served exactly once;
//! - `n1` killed with requests in flight: every request still gets its
//!   answer (retried on another node), every one settles once on chain
//!   (none expires), and the buyer pays exactly the settled sum;
//! - host 1's validator fetches node-served payloads from the nodes and
//!   passes them; the nodes leave the host's validation seeds to its own
//!   worker;
//! - host 0's validation duty spreads the same way: each replay it owes
//!   (every inference host 1 executes, at m = 1) runs once, on the least
//!   loaded of its own worker and its enabled nodes, never on the disabled
//!   one, and its own worker posts the validation.

// A test, not consensus code: it waits on the wall clock for processes.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod worker_procs;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use kiln_client::rpc::RpcClient;
use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_testkit::TestKey;
use serde_json::{json, Value};
use worker_procs::{free_port, post, start_chain, worker_bin, Seen, ServingWorker, Workers};

const CHAIN: &str = "kiln-routing";
const MODEL: &str = "smollm2-135m";
const BLOCK_TIME: Duration = Duration::from_millis(200);
/// The workers: host 0's own worker, its nodes n1, n2, n3 (disabled), host 1's worker.
const NAMES: [&str; 5] = ["host0", "n1", "n2", "n3", "host1"];
const N1: usize = 1;
const N2: usize = 2;
const N3: usize = 3;

fn spawn_worker(home: &Path, rpc_url: &str, host: &Address, name: &str, port: u16) -> Child {
    ServingWorker {
        node: rpc_url,
        host,
        key: &format!("{name}-ml"),
        home,
        port,
        journal: &home.join(format!("journal-{name}")),
        log: &home.join(format!("{name}.log")),
        model: MODEL,
    }
    .spawn()
}

fn logs(home: &Path) -> String {
    NAMES
        .iter()
        .map(|name| {
            let text =
                std::fs::read_to_string(home.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            format!(
                "--- {name} ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which of host 0's workers kept the payload of `id` (the one that served it).
fn served_by(home: &Path, id: &[u8; 32]) -> Vec<&'static str> {
    NAMES[..4]
        .iter()
        .filter(|name| {
            home.join(format!("journal-{name}"))
                .join("payloads")
                .join(format!("{}.json", hex::encode(id)))
                .exists()
        })
        .copied()
        .collect()
}

/// The requests of `ids` not finished on chain, with whether they started
/// and every log line that names them.
fn unsettled(home: &Path, ids: &[[u8; 32]], seen: &Seen) -> String {
    let mut out = String::new();
    for id in ids.iter().filter(|id| !seen.finished.contains_key(*id)) {
        let hex_id = hex::encode(id);
        out.push_str(&format!(
            "unsettled {hex_id}: started {:?}\n",
            seen.started.get(id)
        ));
        for name in NAMES {
            let log = std::fs::read_to_string(home.join(format!("{name}.log"))).unwrap_or_default();
            for line in log.lines().filter(|l| l.contains(&hex_id[..8])) {
                out.push_str(&format!("  {name}: {line}\n"));
            }
        }
    }
    out
}

/// Whether the worker at `url` has a request queued or running.
fn node_is_busy(url: &str) -> bool {
    let Ok(r) = ureq::get(&format!("{url}/metrics")).call() else {
        return false;
    };
    let text = r.into_string().unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("kiln_inference_queue_depth ")
                || l.starts_with("kiln_inference_batch_size ")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .any(|v| v >= 1.0)
}

/// Where host 0 ran the replay of `id` for its validation duty: its own
/// worker ("host0") or one of its nodes, from their logs.
fn replayed_at(home: &Path, id: &[u8; 32]) -> Vec<&'static str> {
    let id = hex::encode(id);
    NAMES[..4]
        .iter()
        .filter(|name| {
            let log = std::fs::read_to_string(home.join(format!("{name}.log"))).unwrap_or_default();
            let line = if **name == "host0" {
                format!("replayed inference {id} here")
            } else {
                format!("replayed inference {id} for the host's validation duty")
            };
            log.contains(&line)
        })
        .copied()
        .collect()
}

/// The signed headers of a replay request (the worker's
/// `validator::replay_sign_bytes`, written out as the protocol says).
fn replay_headers(
    key: &k256::ecdsa::SigningKey,
    id: &[u8; 32],
    host: &Address,
    timestamp: i64,
) -> Vec<(&'static str, String)> {
    use k256::ecdsa::signature::Signer;
    let mut bytes = b"kiln/replay-request/v1".to_vec();
    bytes.extend_from_slice(&(CHAIN.len() as u32).to_be_bytes());
    bytes.extend_from_slice(CHAIN.as_bytes());
    bytes.extend_from_slice(id);
    bytes.extend_from_slice(&timestamp.to_be_bytes());
    bytes.extend_from_slice(host.as_bytes());
    let signature: k256::ecdsa::Signature = key.sign(&bytes);
    vec![
        ("x-kiln-validator", host.to_bech32()),
        (
            "x-kiln-validator-pubkey",
            hex::encode(kiln_client::keyring::compressed_pubkey(key)),
        ),
        ("x-kiln-timestamp", timestamp.to_string()),
        ("x-kiln-signature", hex::encode(signature.to_bytes())),
    ]
}

/// Like [`buy`], each of `threads` threads sending one request after
/// another until `stop` is set.
fn buy_until(
    buyer: &TestKey,
    ta: Address,
    url: &str,
    threads: usize,
    max_tokens: u64,
    tag: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(u16, [u8; 32], Value)>> {
    let (signing, url, tag) = (buyer.signing.clone(), url.to_string(), tag.to_string());
    std::thread::spawn(move || {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (signing, url, tag, stop) = (signing.clone(), url.clone(), tag.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut answers = Vec::new();
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let body = json!({"model": MODEL, "prompt": format!("{tag} {t}-{i}: count on."),
                            "max_tokens": max_tokens, "temperature": 0});
                        let s = kiln_client::inference::sign_body(&signing, CHAIN, &ta, body, max_tokens)
                            .unwrap();
                        let (code, answer) = post(&url, &s.body, &s.headers);
                        answers.push((code, s.id, answer));
                        i += 1;
                    }
                    answers
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Sends `count` signed completions through host 0's worker from `threads`
/// threads; each answer's status and the request id.
fn buy(
    buyer: &TestKey,
    ta: Address,
    url: &str,
    count: usize,
    threads: usize,
    max_tokens: u64,
    tag: &str,
) -> std::thread::JoinHandle<Vec<(u16, [u8; 32], Value)>> {
    let (signing, url, tag) = (buyer.signing.clone(), url.to_string(), tag.to_string());
    std::thread::spawn(move || {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (signing, url, tag) = (signing.clone(), url.clone(), tag.clone());
                std::thread::spawn(move || {
                    (0..count / threads)
                        .map(|i| {
                            let body = json!({"model": MODEL, "prompt": format!("{tag} {t}-{i}: count on."),
                                "max_tokens": max_tokens, "temperature": 0});
                            let s = kiln_client::inference::sign_body(&signing, CHAIN, &ta, body, max_tokens)
                                .unwrap();
                            let (code, answer) = post(&url, &s.body, &s.headers);
                            (code, s.id, answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn a_host_routes_inference_over_its_enabled_ml_nodes_and_retries_a_killed_one() {
    worker_bin(); // built, or a clear failure before the chain starts
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_path_buf();
    let hosts = [
        TestKey::from_label("routing-host-0"),
        TestKey::from_label("routing-host-1"),
    ];
    let buyer = TestKey::from_label("routing-buyer");
    let ports: Vec<u16> = NAMES.iter().map(|_| free_port()).collect();
    let url = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    let host_of = |i: usize| if i == 4 { &hosts[1] } else { &hosts[0] };

    let mut genesis = kiln_genesis::AppGenesis::with_devnet_params();
    // No epoch boundary during the test: the genesis weights and nodes hold.
    genesis.epochs.params.sprint_blocks = 1_000_000;
    genesis.epochs.params.epoch_length = 2_000_000;
    // Long enough for n1, killed with a finish not yet sent, to come back
    // and send it from its journal.
    genesis.inference.params.inference_timeout_blocks = 600;
    genesis.inference.params.record_retention_blocks = 100_000;
    genesis.inference.params.draw_window_blocks = 100;
    genesis.inference.params.dispute_blocks = 150;
    genesis.add_balance(
        buyer.address,
        vec![Coin::new(BASE_DENOM, 1_000_000_000_000)],
    );
    let mut ml_keys = BTreeMap::new();
    let mut ml_signers = BTreeMap::new();
    for name in NAMES {
        let mnemonic = kiln_client::keyring::generate_mnemonic();
        let k = kiln_client::write_test_key(&home, &format!("{name}-ml"), &mnemonic).unwrap();
        ml_keys.insert(name, Address::parse(&k.address).unwrap());
        ml_signers.insert(
            name,
            kiln_client::keyring::derive_signing_key(&mnemonic).unwrap(),
        );
    }
    for (i, (host, weight)) in hosts.iter().zip([80u64, 20]).enumerate() {
        genesis.add_balance(host.address, vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
        let consensus = ed25519_dalek::SigningKey::from_bytes(&[i as u8 + 1; 32]);
        genesis.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: host.address,
            worker_url: url(if i == 0 { 0 } else { 4 }),
            consensus_pubkey: hex::encode(consensus.verifying_key().as_bytes()),
            models: vec![MODEL.into()],
            hardware: "test cpu".into(),
            weight,
        });
    }
    for (i, name) in NAMES.iter().enumerate() {
        let ml = ml_keys[name];
        genesis.add_balance(ml, vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
        genesis.add_ml_ops_grants(host_of(i).address, ml);
        if (N1..=N3).contains(&i) {
            genesis.hosts.ml_nodes.push(kiln_hosts::GenesisMlNode {
                host: hosts[0].address,
                id: name.to_string(),
                worker_url: url(i),
                models: vec![MODEL.into()],
                hardware: "test cpu".into(),
                ml_key: ml,
                enabled: i != N3,
            });
        }
    }
    let mut model = kiln_genesis::devnet_model();
    model.price_floor_pkiln = 1_000_000; // 1 ukiln per token
    genesis.inference.models = vec![model];
    let (chain, rpc_url) = start_chain(&home, CHAIN, "routing", &genesis, BLOCK_TIME);
    let rpc = RpcClient::new(&rpc_url);

    let mut workers = Workers(
        NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| spawn_worker(&home, &rpc_url, &host_of(i).address, name, ports[i]))
            .collect(),
    );
    let ready_by = Instant::now() + Duration::from_secs(600);
    for i in 0..NAMES.len() {
        while ureq::get(&format!("{}/v1/models", url(i))).call().is_err() {
            chain.assert_healthy();
            for (j, w) in workers.0.iter_mut().enumerate() {
                if let Ok(Some(status)) = w.try_wait() {
                    panic!("worker {} exited ({status}):\n{}", NAMES[j], logs(&home));
                }
            }
            assert!(
                Instant::now() < ready_by,
                "the workers did not load the model:\n{}",
                logs(&home)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // The hosts' own workers commit the validation seeds; the nodes do not.
    for host in &hosts {
        let by = Instant::now() + Duration::from_secs(120);
        while kiln_client::query::validation_seeds(&rpc, &host.address.to_bech32(), 0).unwrap()
            ["seeds"]
            .as_array()
            .map_or(0, |s| s.len())
            < 2
        {
            assert!(
                Instant::now() < by,
                "{} committed no seeds\n{}",
                host.address,
                logs(&home)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let n1_log = std::fs::read_to_string(home.join("n1.log")).unwrap();
    assert!(n1_log.contains("one of the host's ML nodes"), "{n1_log}");

    let completions = format!("{}/v1/completions", url(0));
    let balance_before =
        kiln_bank::state::balance_readonly(&chain.app().latest_view(), &buyer.address, BASE_DENOM)
            .unwrap();

    // Phase 1: concurrent requests spread over the enabled targets.
    let phase1 = buy(&buyer, hosts[0].address, &completions, 18, 3, 3, "spread")
        .join()
        .unwrap();
    for (code, _, answer) in &phase1 {
        assert_eq!(*code, 200, "{answer}\n{}", logs(&home));
    }

    // Phase 2: n1 killed with a request in flight; every answer still
    // comes. Requests keep coming until n1 holds one (its metrics say so:
    // the least loaded routing may keep it busy with validation replays
    // for a while), then it is killed at once.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let phase2 = buy_until(
        &buyer,
        hosts[0].address,
        &completions,
        3,
        48,
        "retry",
        stop.clone(),
    );
    let busy_by = Instant::now() + Duration::from_secs(90);
    while !node_is_busy(&url(N1)) {
        assert!(
            Instant::now() < busy_by,
            "n1 never got a request to hold\n{}",
            logs(&home)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = workers.0[N1].kill();
    let _ = workers.0[N1].wait();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let phase2 = phase2.join().unwrap();
    for (code, _, answer) in &phase2 {
        assert_eq!(
            *code,
            200,
            "a request lost with its node: {answer}\n{}",
            logs(&home)
        );
    }
    let front_log = std::fs::read_to_string(home.join("host0.log")).unwrap();
    assert!(
        front_log.contains("did not take the request; trying another"),
        "no request was retried away from the killed node\n{}",
        logs(&home)
    );
    // n1 back (its payloads are on its disk for the validators).
    workers.0[N1] = spawn_worker(&home, &rpc_url, &hosts[0].address, "n1", ports[N1]);

    // Every request settles exactly once; none expires.
    let ids: Vec<[u8; 32]> = phase1.iter().chain(&phase2).map(|(_, id, _)| *id).collect();
    let mut seen = Seen::default();
    let by = Instant::now() + Duration::from_secs(120);
    while !ids.iter().all(|id| seen.finished.contains_key(id)) {
        chain.assert_healthy();
        assert!(
            Instant::now() < by,
            "not every request settled (chain at {})\n{}\n{}",
            chain.handle.height(),
            unsettled(&home, &ids, &seen),
            logs(&home)
        );
        std::thread::sleep(Duration::from_millis(300));
        seen.follow(&rpc);
    }
    assert!(
        ids.iter().all(|id| !seen.expired.contains_key(id)),
        "an inference expired"
    );
    let height = chain.handle.height();
    let mut paid: u128 = 0;
    for id in &ids {
        let rec = kiln_client::query::inference(&rpc, &hex::encode(id), height)
            .unwrap()
            .unwrap();
        paid += rec["paid"].as_str().unwrap().parse::<u128>().unwrap();
    }
    let balance_after =
        kiln_client::query::balance(&rpc, &buyer.address.to_bech32(), BASE_DENOM, height)
            .unwrap()
            .amount
            .parse::<u128>()
            .unwrap();
    assert_eq!(
        balance_before - balance_after,
        paid,
        "the buyer pays exactly the settled sum"
    );

    // Where host 0's requests ran: each on exactly one of its workers, never n3.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &ids {
        let executor = seen.finished[id].0;
        if executor != hosts[0].address {
            continue;
        }
        let at = served_by(&home, id);
        assert_eq!(at.len(), 1, "{} served by {at:?}", hex::encode(id));
        *count.entry(at[0]).or_default() += 1;
    }
    assert_eq!(
        count.get("n3"),
        None,
        "a disabled node got requests: {count:?}"
    );
    assert!(
        count.get("n1").is_some_and(|c| *c > 0) && count.get("n2").is_some_and(|c| *c > 0),
        "requests did not spread over the enabled nodes: {count:?}"
    );
    eprintln!("host 0's requests by worker: {count:?}");

    // Host 1 validates host 0's work where it ran: n2's payloads pass.
    let n2_ids: Vec<[u8; 32]> = ids
        .iter()
        .filter(|id| served_by(&home, id) == [NAMES[N2]])
        .copied()
        .collect();
    let by = Instant::now() + Duration::from_secs(180);
    while !n2_ids
        .iter()
        .all(|id| seen.validations.contains_key(&(*id, hosts[1].address)))
    {
        chain.assert_healthy();
        assert!(
            Instant::now() < by,
            "host 1 did not validate n2's work\n{}",
            logs(&home)
        );
        std::thread::sleep(Duration::from_millis(500));
        seen.follow(&rpc);
    }
    for id in &n2_ids {
        let score = seen.validations[&(*id, hosts[1].address)];
        assert!(score >= 995_000, "{}: score {score}", hex::encode(id));
    }

    // Phase 3: host 0's validation duty. At m = 1 it owes a validation of
    // every inference host 1 executes (it is the only other host); short
    // requests are bought until host 1 has executed six.
    let mut all_ids = ids.clone();
    let host1_ids = |seen: &Seen, all: &[[u8; 32]]| -> Vec<[u8; 32]> {
        all.iter()
            .filter(|id| {
                seen.finished
                    .get(*id)
                    .is_some_and(|f| f.0 == hosts[1].address)
            })
            .copied()
            .collect()
    };
    let mut round = 0;
    while host1_ids(&seen, &all_ids).len() < 6 {
        round += 1;
        assert!(
            round <= 8,
            "host 1 executed {} of {} requests",
            host1_ids(&seen, &all_ids).len(),
            all_ids.len()
        );
        let batch = buy(
            &buyer,
            hosts[0].address,
            &completions,
            9,
            3,
            2,
            &format!("validate-{round}"),
        )
        .join()
        .unwrap();
        for (code, _, answer) in &batch {
            assert_eq!(*code, 200, "{answer}\n{}", logs(&home));
        }
        all_ids.extend(batch.iter().map(|(_, id, _)| *id));
        let by = Instant::now() + Duration::from_secs(120);
        while !all_ids.iter().all(|id| seen.finished.contains_key(id)) {
            chain.assert_healthy();
            assert!(
                Instant::now() < by,
                "not every request settled\n{}",
                logs(&home)
            );
            std::thread::sleep(Duration::from_millis(300));
            seen.follow(&rpc);
        }
    }
    let owed = host1_ids(&seen, &all_ids);
    let by = Instant::now() + Duration::from_secs(300);
    while !owed
        .iter()
        .all(|id| seen.validations.contains_key(&(*id, hosts[0].address)))
    {
        chain.assert_healthy();
        assert!(
            Instant::now() < by,
            "host 0 did not validate host 1's work\n{}",
            logs(&home)
        );
        std::thread::sleep(Duration::from_millis(500));
        seen.follow(&rpc);
    }
    let mut replays: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &owed {
        let score = seen.validations[&(*id, hosts[0].address)];
        assert!(score >= 995_000, "{}: score {score}", hex::encode(id));
        let at = replayed_at(&home, id);
        assert_eq!(at.len(), 1, "{} replayed at {at:?}", hex::encode(id));
        *replays.entry(at[0]).or_default() += 1;
    }
    eprintln!("host 0's validation replays by worker: {replays:?}");
    assert_eq!(
        replays.get("n3"),
        None,
        "a disabled node replayed: {replays:?}"
    );
    assert!(
        replays.get("n1").is_some_and(|c| *c > 0) || replays.get("n2").is_some_and(|c| *c > 0),
        "host 0's replays did not spread to its ML nodes: {replays:?}"
    );
    // The node's replay endpoint works for its host's keys only, and says
    // why it refuses anything else.
    let replay_url = format!("{}/kiln/replay", url(N2));
    let body =
        json!({"id": hex::encode(owed[0]), "executor": hosts[1].address.to_bech32()}).to_string();
    let (code, answer) = post(&replay_url, body.as_bytes(), &[]);
    assert_eq!(code, 403, "unsigned: {answer}");
    let signed = |signer: &str, host: &Address, ts: i64| {
        replay_headers(&ml_signers[signer], &owed[0], host, ts)
    };
    let now = worker_procs::unix_now();
    for (signer, host, ts, why) in [
        ("host1", &hosts[1].address, now, "another host"),
        (
            "host1",
            &hosts[0].address,
            now,
            "a key without host 0's grant",
        ),
        ("host0", &hosts[0].address, now - 300, "a stale timestamp"),
    ] {
        let (code, answer) = post(&replay_url, body.as_bytes(), &signed(signer, host, ts));
        assert_eq!(code, 403, "{why}: {answer}");
        assert!(
            answer["error"]["message"].as_str().is_some(),
            "{why}: {answer}"
        );
    }
    let (code, answer) = post(
        &replay_url,
        b"{\"id\": 7}",
        &signed("host0", &hosts[0].address, now),
    );
    assert_eq!(code, 400, "a malformed body: {answer}");
    let (code, answer) = post(
        &replay_url,
        body.as_bytes(),
        &signed("host0", &hosts[0].address, now),
    );
    assert_eq!(code, 200, "host 0's own key: {answer}");
    assert!(
        answer["score_micro"].as_u64().is_some_and(|s| s >= 995_000),
        "an honest replay on a node: {answer}"
    );
    let unknown =
        json!({"id": "00".repeat(32), "executor": hosts[1].address.to_bech32()}).to_string();
    let (code, answer) = post(&replay_url, unknown.as_bytes(), &{
        let ts = worker_procs::unix_now();
        replay_headers(&ml_signers["host0"], &[0; 32], &hosts[0].address, ts)
    });
    assert_eq!(code, 422, "an inference the chain does not know: {answer}");
    assert_eq!(answer["error"]["code"], "payload_unavailable", "{answer}");

    // The nodes never posted validations or seeds themselves: every
    // validation above is host 0's, sent by its own worker's key.
    for name in ["n1", "n2"] {
        let log = std::fs::read_to_string(home.join(format!("{name}.log"))).unwrap();
        assert!(
            !log.contains("validation queued"),
            "{name} queued a validation:\n{log}"
        );
    }
    chain.assert_healthy();
}
