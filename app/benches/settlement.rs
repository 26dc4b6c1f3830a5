//! `make bench`: inference settlement — `MsgStartInference` +
//! `MsgFinishInference` pairs per second through FinalizeBlock and Commit on
//! rocksdb (issue 12's target: ≥ 5 000 pairs/s), next to the single-thread
//! secp256k1 verification rate measured in the same run (each pair costs at
//! least one: the requester's signature, which the chain checks inside the
//! start).
//!
//! Set-up (not timed): `KILN_BENCH_HOSTS` hosts with weight serving one
//! model, 1 000 funded requesters. Each transfer agent batches its starts
//! `KILN_BENCH_BATCH` to a tx, as a busy worker would, and each executor its
//! finishes. Block b carries the starts of its requests and the finishes of
//! block b − 1's, so every timed block settles `KILN_BENCH_PAIRS` pairs.
//! Requests are signed and drawn (as the transfer agent does) between
//! blocks. Every tx goes through CheckTx first, as in a node's mempool:
//! CheckTx verifies the requester signatures (a start with a bad one never
//! reaches a block) and caches them, so FinalizeBlock re-checks from the
//! cache. The headline is FinalizeBlock + Commit; the rate including
//! CheckTx is printed too.

// A benchmark is not consensus code: it reads the wall clock and prints rates.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k256::ecdsa::signature::Verifier;
use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_testkit::inference::{finish_msg, SignedRequest};
use kiln_testkit::{
    any_of, sign_tx, BlockDriver, ConsensusTestKey, TestKey, TxOptions, GENESIS_TIME,
};
use rayon::prelude::*;

const CHAIN: &str = "kiln-bench-settlement";
const MODEL: &str = "smollm2-135m";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let pairs = env_usize("KILN_BENCH_PAIRS", 5_000).max(1);
    let blocks = env_usize("KILN_BENCH_BLOCKS", 4).max(1);
    let n_hosts = env_usize("KILN_BENCH_HOSTS", 20).max(1);
    let batch = env_usize("KILN_BENCH_BATCH", 100).max(1);
    println!("kiln settlement benchmark: {pairs} start+finish pairs per block, {blocks} timed blocks, {n_hosts} hosts, {batch} messages per tx");

    // ---- baseline: one secp256k1 verification, single thread ----------
    let key = TestKey::from_label("bench-settle-verify");
    let request = SignedRequest::new(&key, CHAIN, Address([1; 20]), MODEL, b"{}", 16, 0);
    let msg = request.header.sign_bytes();
    let vk = k256::ecdsa::VerifyingKey::from(&key.signing);
    let sig = k256::ecdsa::Signature::from_slice(&request.signature).expect("signature");
    let t = Instant::now();
    let mut verified = 0u64;
    while t.elapsed() < Duration::from_secs(2) {
        for _ in 0..256 {
            vk.verify(&msg, &sig).expect("valid");
        }
        verified += 256;
    }
    let verify_rate = verified as f64 / t.elapsed().as_secs_f64();
    println!("baseline: {verify_rate:.0} secp256k1 verifications/s on one thread");

    // ---- the chain -------------------------------------------------------
    let hosts: Vec<TestKey> = (0..n_hosts)
        .map(|i| TestKey::from_label(&format!("bench-settle-host-{i}")))
        .collect();
    let requesters: Vec<TestKey> = (0..1_000)
        .into_par_iter()
        .map(|i| TestKey::from_label(&format!("bench-settle-requester-{i}")))
        .collect();
    let mut g = kiln_genesis::AppGenesis::default();
    for r in &requesters {
        g.add_balance(r.address, vec![Coin::new(BASE_DENOM, 1_000_000_000_000)]);
    }
    for (i, h) in hosts.iter().enumerate() {
        g.add_balance(h.address, vec![Coin::new(BASE_DENOM, 1_000_000_000_000)]);
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: h.address,
            worker_url: format!("http://host{i}.bench:8080"),
            consensus_pubkey: hex::encode(
                ConsensusTestKey::from_label(&format!("bench-settle-host-{i}")).public,
            ),
            models: vec![MODEL.into()],
            hardware: "bench".into(),
            weight: 100,
        });
    }
    g.inference.models.push(kiln_genesis::devnet_model());
    g.inference.params.max_request_tokens = 1 << 20;
    // Room for every pair's tokens without pushing the price around.
    g.inference.params.block_token_capacity = 1 << 40;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut d = BlockDriver::open(
        dir.path(),
        CHAIN,
        &serde_json::to_value(&g).expect("genesis"),
        0,
    )
    .expect("open the chain");
    d.deliver(vec![]).expect("first block");
    let host_index: BTreeMap<Address, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.address, i))
        .collect();
    let numbers: Vec<u64> = hosts
        .iter()
        .map(|h| d.account(&h.address).expect("host account").0)
        .collect();
    let mut sequences = vec![0u64; n_hosts];

    // One block's txs: this block's starts (batched per transfer agent)
    // and the previous block's finishes (batched per executor).
    let mut pending_finishes: Vec<(Address, [u8; 32])> = Vec::new();
    let mut next_request = 0usize;
    let mut rows = Vec::new();
    for b in 0..=blocks {
        let seed_height = d.height;
        let now = GENESIS_TIME + d.height as i64 + 1;
        let view = d.app.latest_view();
        let made: Vec<(
            usize,
            kiln_inference::msgs::MsgStartInference,
            Address,
            [u8; 32],
        )> = (next_request..next_request + pairs)
            .into_par_iter()
            .map(|i| {
                let ta = i % n_hosts;
                let r = SignedRequest::new(
                    &requesters[i % requesters.len()],
                    CHAIN,
                    hosts[ta].address,
                    MODEL,
                    format!("request {i}").as_bytes(),
                    64,
                    now,
                );
                let executor = r.draw(&view, seed_height).expect("a drawn executor");
                (ta, r.start_msg(32, executor, seed_height), executor, r.id())
            })
            .collect();
        drop(view);
        next_request += pairs;
        let mut by_signer: BTreeMap<usize, Vec<cosmos_sdk_proto::Any>> = BTreeMap::new();
        for (ta, start, _, _) in &made {
            by_signer.entry(*ta).or_default().push(any_of(start));
        }
        for (executor, id) in &pending_finishes {
            by_signer
                .entry(host_index[executor])
                .or_default()
                .push(any_of(&finish_msg(*executor, *id, 20, id)));
        }
        let mut jobs = Vec::new();
        for (signer, msgs) in by_signer {
            for chunk in msgs.chunks(batch) {
                jobs.push((signer, sequences[signer], chunk.to_vec()));
                sequences[signer] += 1;
            }
        }
        let txs: Vec<Vec<u8>> = jobs
            .into_par_iter()
            .map(|(signer, sequence, msgs)| {
                let mut opts = TxOptions::new(CHAIN, numbers[signer], sequence);
                opts.gas_limit = 40_000_000;
                opts.fee = 1_000_000;
                sign_tx(&hosts[signer], msgs, &opts)
            })
            .collect();
        let finishes = pending_finishes.len();
        pending_finishes = made.iter().map(|(_, _, e, id)| (*e, *id)).collect();

        let t = Instant::now();
        for tx in &txs {
            let r = d.submit(tx.clone());
            assert_eq!(r.code, 0, "CheckTx refused a settlement tx: {}", r.log);
        }
        d.mempool.clear();
        let check = t.elapsed();
        let t = Instant::now();
        let response = d.finalize_next(&txs).expect("finalize");
        let finalize = t.elapsed();
        let t = Instant::now();
        let out = d.commit_finalized(txs, response).expect("commit");
        let commit = t.elapsed();
        let block = finalize + commit;
        if let Some(bad) = out.response.tx_results.iter().find(|r| r.code != 0) {
            panic!(
                "block {}: a tx failed: {} {}",
                out.height, bad.code, bad.log
            );
        }
        if b == 0 {
            println!("warm-up block {}: {pairs} starts only", out.height);
            continue;
        }
        let rate = pairs as f64 / block.as_secs_f64();
        println!(
            "block {:>3}: {pairs} starts + {finishes} finishes in {} txs: FinalizeBlock {:>7.1} ms + Commit {:>6.1} ms ({rate:>6.0} pairs/s), CheckTx {:>7.1} ms",
            out.height,
            out.response.tx_results.len(),
            finalize.as_secs_f64() * 1e3,
            commit.as_secs_f64() * 1e3,
            check.as_secs_f64() * 1e3
        );
        rows.push((block, check));
    }
    d.check_invariants()
        .expect("SPEC §11 invariants after the benchmark");
    let median = |f: &dyn Fn(&(Duration, Duration)) -> Duration| {
        let mut v: Vec<Duration> = rows.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let block = median(&|r| r.0);
    let with_check = median(&|r| r.0 + r.1);
    let rate = pairs as f64 / block.as_secs_f64();
    println!();
    println!(
        "RESULT settlement: {rate:.0} start+finish pairs/s through FinalizeBlock+Commit (median block {:.1} ms; target >= 5000) = {:.2} x the single-thread verify rate {verify_rate:.0}/s",
        block.as_secs_f64() * 1e3,
        rate / verify_rate
    );
    println!(
        "RESULT settlement incl. CheckTx (where requester signatures are verified and cached): {:.0} pairs/s (median {:.1} ms per block)",
        pairs as f64 / with_check.as_secs_f64(),
        with_check.as_secs_f64() * 1e3
    );
}
