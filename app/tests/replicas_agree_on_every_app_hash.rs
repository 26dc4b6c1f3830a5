//! Determinism (ARCHITECTURE.md testing layer 3): three replicas fed the same
//! 200+ blocks of random valid and invalid transactions agree on the app hash
//! at every height; a replica killed mid-run — once after a commit, once
//! between FinalizeBlock and Commit — reopens from disk and converges; the
//! SPEC §11 invariants hold on every replica after every block.

use kiln_testkit::{msg_exec, msg_grant, msg_revoke, msg_send, sign_tx, BlockDriver, TestKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tendermint_abci::Application;

const CHAIN: &str = "kiln-determinism";
const BLOCKS: u64 = 210;

fn random_block(rng: &mut StdRng, keys: &[TestKey], reference: &BlockDriver) -> Vec<Vec<u8>> {
    let mut sequences: Vec<(u64, u64)> = keys
        .iter()
        .map(|k| reference.account(&k.address).unwrap_or((0, 0)))
        .collect();
    let mut txs = Vec::new();
    for _ in 0..rng.gen_range(0..8) {
        let from = rng.gen_range(0..keys.len());
        let to = rng.gen_range(0..keys.len());
        let (number, sequence) = sequences[from];
        let mut opts = reference.opts_for(&keys[from]);
        opts.account_number = number;
        opts.sequence = sequence;
        let kind = rng.gen_range(0..100);
        let tx = match kind {
            0..=49 => sign_tx(
                &keys[from],
                vec![msg_send(
                    &keys[from].address,
                    &keys[to].address,
                    rng.gen_range(1..50_000),
                )],
                &opts,
            ),
            50..=54 => (0..rng.gen_range(1..200)).map(|_| rng.gen()).collect(), // garbage
            55..=59 => {
                opts.sequence += rng.gen_range(1..3); // wrong sequence
                sign_tx(
                    &keys[from],
                    vec![msg_send(&keys[from].address, &keys[to].address, 1)],
                    &opts,
                )
            }
            60..=64 => {
                opts.fee = rng.gen_range(0..5_000); // below the floor
                sign_tx(
                    &keys[from],
                    vec![msg_send(&keys[from].address, &keys[to].address, 1)],
                    &opts,
                )
            }
            65..=69 => sign_tx(
                &keys[from],
                vec![msg_send(
                    &keys[from].address,
                    &keys[to].address,
                    10u128.pow(15),
                )],
                &opts,
            ), // overspend
            70..=79 => sign_tx(
                &keys[from],
                vec![msg_grant(
                    &keys[from].address,
                    &keys[to].address,
                    kiln_bank::handler::MSG_SEND_TYPE_URL,
                    None,
                )],
                &opts,
            ),
            80..=84 => sign_tx(
                &keys[from],
                vec![msg_revoke(
                    &keys[from].address,
                    &keys[to].address,
                    kiln_bank::handler::MSG_SEND_TYPE_URL,
                )],
                &opts,
            ),
            85..=94 => {
                let victim = rng.gen_range(0..keys.len());
                let inner = msg_send(
                    &keys[victim].address,
                    &keys[from].address,
                    rng.gen_range(1..1_000),
                );
                sign_tx(
                    &keys[from],
                    vec![msg_exec(&keys[from].address, vec![inner])],
                    &opts,
                )
            }
            _ => {
                opts.gas_limit = rng.gen_range(1_000..20_000); // out of gas
                opts.fee = 1_000;
                sign_tx(
                    &keys[from],
                    vec![msg_send(&keys[from].address, &keys[to].address, 1)],
                    &opts,
                )
            }
        };
        // Only transactions that would pass the ante advance the expected sequence.
        if kind < 50 || (65..95).contains(&kind) {
            sequences[from].1 += 1;
        }
        txs.push(tx);
    }
    txs
}

#[test]
fn three_replicas_and_a_crashing_one_agree_on_every_app_hash() {
    let keys: Vec<TestKey> = (0..8)
        .map(|i| TestKey::from_label(&format!("replica-key-{i}")))
        .collect();
    let genesis = BlockDriver::genesis_funding(&keys.iter().collect::<Vec<_>>(), 10_000_000_000);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas: Vec<BlockDriver> = dirs
        .iter()
        .map(|d| BlockDriver::open(d.path(), CHAIN, &genesis, 20).unwrap())
        .collect();
    assert!(
        replicas
            .windows(2)
            .all(|w| w[0].last_app_hash == w[1].last_app_hash),
        "genesis hashes differ"
    );

    let mut rng = StdRng::seed_from_u64(0x6b69_6c6e);
    let mut successes = 0usize;
    let mut failures = 0usize;
    for height in 1..=BLOCKS {
        let txs = random_block(&mut rng, &keys, &replicas[0]);
        if height == 70 {
            // Replica 2 dies right after committing block 69: reopen it.
            let path = dirs[2].path();
            drop(replicas.remove(2));
            replicas.push(BlockDriver::open(path, CHAIN, &genesis, 20).unwrap());
            assert_eq!(replicas[2].height, 69);
        }
        if height == 140 {
            // Replica 2 executes block 140 but dies before Commit: on reopen it is
            // back at 139 and CometBFT replays the block.
            let request = tendermint_proto::v0_38::abci::RequestFinalizeBlock {
                txs: txs.iter().cloned().map(Into::into).collect(),
                height: 140,
                ..Default::default()
            };
            let _ = replicas[2].app.finalize_block(request);
            let path = dirs[2].path();
            drop(replicas.remove(2));
            replicas.push(BlockDriver::open(path, CHAIN, &genesis, 20).unwrap());
            assert_eq!(replicas[2].height, 139);
        }
        let outcomes: Vec<_> = replicas
            .iter_mut()
            .map(|r| r.deliver(txs.clone()).unwrap())
            .collect();
        let hashes: Vec<_> = outcomes
            .iter()
            .map(|o| o.response.app_hash.to_vec())
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "app hashes diverge at height {height}"
        );
        let results: Vec<_> = outcomes
            .iter()
            .map(|o| o.response.tx_results.clone())
            .collect();
        assert!(
            results.windows(2).all(|w| w[0] == w[1]),
            "tx results diverge at height {height}"
        );
        for r in &outcomes[0].response.tx_results {
            if r.code == 0 {
                successes += 1
            } else {
                failures += 1
            }
        }
        // Committed root equals the hash FinalizeBlock announced.
        let committed = replicas[0].app.info(Default::default());
        assert_eq!(committed.last_block_app_hash.to_vec(), hashes[0]);
        // SPEC §11 invariants on every replica (including the reopened one).
        for r in &replicas {
            if let Err(e) = r.check_invariants() {
                panic!("invariant broken at height {height}: {e:#}");
            }
        }
    }
    assert!(
        successes > 200 && failures > 200,
        "the random mix must exercise both paths: {successes} ok, {failures} failed"
    );
}
