//! Issue 13, "Free block space is not free to abuse", through CheckTx and
//! real blocks (PrepareProposal, ProcessProposal, FinalizeBlock):
//! - the chain has a finite block gas limit (the testkit's genesis, like
//!   `kilnd init`'s, sets 100 M), and CheckTx refuses a tx asking more;
//! - a fee-free ML-ops tx may ask for at most `ml_ops_max_free_gas_per_tx`;
//! - a host spending its whole allowance on maximal fee-free transactions
//!   takes at most `ml_ops_free_gas_per_block` (10 M = **10%** of a block's
//!   gas) in any block, and `ml_ops_free_gas_per_epoch` over the epoch;
//! - a hundred freshly registered hosts (no weight, no self-bond) get no
//!   fee-free transaction at all; a self-bond makes a new host eligible.

use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_sprint::msgs::MsgSprintCommit;
use kiln_staking::msgs::MsgBond;
use kiln_testkit::{
    any_of, msg_exec, msg_grant, sign_tx, BlockDriver, ConsensusTestKey, TestKey, TxOptions,
};

const CHAIN: &str = "kiln-free-gas";
const BLOCK_MAX_GAS: u64 = 100_000_000;
const PER_TX: u64 = 10_000_000;
const PER_BLOCK: u64 = 10_000_000;
const PER_EPOCH: u64 = 40_000_000;
/// The SDK's "insufficient fee" and "invalid gas limit" codes.
const INSUFFICIENT_FEE: u32 = 13;

fn commit_msg(host: &Address) -> cosmos_sdk_proto::Any {
    any_of(&MsgSprintCommit {
        host: host.to_bech32(),
        ml_node: String::new(),
        epoch: 1,
        root: vec![9; 32],
        count: 10,
        secret_hash: vec![8; 32],
    })
}

/// A zero-fee `MsgExec` by `hot` carrying a sprint commit for `host`.
fn free_tx(d: &BlockDriver, hot: &TestKey, host: &Address, gas: u64, sequence: u64) -> Vec<u8> {
    let (number, _) = d.account(&hot.address).expect("the hot key has an account");
    let mut opts = TxOptions::new(&d.chain_id, number, sequence);
    opts.fee = 0;
    opts.gas_limit = gas;
    sign_tx(
        hot,
        vec![msg_exec(&hot.address, vec![commit_msg(host)])],
        &opts,
    )
}

fn genesis(host: &TestKey, hot: &TestKey, newcomers: &[TestKey]) -> serde_json::Value {
    let mut g = kiln_genesis::AppGenesis::with_devnet_params();
    g.authz.params.ml_ops_free_txs_per_epoch = 1_000;
    g.authz.params.ml_ops_max_free_gas_per_tx = PER_TX;
    g.authz.params.ml_ops_free_gas_per_block = PER_BLOCK;
    g.authz.params.ml_ops_free_gas_per_epoch = PER_EPOCH;
    g.add_balance(host.address, vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
    g.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: host.address,
        worker_url: "http://host.example:8080".into(),
        consensus_pubkey: hex::encode(ConsensusTestKey::from_label("free-gas-host").public),
        models: vec![],
        hardware: "test".into(),
        weight: 100,
    });
    g.add_ml_ops_grants(host.address, hot.address);
    for k in newcomers {
        g.add_balance(k.address, vec![Coin::new(BASE_DENOM, 10_000_000)]);
    }
    serde_json::to_value(g).unwrap()
}

#[test]
fn a_host_with_weight_takes_at_most_its_gas_budget_and_newcomers_pay() {
    let host = TestKey::from_label("free-gas-host");
    let hot = TestKey::from_label("free-gas-hot");
    let newcomers: Vec<TestKey> = (0..100)
        .map(|i| TestKey::from_label(&format!("free-gas-newcomer-{i}")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut d = BlockDriver::open(dir.path(), CHAIN, &genesis(&host, &hot, &newcomers), 0).unwrap();
    // More gas than a block holds: refused in CheckTx, even with a fee.
    let mut opts = d.opts_for(&host);
    opts.gas_limit = BLOCK_MAX_GAS + 1;
    opts.fee = 10_000_000;
    let big = sign_tx(
        &host,
        vec![kiln_testkit::msg_send(&host.address, &hot.address, 1)],
        &opts,
    );
    let r = d.submit(big);
    assert_ne!(r.code, 0);
    assert!(r.log.contains("gas"), "{}", r.log);

    // A fee-free tx asking more than the per-tx cap: refused, and says why.
    let r = {
        let tx = free_tx(&d, &hot, &host.address, PER_TX + 1, 0);
        d.submit(tx)
    };
    assert_eq!(
        (r.codespace.as_str(), r.code),
        ("sdk", INSUFFICIENT_FEE),
        "{}",
        r.log
    );
    assert!(r.log.contains("ml_ops_max_free_gas_per_tx"), "{}", r.log);

    // The host spends its whole allowance on maximal fee-free txs at once.
    // The mempool takes what its epoch budget covers (the per-block budget
    // is the proposer's to keep, or a recheck would drop the txs over it);
    // each block takes at most one, and the rest wait for later blocks.
    let mut sequence = 0;
    for _ in 0..10 {
        let r = {
            let tx = free_tx(&d, &hot, &host.address, PER_TX, sequence);
            d.submit(tx)
        };
        if r.code == 0 {
            sequence += 1;
        } else {
            assert_eq!(
                (r.codespace.as_str(), r.code),
                ("sdk", INSUFFICIENT_FEE),
                "{}",
                r.log
            );
            assert!(r.log.contains("gas left"), "{}", r.log);
        }
    }
    assert_eq!(
        sequence,
        PER_EPOCH / PER_TX,
        "the mempool takes the epoch's budget"
    );
    let mut free_gas_by_block = Vec::new();
    for _ in 0..8 {
        let out = d.produce_block().unwrap();
        d.check_invariants().unwrap();
        let gas: u64 = out
            .response
            .tx_results
            .iter()
            .filter(|r| r.code == 0)
            .map(|r| u64::try_from(r.gas_wanted).unwrap())
            .sum();
        free_gas_by_block.push(gas);
    }
    assert_eq!(
        free_gas_by_block[..4],
        [PER_TX; 4],
        "one maximal fee-free tx per block, none lost: {free_gas_by_block:?}"
    );
    assert!(d.mempool.is_empty(), "every deferred tx landed");
    let share_bps: Vec<u64> = free_gas_by_block
        .iter()
        .map(|g| g * 10_000 / BLOCK_MAX_GAS)
        .collect();
    assert!(
        share_bps.iter().all(|s| *s <= 1_000),
        "a host's fee-free gas above 10% of a block: {share_bps:?}"
    );
    let total: u64 = free_gas_by_block.iter().sum();
    assert_eq!(
        total, PER_EPOCH,
        "the epoch budget is spent exactly: {free_gas_by_block:?}"
    );
    let r = {
        let tx = free_tx(&d, &hot, &host.address, 100_000, sequence);
        d.submit(tx)
    };
    assert_eq!(r.code, INSUFFICIENT_FEE, "{}", r.log);
    assert!(r.log.contains("gas left"), "{}", r.log);

    // A hundred fresh registrations, each granting a hot key.
    let chain_id = d.chain_id.clone();
    let mut txs = Vec::new();
    let hots: Vec<TestKey> = (0..100)
        .map(|i| TestKey::from_label(&format!("free-gas-newcomer-hot-{i}")))
        .collect();
    for (i, k) in newcomers.iter().enumerate() {
        let consensus = ConsensusTestKey::from_label(&format!("free-gas-newcomer-{i}"));
        let mut msgs =
            vec![consensus.msg_register_host(&chain_id, &k.address, "http://new.example:8080")];
        for url in kiln_messages::ml_ops_type_urls() {
            msgs.push(msg_grant(&k.address, &hots[i].address, url, None));
        }
        let mut opts = d.opts_for(k);
        opts.gas_limit = 2_000_000;
        opts.fee = 100_000;
        txs.push(sign_tx(k, msgs, &opts));
    }
    let out = d.deliver(txs).unwrap();
    assert!(
        out.response.tx_results.iter().all(|r| r.code == 0),
        "{:?}",
        out.response
            .tx_results
            .iter()
            .map(|r| &r.log)
            .collect::<Vec<_>>()
    );
    d.check_invariants().unwrap();
    // Their hot keys' fee-free txs: none accepted.
    let mut refused = 0;
    for (k, h) in newcomers.iter().zip(&hots) {
        let r = {
            let tx = free_tx(&d, h, &k.address, 200_000, 0);
            d.submit(tx)
        };
        assert_eq!(
            (r.codespace.as_str(), r.code),
            ("sdk", INSUFFICIENT_FEE),
            "{}",
            r.log
        );
        assert!(r.log.contains("no weight in force"), "{}", r.log);
        refused += 1;
    }
    assert_eq!(refused, 100);
    // One of them bonds: now its hot key's fee-free tx is accepted.
    let (k, h) = (&newcomers[0], &hots[0]);
    let bond = sign_tx(
        k,
        vec![any_of(&MsgBond {
            host: k.address.to_bech32(),
            amount: "1".into(),
        })],
        &d.opts_for(k),
    );
    let out = d.deliver(vec![bond]).unwrap();
    assert_eq!(
        out.response.tx_results[0].code, 0,
        "{}",
        out.response.tx_results[0].log
    );
    let r = {
        let tx = free_tx(&d, h, &k.address, 200_000, 0);
        d.submit(tx)
    };
    assert_eq!(r.code, 0, "{}", r.log);
}
