//! `make bench`: signed `MsgSend` throughput through the whole pipeline, next
//! to the raw secp256k1 verification rate measured in the same run.
//!
//! 1. Raw verify rate: k256 ECDSA verification (SHA-256 of the message plus
//!    the curve check, keys already parsed) over real SignDoc bytes, on one
//!    thread (the baseline) and on all cores.
//! 2. Pipeline: for every block, CheckTx for every tx (one at a time, as a
//!    mempool feeds them), then FinalizeBlock and Commit, on rocksdb in a temp
//!    dir, txs from distinct pre-funded accounts. Signing happens before the
//!    clock starts.
//!
//! Knobs (env): `KILN_BENCH_TXS` (txs per block, default 2500),
//! `KILN_BENCH_BLOCKS` (default 4), `KILN_BENCH_VERIFY_SECS` (default 2).
//! `KILN_BENCH_PROPOSAL=1` also runs PrepareProposal + ProcessProposal and
//! reports them separately (not part of the headline number).

// A benchmark is not consensus code: it reads the wall clock and prints rates.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};
use kiln_app::KilnApp;
use kiln_store::{Storage, StorageConfig};
use kiln_testkit::{msg_send, sign_parts, tx_parts, BlockDriver, TestKey, TxOptions, GENESIS_TIME};
use prost::Message;
use rayon::prelude::*;
use tendermint_abci::Application;
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{
    response_process_proposal::ProposalStatus, RequestCheckTx, RequestFinalizeBlock,
    RequestInitChain, RequestPrepareProposal, RequestProcessProposal,
};
use tendermint_proto::v0_38::types::{BlockParams, ConsensusParams};

const CHAIN_ID: &str = "kiln-bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct VerifyCase {
    key: VerifyingKey,
    msg: Vec<u8>,
    sig: Signature,
}

/// A realistic SignDoc (MsgSend body, auth info with pubkey and fee, chain id,
/// account number) and its signature.
fn verify_case(i: usize) -> VerifyCase {
    let from = TestKey::from_label(&format!("bench-verify-{i}"));
    let to = TestKey::from_label(&format!("bench-verify-to-{i}"));
    let opts = TxOptions::new(CHAIN_ID, i as u64, 7);
    let (body, auth) = tx_parts(&from, vec![msg_send(&from.address, &to.address, 1)], &opts);
    let sig = sign_parts(&from, &body, &auth, &opts);
    let msg = cosmos_sdk_proto::cosmos::tx::v1beta1::SignDoc {
        body_bytes: body,
        auth_info_bytes: auth,
        chain_id: CHAIN_ID.to_string(),
        account_number: i as u64,
    }
    .encode_to_vec();
    VerifyCase {
        key: VerifyingKey::from(&from.signing),
        msg,
        sig: Signature::from_slice(&sig).expect("64-byte signature"),
    }
}

/// Runs `f` over `cases` repeatedly for at least `secs`; returns verifications/s.
fn verify_rate_single(cases: &[VerifyCase], secs: Duration) -> (f64, usize) {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < secs {
        for c in cases {
            c.key.verify(&c.msg, &c.sig).expect("valid signature");
        }
        n += cases.len();
    }
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

fn verify_rate_parallel(cases: &[VerifyCase], secs: Duration) -> (f64, usize) {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < secs {
        cases
            .par_iter()
            .for_each(|c| c.key.verify(&c.msg, &c.sig).expect("valid signature"));
        n += cases.len();
    }
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

#[derive(Default)]
struct BlockTimes {
    check: Duration,
    prepare: Duration,
    process: Duration,
    finalize: Duration,
    commit: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes `--bench`; ignore all arguments.
    let block_txs = env_usize("KILN_BENCH_TXS", 2500).max(1);
    let blocks = env_usize("KILN_BENCH_BLOCKS", 4).max(1);
    let verify_secs = Duration::from_secs(env_usize("KILN_BENCH_VERIFY_SECS", 2) as u64);
    let with_proposal = std::env::var("KILN_BENCH_PROPOSAL").is_ok_and(|v| v == "1");
    let threads = rayon::current_num_threads();

    println!("kiln tx_throughput benchmark");
    println!(
        "  machine: {} rayon threads ({} logical CPUs)",
        threads,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // ---- 1. raw secp256k1 verification ---------------------------------
    let cases: Vec<VerifyCase> = (0..256).into_par_iter().map(verify_case).collect();
    let doc_len = cases[0].msg.len();
    // Warm up caches and the CPU clock.
    let _ = verify_rate_single(&cases, Duration::from_millis(200));
    let (single, single_n) = verify_rate_single(&cases, verify_secs);
    let (parallel, parallel_n) = verify_rate_parallel(&cases, verify_secs);
    println!();
    println!("raw secp256k1 (k256 0.13) ECDSA verify over {doc_len}-byte SignDocs:");
    println!(
        "  1 thread : {single:>10.0} verifications/s  ({single_n} in {:.1}s)",
        verify_secs.as_secs_f64()
    );
    println!(
        "  {threads} threads: {parallel:>10.0} verifications/s  ({parallel_n} in {:.1}s)",
        verify_secs.as_secs_f64()
    );

    // ---- 2. the pipeline ------------------------------------------------
    // Two halves of accounts alternate blocks, so every block's txs come from
    // distinct senders and each sender's sequence advances every other block.
    let n_accounts = block_txs * 2;
    let t = Instant::now();
    let keys: Vec<TestKey> = (0..n_accounts)
        .into_par_iter()
        .map(|i| TestKey::from_label(&format!("bench-account-{i}")))
        .collect();
    let key_refs: Vec<&TestKey> = keys.iter().collect();
    let genesis = BlockDriver::genesis_funding(&key_refs, 1_000_000_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let storage =
        Storage::open(dir.path(), StorageConfig { keep_recent: 0 }).expect("open storage");
    let app = KilnApp::new(storage).expect("app");
    app.init_chain(RequestInitChain {
        time: Some(Timestamp {
            seconds: GENESIS_TIME,
            nanos: 0,
        }),
        chain_id: CHAIN_ID.to_string(),
        // Block gas high enough for the whole block (the driver's default
        // 100M would cap PrepareProposal at a few hundred txs).
        consensus_params: Some(ConsensusParams {
            block: Some(BlockParams {
                max_bytes: 64 << 20,
                max_gas: -1,
            }),
            ..Default::default()
        }),
        validators: Vec::new(),
        app_state_bytes: serde_json::to_vec(&genesis).expect("genesis json").into(),
        initial_height: 1,
    });
    let view = app.latest_view();
    let numbers: Vec<u64> = keys
        .iter()
        .map(|k| {
            kiln_bank::state::AuthExt::account(&view, &k.address)
                .expect("read")
                .expect("funded account")
                .account_number
        })
        .collect();
    drop(view);
    println!();
    println!(
        "pipeline setup: {n_accounts} funded accounts, genesis in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Sign every block's txs up front (not timed).
    let t = Instant::now();
    let all_blocks: Vec<Vec<Vec<u8>>> = (0..blocks)
        .map(|b| {
            let half = b % 2;
            let sequence = (b / 2) as u64;
            (0..block_txs)
                .into_par_iter()
                .map(|i| {
                    let from = half * block_txs + i;
                    let to = (1 - half) * block_txs + i;
                    let mut opts = TxOptions::new(CHAIN_ID, numbers[from], sequence);
                    opts.gas_limit = 200_000;
                    opts.fee = 5_000;
                    let (body, auth) = tx_parts(
                        &keys[from],
                        vec![msg_send(&keys[from].address, &keys[to].address, 1)],
                        &opts,
                    );
                    let signature = sign_parts(&keys[from], &body, &auth, &opts);
                    cosmos_sdk_proto::cosmos::tx::v1beta1::TxRaw {
                        body_bytes: body,
                        auth_info_bytes: auth,
                        signatures: vec![signature],
                    }
                    .encode_to_vec()
                })
                .collect()
        })
        .collect();
    let tx_len = all_blocks[0][0].len();
    println!(
        "signed {} txs ({tx_len} bytes each) in {:.1}s (not timed)",
        blocks * block_txs,
        t.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "{:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "height", "txs", "checktx", "finalize", "commit", "total", "tx/s", "gas/tx"
    );

    let mut per_block: Vec<BlockTimes> = Vec::new();
    let mut total_ok = 0usize;
    for (b, txs) in all_blocks.into_iter().enumerate() {
        let height = b as i64 + 1;
        let time = Some(Timestamp {
            seconds: GENESIS_TIME + height,
            nanos: 0,
        });
        let mut times = BlockTimes::default();

        let t = Instant::now();
        for tx in &txs {
            let r = app.check_tx(RequestCheckTx {
                tx: tx.clone().into(),
                r#type: 0,
            });
            assert_eq!(
                r.code, 0,
                "CheckTx rejected a valid tx at height {height}: {}",
                r.log
            );
        }
        times.check = t.elapsed();

        let block_txs_bytes: Vec<prost::bytes::Bytes> = txs.into_iter().map(Into::into).collect();
        if with_proposal {
            let t = Instant::now();
            let prepared = app.prepare_proposal(RequestPrepareProposal {
                max_tx_bytes: 64 << 20,
                txs: block_txs_bytes.clone(),
                height,
                time,
                ..Default::default()
            });
            times.prepare = t.elapsed();
            assert_eq!(
                prepared.txs.len(),
                block_txs_bytes.len(),
                "PrepareProposal dropped txs"
            );
            let t = Instant::now();
            let status = app.process_proposal(RequestProcessProposal {
                txs: prepared.txs,
                height,
                time,
                ..Default::default()
            });
            times.process = t.elapsed();
            assert_eq!(status.status, ProposalStatus::Accept as i32);
        }

        let t = Instant::now();
        let response = app.finalize_block(RequestFinalizeBlock {
            txs: block_txs_bytes,
            height,
            time,
            ..Default::default()
        });
        times.finalize = t.elapsed();
        let t = Instant::now();
        app.commit();
        times.commit = t.elapsed();

        let ok = response.tx_results.iter().filter(|r| r.code == 0).count();
        if let Some(bad) = response.tx_results.iter().find(|r| r.code != 0) {
            panic!("block {height}: a tx failed: code {} {}", bad.code, bad.log);
        }
        total_ok += ok;
        let gas: i64 =
            response.tx_results.iter().map(|r| r.gas_used).sum::<i64>() / ok.max(1) as i64;
        let total = times.check + times.finalize + times.commit;
        println!(
            "{height:>6} {ok:>6} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>10.0} {gas:>10}",
            ms(times.check),
            ms(times.finalize),
            ms(times.commit),
            ms(total),
            ok as f64 / total.as_secs_f64()
        );
        per_block.push(times);
    }

    let sum = |f: fn(&BlockTimes) -> Duration| per_block.iter().map(f).sum::<Duration>();
    let (check, finalize, commit) = (sum(|t| t.check), sum(|t| t.finalize), sum(|t| t.commit));
    let total = check + finalize + commit;
    let tps = total_ok as f64 / total.as_secs_f64();
    let n = per_block.len() as f64;
    let per_tx_us = |d: Duration| d.as_secs_f64() * 1e6 / total_ok as f64;
    println!();
    println!("pipeline: {total_ok} signed MsgSend txs in {blocks} blocks of {block_txs}, rocksdb in a temp dir");
    println!(
        "  per block (mean): CheckTx {:.1}ms, FinalizeBlock {:.1}ms, Commit {:.1}ms",
        ms(check) / n,
        ms(finalize) / n,
        ms(commit) / n
    );
    println!(
        "  per tx          : CheckTx {:.1}µs, FinalizeBlock {:.1}µs, Commit {:.1}µs",
        per_tx_us(check),
        per_tx_us(finalize),
        per_tx_us(commit)
    );
    if with_proposal {
        let (prepare, process) = (sum(|t| t.prepare), sum(|t| t.process));
        println!(
            "  (not in the headline) PrepareProposal {:.1}ms, ProcessProposal {:.1}ms per block; with them: {:.0} tx/s",
            ms(prepare) / n,
            ms(process) / n,
            total_ok as f64 / (total + prepare + process).as_secs_f64()
        );
    }
    println!();
    println!("RESULT raw_verify_1thread={single:.0}/s raw_verify_all_cores={parallel:.0}/s pipeline={tps:.0}tx/s");
    println!(
        "RESULT ratio pipeline/raw_verify_1thread = {:.2} (target >= 0.50) {}",
        tps / single,
        if tps / single >= 0.5 {
            "OK"
        } else {
            "BELOW TARGET"
        }
    );
    println!(
        "RESULT ratio pipeline/raw_verify_all_cores = {:.2}",
        tps / parallel
    );
}
