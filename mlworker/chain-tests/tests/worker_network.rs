//! Whole-network scenarios of the worker (issue 4): several `Worker`
//! instances — the same code `kiln-mlworker run` runs, with the real libtorch
//! sprint engine on the devnet preset — follow one chain driven block by block
//! by the in-process block driver. Every worker message goes through the
//! host's ML operational key inside `MsgExec`, through CheckTx, into blocks.
//!
//! Checked: weights follow compute budgets (statistical bound below), a host
//! fabricating 10% of its shares is voted invalid (weight 0, reputation
//! reset), a host that does not open gets 0, a reveal that differs from its
//! commitment is refused, no nonce is computed or counted twice, consensus
//! power equals the sum of effective weights with no host above 25%, SPEC §11
//! invariants every block; and a worker killed mid-sprint and mid-validation
//! ends with the same outcome as an uninterrupted run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use anyhow::Result;
use kiln_framework::Address;
use kiln_mlworker::device::ComputeDevice;
use kiln_mlworker::worker::chain::{ChainClient, TxReceipt};
use kiln_mlworker::worker::journal::Journal;
use kiln_mlworker::worker::{Misbehaviour, Pace, Tick, Worker, WorkerConfig};
use kiln_testkit::{sign_tx, BlockDriver, TestKey};
use serde_json::{json, Value};
use tendermint_abci::Application;

const CHAIN: &str = "kiln-worker-sim";
/// Sprint blocks over which each budget is spread (the devnet sprint has 10).
const SPRINT_SLICES: u64 = 4;

/// The chain as one worker sees it: queries and CheckTx on the shared driver.
struct SimChain {
    driver: Rc<RefCell<BlockDriver>>,
    /// Block results by tx hash, filled by the network as blocks are made.
    tx_results: TxResults,
    hot: TestKey,
    next_sequence: u64,
}

type TxResults = Rc<RefCell<BTreeMap<String, (u32, String)>>>;

impl ChainClient for SimChain {
    fn chain_id(&mut self) -> Result<String> {
        Ok(self.driver.borrow().chain_id.clone())
    }

    fn tx_result(&mut self, hash: &str) -> Result<Option<(u32, String)>> {
        Ok(self.tx_results.borrow().get(hash).cloned())
    }

    fn query_raw(&mut self, path: &str, data: &[u8]) -> Result<Vec<u8>> {
        let res = abci_query(&self.driver.borrow(), path, data, 0);
        if res.code != 0 {
            return Err(kiln_mlworker::worker::chain::QueryError {
                path: path.to_string(),
                codespace: res.codespace.clone(),
                code: res.code,
                log: res.log.clone(),
            }
            .into());
        }
        Ok(res.value.to_vec())
    }

    fn broadcast(&mut self, msgs: Vec<cosmrs::Any>) -> Result<TxReceipt> {
        let mut driver = self.driver.borrow_mut();
        let mut opts = driver.opts_for(&self.hot);
        opts.sequence = opts.sequence.max(self.next_sequence);
        opts.gas_limit = 4_000_000;
        opts.fee = 100_000;
        let mut tx = sign_tx(&self.hot, msgs.clone(), &opts);
        let mut res = driver.submit(tx.clone());
        if res.code == 5 {
            // An unfunded ML key: as the RPC client does, fall back to the
            // host's fee-free ML-ops allowance.
            opts.fee = 0;
            tx = sign_tx(&self.hot, msgs, &opts);
            res = driver.submit(tx.clone());
        }
        if res.code == 0 {
            self.next_sequence = opts.sequence + 1;
        }
        Ok(TxReceipt {
            hash: kiln_client::tx::tx_hash(&tx),
            code: res.code,
            codespace: res.codespace,
            log: res.log,
        })
    }
}

struct HostSpec {
    label: &'static str,
    budget: u64,
    misbehaviour: Misbehaviour,
    /// `Some((owner label, node id))`: this worker is an ML node of the
    /// owner's host (its own ML key, granted in genesis; declared on chain
    /// by [`declare_ml_nodes`]), not a host of its own.
    node: Option<(&'static str, &'static str)>,
    /// The worker runs with `--drain` from the start.
    drain: bool,
}

struct Host {
    key: TestKey,
    hot: TestKey,
    spec: HostSpec,
    journal_dir: std::path::PathBuf,
    worker: Option<Worker>,
    chain: SimChain,
    /// Nonces computed by every incarnation of the worker.
    nonces_computed: u64,
    txs_refused_logs: Vec<String>,
}

impl Host {
    fn start_worker(&mut self) {
        let cfg = WorkerConfig {
            host: self.key.address.to_string(),
            operator: self.hot.address.to_string(),
            device: ComputeDevice::cpu_f32(),
            threads: 2,
            batch: Some(32),
            pace: Pace::PerBlock {
                nonces_per_block: self.spec.budget.div_ceil(SPRINT_SLICES),
                budget: self.spec.budget,
            },
            commit_every_blocks: 2,
            misbehaviour: self.spec.misbehaviour,
            ml_node: self.spec.node.map(|(_, id)| id.to_string()),
            drain: self.spec.drain,
        };
        let mut worker = Worker::new(cfg, Journal::open(&self.journal_dir).unwrap()).unwrap();
        // As `kiln-mlworker run` does before its loop (from block 1 on).
        if self.chain.driver.borrow().height > 0 {
            worker.preflight(&mut self.chain).unwrap();
        }
        self.worker = Some(worker);
    }

    /// Kills the worker (drops it with whatever it had in memory).
    fn kill_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            self.account_for(&w);
        }
    }

    fn account_for(&mut self, w: &Worker) {
        let s = w.status();
        let s = s.lock().unwrap();
        self.nonces_computed += s.nonces_total;
    }

    fn tick_until_idle(&mut self) {
        let Some(w) = self.worker.as_mut() else {
            return;
        };
        for _ in 0..64 {
            match w.tick(&mut self.chain) {
                Ok(Tick::Idle) => break,
                Ok(Tick::Busy) => {}
                Err(e) => panic!("{} worker failed: {e:#}", self.spec.label),
            }
        }
        let s = w.status();
        let s = s.lock().unwrap();
        if let Some(t) = &s.last_tx {
            if t.code != 0 && !self.txs_refused_logs.contains(&t.log) {
                self.txs_refused_logs.push(t.log.clone());
            }
        }
    }
}

struct Network {
    driver: Rc<RefCell<BlockDriver>>,
    /// (height, code, log) of every transaction that failed in a block.
    failed_txs: Vec<(u64, u32, String)>,
    tx_results: TxResults,
    hosts: Vec<Host>,
    _dir: tempfile::TempDir,
}

fn network(specs: Vec<HostSpec>) -> Network {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<(TestKey, TestKey)> = specs
        .iter()
        .map(|s| {
            // An ML node works for its owner's account.
            let account = s.node.map_or(s.label, |(owner, _)| owner);
            (
                TestKey::from_label(&format!("{account}-account")),
                TestKey::from_label(&format!("{}-ml", s.label)),
            )
        })
        .collect();
    let mut g = kiln_genesis::AppGenesis::default();
    g.epochs.params = kiln_epochs::EpochParams::devnet();
    // Every leaf is opened (samples ≥ any count here), so a fabricating host
    // cannot hope its fakes go unsampled; the sampling odds at k = 200 are
    // measured by the engine's cheat-detection test.
    g.sprint.params = kiln_sprint::SprintParams {
        sprint_samples: 256,
        ..kiln_sprint::SprintParams::devnet()
    };
    g.reputation.params = kiln_reputation::ReputationParams::devnet();
    for (i, (account, hot)) in keys.iter().enumerate() {
        g.add_balance(
            hot.address,
            vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
        );
        if specs[i].node.is_some() {
            g.add_ml_ops_grants(account.address, hot.address);
            continue;
        }
        g.add_balance(
            account.address,
            vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
        );
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: account.address,
            worker_url: format!("http://host{i}.example:8547"),
            consensus_pubkey: hex::encode([i as u8 + 1; 32]),
            models: vec![],
            hardware: "cpu".into(),
            weight: 10,
        });
        g.add_ml_ops_grants(account.address, hot.address);
    }
    let driver = BlockDriver::open(
        &dir.path().join("chain"),
        CHAIN,
        &serde_json::to_value(g).unwrap(),
        0,
    )
    .unwrap();
    let driver = Rc::new(RefCell::new(driver));
    let tx_results: TxResults = Rc::new(RefCell::new(BTreeMap::new()));
    let hosts = specs
        .into_iter()
        .zip(keys)
        .map(|(spec, (key, hot))| {
            let mut h = Host {
                journal_dir: dir.path().join(format!("journal-{}", spec.label)),
                chain: SimChain {
                    driver: driver.clone(),
                    tx_results: tx_results.clone(),
                    hot: hot.clone(),
                    next_sequence: 0,
                },
                key,
                hot,
                spec,
                worker: None,
                nonces_computed: 0,
                txs_refused_logs: Vec::new(),
            };
            h.start_worker();
            h
        })
        .collect();
    Network {
        driver,
        hosts,
        failed_txs: Vec::new(),
        tx_results,
        _dir: dir,
    }
}

fn query(driver: &BlockDriver, path: &str, data: &str) -> Value {
    query_at(driver, path, data, 0)
}

fn query_at(driver: &BlockDriver, path: &str, data: &str, height: i64) -> Value {
    let res = abci_query(driver, path, data.as_bytes(), height);
    assert_eq!(res.code, 0, "{path}: {}", res.log);
    serde_json::from_slice(&res.value).unwrap()
}

/// An ABCI query as the node would pass it to the app (`height` 0 = latest).
fn abci_query(
    driver: &BlockDriver,
    path: &str,
    data: &[u8],
    height: i64,
) -> tendermint_proto::v0_38::abci::ResponseQuery {
    driver
        .app
        .query(tendermint_proto::v0_38::abci::RequestQuery {
            data: data.to_vec().into(),
            path: path.into(),
            height,
            prove: false,
        })
}

/// SPEC §11 on the latest state: the testkit's checker (supply, balances,
/// the CometBFT validator set the app emitted = effective weights, the cap).
fn check_invariants(driver: &BlockDriver) {
    driver.check_invariants().unwrap_or_else(|e| {
        panic!(
            "SPEC §11 invariant broken at height {}: {e:#}",
            driver.height
        )
    });
}

/// Runs blocks until `last_height`, every worker ticking before each block;
/// `before_block(height_about_to_be_produced, network)` may kill/restart workers.
fn run(net: &mut Network, last_height: u64, mut before_block: impl FnMut(u64, &mut Network)) {
    loop {
        let next = net.driver.borrow().height + 1;
        if next > last_height {
            break;
        }
        if next > 1 {
            for h in net.hosts.iter_mut() {
                h.tick_until_idle();
            }
        }
        before_block(next, net);
        let outcome = net.driver.borrow_mut().produce_block().unwrap();
        for (tx, r) in outcome.included.iter().zip(&outcome.response.tx_results) {
            if r.code != 0 {
                net.failed_txs.push((outcome.height, r.code, r.log.clone()));
            }
            net.tx_results
                .borrow_mut()
                .insert(kiln_client::tx::tx_hash(tx), (r.code, r.log.clone()));
        }
        check_invariants(&net.driver.borrow());
    }
    for h in net.hosts.iter_mut() {
        h.tick_until_idle();
        if let Some(w) = h.worker.take() {
            h.account_for(&w);
            h.worker = Some(w);
        }
    }
}

/// Host (bech32) -> weight in force, from the sprint module's weights query.
fn weights_in_force(driver: &BlockDriver) -> BTreeMap<String, u64> {
    query(driver, "/kiln.sprint.v1.Query/Weights", "")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap().to_string(),
                r["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn result(driver: &BlockDriver, epoch: u64, host: &Address) -> Value {
    query(
        driver,
        "/kiln.sprint.v1.Query/Result",
        &json!({"epoch": epoch, "host": host}).to_string(),
    )
}

fn honest(label: &'static str, budget: u64) -> HostSpec {
    HostSpec {
        label,
        budget,
        misbehaviour: Misbehaviour::default(),
        node: None,
        drain: false,
    }
}

/// Height where epoch 1's `stage` begins on the devnet schedule.
fn stage_at(stage: kiln_epochs::Stage) -> u64 {
    kiln_epochs::EpochParams::devnet().stage_height(1, 1, stage)
}

/// The devnet epoch settles at height 29 (after the secret-reveal and
/// escalation stages; README "Stages"); run a little past it.
const SETTLED: u64 = 31;

#[test]
fn the_devnet_settle_height_is_the_schedule_s() {
    assert_eq!(stage_at(kiln_epochs::Stage::Settle) + 2, SETTLED);
}

#[test]
fn seven_workers_earn_weight_in_proportion_to_compute_and_cheaters_get_nothing() {
    let mut specs = vec![
        honest("a", 320),
        honest("b", 480),
        honest("c", 640),
        honest("d", 800),
        honest("e", 960),
    ];
    specs.push(HostSpec {
        label: "fabricator",
        budget: 640,
        misbehaviour: Misbehaviour {
            fabricate_permille: 100,
            ..Default::default()
        },
        node: None,
        drain: false,
    });
    specs.push(HostSpec {
        label: "silent",
        budget: 480,
        misbehaviour: Misbehaviour {
            skip_open: true,
            ..Default::default()
        },
        node: None,
        drain: false,
    });
    // Host "e" also reveals the opposite of what it committed, as a validator.
    specs[4].misbehaviour.flip_reveal = true;
    let mut net = network(specs);
    run(&mut net, SETTLED, |_, _| {});
    let d = net.driver.borrow();

    // Journals: strictly increasing nonces (a nonce can never count twice),
    // exactly the budget computed.
    let mut counts = BTreeMap::new();
    for h in &net.hosts {
        let j = Journal::open(&h.journal_dir)
            .unwrap()
            .load(1)
            .unwrap()
            .expect("journal of epoch 1");
        assert!(
            j.leaves.windows(2).all(|w| w[0].0 < w[1].0),
            "{}: leaves not strictly increasing",
            h.spec.label
        );
        assert_eq!(j.next_nonce, h.spec.budget, "{}", h.spec.label);
        assert_eq!(
            h.nonces_computed, h.spec.budget,
            "{}: every nonce computed exactly once",
            h.spec.label
        );
        counts.insert(h.spec.label, j.leaves.len() as u64);
    }

    // Honest hosts: accepted with raw weight = shares found; shares follow the
    // budgets. Each count is Binomial(budget, p) with p the share rate;
    // estimating p from all honest hosts, every count must lie within 4.5
    // standard deviations of budget·p (a false failure has probability < 1e-4).
    let honest_hosts = &net.hosts[..5];
    let total_budget: u64 = honest_hosts.iter().map(|h| h.spec.budget).sum();
    let total_shares: u64 = honest_hosts.iter().map(|h| counts[h.spec.label]).sum();
    let p = total_shares as f64 / total_budget as f64;
    assert!(
        p > 1.0 / 40.0 && p < 1.0 / 8.0,
        "devnet share rate should be near 1/16, got {p}"
    );
    for h in honest_hosts {
        let r = result(&d, 1, &h.key.address);
        assert_eq!(r["accepted"], true, "{}: {r}", h.spec.label);
        assert_eq!(
            r["raw_weight"].as_u64().unwrap(),
            counts[h.spec.label],
            "{}: raw weight = committed shares",
            h.spec.label
        );
        let expected = h.spec.budget as f64 * p;
        let sd = (h.spec.budget as f64 * p * (1.0 - p)).sqrt();
        let got = counts[h.spec.label] as f64;
        assert!(
            (got - expected).abs() <= 4.5 * sd + 1.0,
            "{}: {got} shares for budget {}, expected {expected:.1} ± {:.1}",
            h.spec.label,
            h.spec.budget,
            4.5 * sd
        );
    }
    // Larger budgets earned more on the whole: the biggest honest budget beats the smallest.
    assert!(counts["e"] > counts["a"], "{counts:?}");

    // The fabricator is voted invalid: weight 0 and its reputation reset.
    let fab = &net.hosts[5];
    let r = result(&d, 1, &fab.key.address);
    assert_eq!(
        (
            r["accepted"].clone(),
            r["reason"].clone(),
            r["effective_weight"].clone()
        ),
        (json!(false), json!("rejected"), json!(0)),
        "{r}"
    );
    // Its `invalid` votes escalated it: the workers judged it again in the
    // escalation stages and no revealed weight vouched for it; its bond burned.
    assert_eq!(r["escalated"], json!(true), "{r}");
    assert!(r["escalation_revealed_weight"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["escalation_valid_weight"], json!(0), "{r}");
    assert_eq!(
        r["bond_burned"],
        json!(kiln_sprint::SprintParams::devnet().commit_bond),
        "{r}"
    );
    let fab_journal = Journal::open(&fab.journal_dir)
        .unwrap()
        .load(1)
        .unwrap()
        .unwrap();
    assert!(
        // One fabricated leaf per ten leaves, rounded down (the worker adds
        // one only when it keeps the ratio at or below 100 permille).
        fab_journal.fabricated > 0
            && fab_journal.fabricated + 1 >= fab_journal.leaves.len() as u64 / 10,
        "about 10% fabricated: {} of {}",
        fab_journal.fabricated,
        fab_journal.leaves.len()
    );
    let rep = |a: &Address| query(&d, "/kiln.reputation.v1.Query/Reputation", &a.to_string());
    assert_eq!(rep(&fab.key.address)["good_epochs"], 0);
    assert_eq!(
        rep(&net.hosts[0].key.address)["good_epochs"],
        1,
        "an accepted honest host gains a good epoch"
    );

    // The silent host committed but never opened: 0.
    let silent = &net.hosts[6];
    let r = result(&d, 1, &silent.key.address);
    assert_eq!(
        (
            r["accepted"].clone(),
            r["reason"].clone(),
            r["effective_weight"].clone()
        ),
        (json!(false), json!("unopened"), json!(0)),
        "{r}"
    );

    // The flipped reveals were refused by the chain and never counted: one in
    // the vote reveal stage and, since the flipper also judges the escalated
    // fabricator, one in the escalation reveal stage.
    let e = &net.hosts[4];
    let stages: Vec<bool> = net
        .failed_txs
        .iter()
        .map(|(h, _, l)| {
            assert!(l.contains("does not match its commitment"), "{l}");
            (stage_at(kiln_epochs::Stage::VoteReveal)
                ..stage_at(kiln_epochs::Stage::EscalationCommit))
                .contains(h)
        })
        .collect();
    assert_eq!(
        (
            net.failed_txs.len(),
            stages.iter().filter(|in_vote| **in_vote).count()
        ),
        (2, 1),
        "only the flipped reveals fail (one per round): {:?}",
        net.failed_txs
    );
    assert!(
        net.failed_txs
            .iter()
            .any(|(h, _, _)| (stage_at(kiln_epochs::Stage::EscalationReveal)
                ..stage_at(kiln_epochs::Stage::Settle))
                .contains(h)),
        "{:?}",
        net.failed_txs
    );
    // The worker itself noticed: its status names the failure and the chain's reason.
    {
        let status = e.worker.as_ref().unwrap().status();
        let status = status.lock().unwrap();
        assert_eq!(status.txs_failed_in_block, 2, "{status:?}");
        let failure = status.last_failure.as_ref().expect("last_failure");
        assert_eq!(failure.kind, "escalation_vote_reveal");
        assert!(
            failure.log.contains("does not match its commitment"),
            "{failure:?}"
        );
        for h in &net.hosts[..4] {
            let s = h.worker.as_ref().unwrap().status();
            assert_eq!(s.lock().unwrap().txs_failed_in_block, 0, "{}", h.spec.label);
        }
    }
    let duties = query(
        &d,
        "/kiln.sprint.v1.Query/Duties",
        &json!({"epoch": 1, "address": e.key.address}).to_string(),
    );
    assert!(
        duties["duties"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["vote_committed"] == true && x["vote_revealed"] == false),
        "{duties}"
    );
    assert!(
        rep(&e.key.address)["good_epochs"].as_u64().unwrap() < 1,
        "a validator that did not reveal loses its good epoch"
    );

    // Power: weights in force = effective weights of epoch 1, capped at 25%.
    let in_force = weights_in_force(&d);
    for h in &net.hosts {
        let eff = result(&d, 1, &h.key.address)["effective_weight"]
            .as_u64()
            .unwrap();
        assert_eq!(
            in_force
                .get(&h.key.address.to_string())
                .copied()
                .unwrap_or(0),
            eff,
            "{}",
            h.spec.label
        );
    }
    let total: u64 = in_force.values().sum();
    assert_eq!(
        total, total_shares,
        "the cap redistributes, it does not destroy weight"
    );
    assert!(
        in_force.values().all(|w| w * 4 <= total),
        "no host above 25%: {in_force:?}"
    );

    // Each worker's status shows its host's standing once the new powers sign.
    for h in &net.hosts {
        let status = h.worker.as_ref().unwrap().status();
        let status = status.lock().unwrap();
        let standing = status
            .standing
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no standing in {status:?}", h.spec.label));
        let w = in_force
            .get(&h.key.address.to_string())
            .copied()
            .unwrap_or(0);
        assert_eq!(
            standing["weight"].as_u64(),
            Some(w),
            "{}: {standing}",
            h.spec.label
        );
        assert_eq!(
            standing["consensus_power"].as_u64(),
            Some(w),
            "{}: {standing}",
            h.spec.label
        );
        assert_eq!(status.last_result.as_ref().unwrap()["epoch"], 1);
    }

    // CometBFT applies the settle's validator updates two blocks later (SPEC
    // §3): the weights query's consensus power at the settle height and the
    // next still shows the genesis powers, from settle + 2 the new weights.
    let settle = stage_at(kiln_epochs::Stage::Settle) as i64;
    let power_at = |h: i64| -> BTreeMap<String, u64> {
        query_at(&d, "/kiln.sprint.v1.Query/Weights", "", h)
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["consensus_power"].as_u64().unwrap() > 0)
            .map(|r| {
                (
                    r["host"].as_str().unwrap().to_string(),
                    r["consensus_power"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let genesis_powers: BTreeMap<String, u64> = net
        .hosts
        .iter()
        .map(|h| (h.key.address.to_string(), 10))
        .collect();
    assert_eq!(power_at(settle - 1), genesis_powers);
    assert_eq!(
        power_at(settle),
        genesis_powers,
        "updates from the settle block are not in force yet"
    );
    assert_eq!(power_at(settle + 1), genesis_powers);
    let new_powers: BTreeMap<String, u64> = in_force
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(a, w)| (a.clone(), *w))
        .collect();
    assert_eq!(
        power_at(settle + 2),
        new_powers,
        "from settle + 2 the effective weights sign"
    );
}

/// The real worker reveals the secret behind its commitment in the
/// secret-reveal stage (its journal keeps it); a worker that withholds its
/// secret cannot open and its host gets weight 0 (reason `unrevealed`),
/// while the others are accepted and no transaction fails.
#[test]
fn workers_reveal_their_secrets_and_a_withheld_secret_earns_nothing() {
    let mut specs = vec![honest("s1", 320), honest("s2", 320), honest("s3", 320)];
    specs.push(HostSpec {
        label: "withholder",
        budget: 320,
        misbehaviour: Misbehaviour {
            skip_secret_reveal: true,
            ..Default::default()
        },
        node: None,
        drain: false,
    });
    let mut net = network(specs);
    run(&mut net, SETTLED, |_, _| {});
    let d = net.driver.borrow();
    assert!(net.failed_txs.is_empty(), "{:?}", net.failed_txs);
    for h in &net.hosts[..3] {
        let r = result(&d, 1, &h.key.address);
        assert_eq!(r["accepted"], true, "{}: {r}", h.spec.label);
        let j = Journal::open(&h.journal_dir)
            .unwrap()
            .load(1)
            .unwrap()
            .unwrap();
        assert!(
            j.secret.is_some() && j.secret_reveal_sent_height.is_some(),
            "{}",
            h.spec.label
        );
    }
    let w = &net.hosts[3];
    let r = result(&d, 1, &w.key.address);
    assert_eq!(
        (
            r["accepted"].clone(),
            r["reason"].clone(),
            r["effective_weight"].clone()
        ),
        (json!(false), json!("unrevealed"), json!(0)),
        "{r}"
    );
    let duties = query(
        &d,
        "/kiln.sprint.v1.Query/Duties",
        &json!({"epoch": 1, "address": w.key.address}).to_string(),
    );
    assert_eq!(duties["secret_revealed"], false, "{duties}");
    assert_eq!(duties["opened"], false, "{duties}");
}

/// Same outcome whether or not workers are killed and restarted mid-sprint
/// (between sprint slices) and mid-validation (right after sending their vote
/// commitments, before the block that includes them).
#[test]
fn worker_restarts_mid_sprint_and_mid_validation_change_nothing() {
    let specs = || vec![honest("r1", 320), honest("r2", 480), honest("r3", 400)];
    let mut baseline = network(specs());
    run(&mut baseline, SETTLED, |_, _| {});

    let mut restarted = network(specs());
    let mut restarts = 0;
    let restart_before = [
        3,
        stage_at(kiln_epochs::Stage::SecretReveal),
        stage_at(kiln_epochs::Stage::VoteCommit) + 1,
        stage_at(kiln_epochs::Stage::VoteReveal),
    ];
    run(&mut restarted, SETTLED, |next, net| {
        // Before block 3: mid-sprint (2 of 4 slices done, a commit in flight);
        // before the secret-reveal stage: secret reveals in the mempool;
        // before vote commit + 1: vote commitments in the mempool; before
        // vote reveal: reveals in the mempool.
        if restart_before.contains(&next) {
            for h in net.hosts.iter_mut().take(2) {
                h.kill_worker();
                h.start_worker();
                h.tick_until_idle();
                restarts += 1;
            }
        }
    });
    assert_eq!(restarts, 8);

    let (a, b) = (baseline.driver.borrow(), restarted.driver.borrow());
    for (x, y) in baseline.hosts.iter().zip(&restarted.hosts) {
        let (ra, rb) = (result(&a, 1, &x.key.address), result(&b, 1, &y.key.address));
        assert_eq!(
            ra, rb,
            "{}: restarted run must settle the same",
            x.spec.label
        );
        assert_eq!(ra["accepted"], true, "{ra}");
        assert_eq!(
            y.nonces_computed, y.spec.budget,
            "{}: no nonce computed twice across restarts",
            y.spec.label
        );
        assert!(
            y.txs_refused_logs.is_empty(),
            "{}: a restart must not double-submit: {:?}",
            y.spec.label,
            y.txs_refused_logs
        );
    }
    assert!(
        restarted.failed_txs.is_empty(),
        "a restart must not double-submit: {:?}",
        restarted.failed_txs
    );
    assert_eq!(
        query(&a, "/kiln.sprint.v1.Query/Weights", ""),
        query(&b, "/kiln.sprint.v1.Query/Weights", "")
    );
}

/// `kiln-mlworker run` refuses to start, with instructions, when its host is
/// not registered or has not granted its ML key the worker messages.
#[test]
fn preflight_names_a_missing_registration_or_grant() {
    let mut net = network(vec![honest("p1", 16)]);
    net.driver.borrow_mut().produce_block().unwrap();
    let h = &mut net.hosts[0];
    let cfg = |host: &Address, operator: &Address| WorkerConfig {
        host: host.to_string(),
        operator: operator.to_string(),
        device: ComputeDevice::cpu_f32(),
        threads: 1,
        batch: Some(8),
        pace: Pace::PerBlock {
            nonces_per_block: 1,
            budget: 1,
        },
        commit_every_blocks: 1,
        misbehaviour: Misbehaviour::default(),
        ml_node: None,
        drain: false,
    };
    let journal = Journal::open(&h.journal_dir).unwrap();
    let mut ok = Worker::new(cfg(&h.key.address, &h.hot.address), journal.clone()).unwrap();
    ok.preflight(&mut h.chain).unwrap();

    let stranger = TestKey::from_label("not-a-host");
    let mut w = Worker::new(cfg(&stranger.address, &h.hot.address), journal.clone()).unwrap();
    let e = w.preflight(&mut h.chain).unwrap_err();
    assert!(
        matches!(
            e.downcast_ref::<kiln_mlworker::worker::PreflightError>(),
            Some(kiln_mlworker::worker::PreflightError::NotRegistered(_))
        ),
        "{e:#}"
    );
    assert!(format!("{e}").contains("kiln tx host register"), "{e}");

    let ungranted = TestKey::from_label("other-ml-key");
    let mut w = Worker::new(cfg(&h.key.address, &ungranted.address), journal).unwrap();
    let e = w.preflight(&mut h.chain).unwrap_err();
    let text = format!("{e}");
    assert!(
        text.contains("has not granted")
            && text.contains("MsgSprintCommit")
            && text.contains("grant-ml-ops"),
        "{text}"
    );
}

/// SPEC §10: a host that joins a running chain — funded, registered with its
/// account key, self-bonded and its ML key granted by ordinary transactions,
/// no genesis weight — is validated by the hosts with weight, earns weight at the first
/// settle and becomes a CometBFT validator automatically.
#[test]
fn a_host_registered_mid_epoch_earns_weight_and_becomes_a_validator() {
    use kiln_testkit::{any_of, msg_send};
    let mut net = network(vec![
        honest("g1", 320),
        honest("g2", 320),
        honest("g3", 320),
    ]);
    let newcomer = TestKey::from_label("newcomer-account");
    let newcomer_hot = TestKey::from_label("newcomer-ml");
    let newcomer_consensus = kiln_testkit::ConsensusTestKey::from_label("newcomer");
    let consensus_key = newcomer_consensus.public;
    run(&mut net, SETTLED, |next, net| {
        let mut d = net.driver.borrow_mut();
        match next {
            // Block 2: a genesis host funds the newcomer's account.
            2 => {
                let g1 = &net.hosts[0].key;
                let opts = d.opts_for(g1);
                let tx = sign_tx(
                    g1,
                    vec![msg_send(&g1.address, &newcomer.address, 50_000_000)],
                    &opts,
                );
                assert_eq!(d.submit(tx).code, 0);
            }
            // Block 3: it registers and grants its ML key, with its account key.
            3 => {
                let mut msgs = vec![any_of(&kiln_hosts::msgs::MsgRegisterHost {
                    owner: newcomer.address.to_string(),
                    worker_url: "http://newcomer.example:8547".into(),
                    consensus_pubkey: consensus_key.to_vec(),
                    models: vec![],
                    hardware: "cpu".into(),
                    consensus_key_proof: newcomer_consensus.proof(CHAIN, &newcomer.address),
                })];
                msgs.extend(kiln_client::tx::msgs_grant_ml_ops(
                    &newcomer.address.to_string(),
                    &newcomer_hot.address.to_string(),
                    None,
                ));
                // A self-bond: a host without weight or one gets no
                // fee-free allowance, and its ML key has no coins.
                msgs.push(kiln_client::staking::msg_bond(&newcomer.address, 1_000_000));
                let mut opts = d.opts_for(&newcomer);
                opts.gas_limit = 2_000_000;
                opts.fee = 50_000;
                let check = d.submit(sign_tx(&newcomer, msgs, &opts));
                assert_eq!(check.code, 0, "{}", check.log);
            }
            // Block 4: its worker starts (preflight passes only now).
            4 => {
                drop(d);
                let mut host = Host {
                    key: newcomer.clone(),
                    hot: newcomer_hot.clone(),
                    spec: honest("newcomer", 480),
                    journal_dir: net._dir.path().join("journal-newcomer"),
                    worker: None,
                    chain: SimChain {
                        driver: net.driver.clone(),
                        tx_results: net.tx_results.clone(),
                        hot: newcomer_hot.clone(),
                        next_sequence: 0,
                    },
                    nonces_computed: 0,
                    txs_refused_logs: Vec::new(),
                };
                host.start_worker();
                host.tick_until_idle();
                net.hosts.push(host);
            }
            _ => {}
        }
    });
    assert!(net.failed_txs.is_empty(), "{:?}", net.failed_txs);
    let newcomer_host = net.hosts.last().unwrap();
    assert!(
        newcomer_host.txs_refused_logs.is_empty(),
        "{:?}",
        newcomer_host.txs_refused_logs
    );
    let d = net.driver.borrow();
    let r = result(&d, 1, &newcomer.address);
    assert_eq!(r["accepted"], true, "{r}");
    let journal = Journal::open(&newcomer_host.journal_dir)
        .unwrap()
        .load(1)
        .unwrap()
        .unwrap();
    assert_eq!(
        journal.next_nonce, 480,
        "it computed its whole budget despite joining late"
    );
    assert_eq!(
        r["raw_weight"].as_u64().unwrap(),
        journal.leaves.len() as u64
    );
    // Its consensus key is in the validator set the app gave CometBFT, with its weight as power.
    let power = d.validators.get(consensus_key.as_slice()).copied();
    assert_eq!(
        power,
        Some(r["effective_weight"].as_u64().unwrap()),
        "validators: {:?}",
        d.validators
    );
}

/// The owner's account key of every ML-node spec sends one transaction
/// declaring its nodes (`MsgAddMlNode`, enabled from the next epoch).
fn declare_ml_nodes(net: &mut Network) {
    let mut by_owner: BTreeMap<&str, Vec<cosmrs::Any>> = BTreeMap::new();
    for h in &net.hosts {
        if let Some((owner, id)) = h.spec.node {
            by_owner
                .entry(owner)
                .or_default()
                .push(kiln_testkit::any_of(&kiln_hosts::mlnodes::MsgAddMlNode {
                    owner: h.key.address.to_bech32(),
                    id: id.into(),
                    worker_url: format!("http://{}.example:8547", h.spec.label),
                    models: vec![],
                    hardware: "cpu".into(),
                    ml_key: h.hot.address.to_bech32(),
                }));
        }
    }
    for (owner, msgs) in by_owner {
        send_from_owner(net, owner, msgs);
    }
}

/// `owner`'s account key sends `msgs` in one transaction (into the next block).
fn send_from_owner(net: &mut Network, owner: &str, msgs: Vec<cosmrs::Any>) {
    let key = net
        .hosts
        .iter()
        .find(|h| h.spec.label == owner)
        .expect("owner spec")
        .key
        .clone();
    let mut driver = net.driver.borrow_mut();
    let mut opts = driver.opts_for(&key);
    opts.gas_limit = 2_000_000;
    opts.fee = 50_000;
    let r = driver.submit(sign_tx(&key, msgs, &opts));
    assert_eq!(r.code, 0, "{}", r.log);
}

fn node(label: &'static str, owner: &'static str, id: &'static str, budget: u64) -> HostSpec {
    HostSpec {
        node: Some((owner, id)),
        drain: false,
        ..honest(label, budget)
    }
}

/// Issue 15, "Sprint across ML nodes", with real workers: host `multi`
/// runs three ML nodes (three workers, three ML keys) and `cheat` two, one
/// of which fabricates shares. Declared in epoch 1, the nodes sprint from
/// epoch 2, each in its own nonce lane with its own tree. `multi`'s raw
/// weight is the sum of its nodes' share counts, split per node in its
/// result; `cheat` is rejected as a whole (SPEC §4's cost for a cheating
/// host). `multi` disables `n3` during epoch 2: from epoch 3 it gets no
/// duty, computes nothing, and `multi`'s weight drops by its share.
#[test]
fn a_host_s_ml_nodes_add_up_and_a_disabled_or_cheating_node_counts_nothing() {
    // A fifth of its leaves fabricated: well past the verdict's tolerance
    // for honest near-boundary mismatches.
    let mut cheater = node("cheat-c2", "cheat", "c2", 640);
    cheater.misbehaviour.fabricate_permille = 200;
    let specs = vec![
        honest("v1", 320),
        honest("v2", 320),
        // The hosts' own workers: they compute nothing (budget 0) and vote
        // until the hosts' nodes are enabled.
        honest("multi", 0),
        node("multi-n1", "multi", "n1", 160),
        node("multi-n2", "multi", "n2", 160),
        node("multi-n3", "multi", "n3", 640),
        honest("cheat", 0),
        node("cheat-c1", "cheat", "c1", 240),
        cheater,
    ];
    let epoch_length = kiln_epochs::EpochParams::devnet().epoch_length;
    let settled = |epoch: u64| (epoch - 1) * epoch_length + SETTLED;
    let mut net = network(specs);
    run(&mut net, settled(3), |height, net| {
        if height == 2 {
            declare_ml_nodes(net);
        }
        if height == epoch_length + 10 {
            let multi = net.hosts[2].key.address.to_bech32();
            send_from_owner(
                net,
                "multi",
                vec![kiln_testkit::any_of(
                    &kiln_hosts::mlnodes::MsgSetMlNodeEnabled {
                        owner: multi,
                        id: "n3".into(),
                        enabled: false,
                    },
                )],
            );
        }
    });
    let d = net.driver.borrow();
    assert!(net.failed_txs.is_empty(), "{:?}", net.failed_txs);
    let label = |i: usize| net.hosts[i].spec.label;
    let shares = |i: usize, epoch: u64| -> Option<u64> {
        Journal::open(&net.hosts[i].journal_dir)
            .unwrap()
            .load(epoch)
            .unwrap()
            .map(|j| {
                // Each node stays in its lane: nonces from its lane's first one.
                let first = j.leaves.first().map_or(j.next_nonce, |l| l.0);
                assert!(
                    j.leaves.windows(2).all(|w| w[0].0 < w[1].0),
                    "{}: nonces strictly increase",
                    label(i)
                );
                assert_eq!(
                    first >> kiln_hosts::mlnodes::LANE_BITS,
                    j.leaves.last().map_or(first, |l| l.0) >> kiln_hosts::mlnodes::LANE_BITS,
                    "{}: one lane",
                    label(i)
                );
                j.leaves.len() as u64
            })
    };
    let multi = net.hosts[2].key.address;
    let cheat = net.hosts[6].key.address;

    // Epoch 2: three nodes, each with its own tree and lane; the weight is their sum.
    let r = result(&d, 2, &multi);
    assert_eq!(r["accepted"], true, "{r}");
    let counts: Vec<u64> = (3..6).map(|i| shares(i, 2).expect("journal")).collect();
    assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
    assert_eq!(
        r["raw_weight"].as_u64().unwrap(),
        counts.iter().sum::<u64>(),
        "{r}"
    );
    let split: Vec<(String, u64, u64)> = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["ml_node"].as_str().unwrap().to_string(),
                n["claimed_count"].as_u64().unwrap(),
                n["raw_weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        split,
        vec![
            ("n1".into(), counts[0], counts[0]),
            ("n2".into(), counts[1], counts[1]),
            ("n3".into(), counts[2], counts[2]),
        ],
        "{r}"
    );
    let lanes: Vec<u64> = (3..6)
        .map(|i| {
            let j = Journal::open(&net.hosts[i].journal_dir)
                .unwrap()
                .load(2)
                .unwrap()
                .unwrap();
            j.leaves[0].0 >> kiln_hosts::mlnodes::LANE_BITS
        })
        .collect();
    assert_eq!(lanes, vec![1, 2, 3], "each node sprints in its own lane");

    // One node fabricating shares is caught: the whole host is rejected.
    let r = result(&d, 2, &cheat);
    assert_eq!(
        (
            r["accepted"].clone(),
            r["reason"].clone(),
            r["raw_weight"].clone()
        ),
        (json!(false), json!("rejected"), json!(0)),
        "{r}"
    );
    assert_eq!(r["nodes"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(
        r["bond_burned"],
        json!(kiln_sprint::SprintParams::devnet().commit_bond),
        "{r}"
    );

    // Epoch 3: n3 is disabled: no duty, nothing computed, no part in the weight.
    assert_eq!(shares(5, 3), None, "a disabled node computes nothing");
    let r3 = result(&d, 3, &multi);
    assert_eq!(r3["accepted"], true, "{r3}");
    let counts3: Vec<u64> = (3..5).map(|i| shares(i, 3).expect("journal")).collect();
    let nodes3: Vec<&str> = r3["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ml_node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes3, vec!["n1", "n2"], "{r3}");
    assert_eq!(
        r3["raw_weight"].as_u64().unwrap(),
        counts3.iter().sum::<u64>(),
        "{r3}"
    );
    // Its share is gone from the weight: the shares of 320 nonces instead
    // of 960's (share rate near 1/16: about 20 against 60, 4.6 standard
    // deviations apart).
    assert!(
        r3["raw_weight"].as_u64().unwrap() < counts.iter().sum::<u64>(),
        "epoch 3 {r3} vs epoch 2 {counts:?}"
    );
    let status = net.hosts[5].worker.as_ref().unwrap().status();
    let status = status.lock().unwrap();
    assert_eq!(
        status.txs_refused, 0,
        "the disabled node sent nothing: {status:?}"
    );
}

/// `kiln-mlworker run --drain` (docs/operator-guide.md, "Stopping a host
/// cleanly"): the draining host commits no sprint, but votes in every
/// committee it sits on; the settle leaves it with weight 0 in force and
/// the worker says it is drained. The others lose nothing.
#[test]
fn a_draining_host_votes_commits_nothing_and_leaves_with_weight_zero() {
    let mut specs = vec![honest("a", 320), honest("b", 320), honest("c", 320)];
    specs.push(HostSpec {
        label: "leaving",
        budget: 320,
        misbehaviour: Misbehaviour::default(),
        node: None,
        drain: true,
    });
    let mut net = network(specs);
    // Until the vote-reveal stage is over: the committee votes of epoch 1.
    let votes_done = stage_at(kiln_epochs::Stage::EscalationCommit);
    run(&mut net, votes_done, |_, _| {});
    let leaving = &net.hosts[3];
    {
        let status = leaving.worker.as_ref().unwrap().status();
        let s = status.lock().unwrap();
        assert!(s.draining && !s.drained, "{s:?}");
        assert_eq!(s.nonces_done, 0, "a draining worker computes no sprint");
        assert!(s.duties > 0, "the genesis host sits on committees: {s:?}");
        assert_eq!(
            s.votes_revealed, s.duties,
            "every committee vote is cast while draining: {s:?}"
        );
    }
    run(&mut net, SETTLED, |_, _| {});
    let d = net.driver.borrow();
    assert!(
        net.failed_txs.is_empty(),
        "no tx failed: {:?}",
        net.failed_txs
    );
    // No commitment, so no result to settle: the query says so.
    let r = abci_query(
        &d,
        "/kiln.sprint.v1.Query/Result",
        json!({"epoch": 1, "host": net.hosts[3].key.address})
            .to_string()
            .as_bytes(),
        0,
    );
    assert_eq!(
        r.code,
        kiln_framework::error::codes::KEY_NOT_FOUND,
        "no settled result for a host that committed nothing: {}",
        r.log
    );
    let in_force = weights_in_force(&d);
    assert_eq!(
        in_force
            .get(&net.hosts[3].key.address.to_string())
            .copied()
            .unwrap_or(0),
        0,
        "{in_force:?}"
    );
    for h in &net.hosts[..3] {
        let r = result(&d, 1, &h.key.address);
        assert_eq!(r["accepted"], true, "{}: {r}", h.spec.label);
        assert!(in_force[&h.key.address.to_string()] > 0, "{in_force:?}");
    }
    let status = net.hosts[3].worker.as_ref().unwrap().status();
    let s = status.lock().unwrap();
    assert!(
        s.drained,
        "the worker reports drained after the settle: {s:?}"
    );
    assert_eq!(s.standing.as_ref().unwrap()["weight"], 0);
}
