//! SPEC §2: messages the ML operational key sends through a grant are
//! fee-exempt up to a per-epoch allowance per host (authz param
//! `ml_ops_free_txs_per_epoch`), so a host never stalls because its hot wallet
//! ran dry. Driven through CheckTx and block execution.

use kiln_framework::Address;
use kiln_sprint::msgs::MsgSprintCommit;
use kiln_testkit::{
    any_of, msg_exec, msg_grant, msg_send, sign_tx, BlockDriver, TestKey, TxOptions,
};

const CHAIN: &str = "kiln-fee-allowance";
const ALLOWANCE: u64 = 3;
/// The sdk code of "insufficient fee".
const INSUFFICIENT_FEE: u32 = 13;

struct Setup {
    driver: BlockDriver,
    host: TestKey,
    /// Granted every ML-ops type at genesis, never funded.
    hot: TestKey,
    _dir: tempfile::TempDir,
}

fn genesis(
    host: &TestKey,
    hot: &TestKey,
    allowance: u64,
    expiration_unix: Option<i64>,
) -> serde_json::Value {
    let mut g = kiln_genesis::AppGenesis::default();
    g.epochs.params = kiln_epochs::EpochParams::devnet();
    g.sprint.params = kiln_sprint::SprintParams::devnet();
    g.reputation.params = kiln_reputation::ReputationParams::devnet();
    g.authz.params.ml_ops_free_txs_per_epoch = allowance;
    g.add_balance(
        host.address,
        vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
    );
    g.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: host.address,
        worker_url: "http://host.example:8080".into(),
        consensus_pubkey: hex::encode([7u8; 32]),
        models: vec![],
        hardware: "test".into(),
        weight: 100,
    });
    for url in kiln_messages::ml_ops_type_urls() {
        g.authz.grants.push(kiln_authz::GenesisGrant {
            granter: host.address,
            grantee: hot.address,
            msg_type_url: url.to_string(),
            expiration_unix,
        });
    }
    serde_json::to_value(g).unwrap()
}

fn setup_with(allowance: u64, expiration_unix: Option<i64>) -> Setup {
    let host = TestKey::from_label("allowance-host");
    let hot = TestKey::from_label("allowance-hot");
    let dir = tempfile::tempdir().unwrap();
    let driver = BlockDriver::open(
        dir.path(),
        CHAIN,
        &genesis(&host, &hot, allowance, expiration_unix),
        0,
    )
    .unwrap();
    Setup {
        driver,
        host,
        hot,
        _dir: dir,
    }
}

fn setup() -> Setup {
    setup_with(ALLOWANCE, None)
}

fn commit_msg(host: &Address, epoch: u64) -> cosmos_sdk_proto::Any {
    any_of(&MsgSprintCommit {
        host: host.to_bech32(),
        ml_node: String::new(),
        epoch,
        root: vec![9; 32],
        count: 10,
        secret_hash: vec![8; 32],
    })
}

/// A zero-fee `MsgExec` by `signer` carrying `inner`, at `sequence`.
fn zero_fee_exec(
    d: &BlockDriver,
    signer: &TestKey,
    inner: Vec<cosmos_sdk_proto::Any>,
    sequence: u64,
) -> Vec<u8> {
    let (number, _) = d
        .account(&signer.address)
        .expect("the signer has an account");
    let mut opts = TxOptions::new(&d.chain_id, number, sequence);
    opts.fee = 0;
    opts.gas_limit = 400_000;
    sign_tx(signer, vec![msg_exec(&signer.address, inner)], &opts)
}

/// The refusal every fee-less tx outside the allowance gets, in CheckTx and
/// in a block alike: the SDK's insufficient-fee code.
#[track_caller]
fn assert_insufficient_fee(codespace: &str, code: u32, log: &str) {
    assert_eq!((codespace, code), ("sdk", INSUFFICIENT_FEE), "{log}");
}

fn used(d: &BlockDriver, epoch: u64, host: &Address) -> u64 {
    kiln_authz::state::fee_allowance_used(&d.app.latest_view(), epoch, host).unwrap()
}

#[test]
fn zero_fee_ml_ops_exec_from_an_unfunded_hot_key_is_accepted() {
    let Setup {
        mut driver,
        host,
        hot,
        _dir,
    } = setup();
    // The genesis grant created the hot key's account: it can sign at once.
    assert!(
        driver.account(&hot.address).is_some(),
        "genesis grants create the grantee's account"
    );
    assert_eq!(driver.balance(&hot.address), 0);

    let tx = zero_fee_exec(&driver, &hot, vec![commit_msg(&host.address, 1)], 0);
    let check = driver.submit(tx);
    assert_eq!(check.code, 0, "{}", check.log);
    let out = driver.produce_block().unwrap();
    assert_eq!(out.included.len(), 1);
    let r = &out.response.tx_results[0];
    assert_eq!(r.code, 0, "{}", r.log);
    assert!(r
        .events
        .iter()
        .any(|e| e.r#type == "kiln.authz.v1.EventFeeAllowanceUsed"));
    assert_eq!(driver.balance(&hot.address), 0, "nothing was charged");
    assert_eq!(
        driver.account(&hot.address).unwrap().1,
        1,
        "the sequence still advances"
    );
    assert_eq!(used(&driver, 1, &host.address), 1);
    assert!(
        kiln_sprint::state::commitment(&driver.app.latest_view(), 1, &host.address)
            .unwrap()
            .is_some(),
        "the commit ran"
    );
}

#[test]
fn a_grant_by_msg_grant_creates_the_hot_key_account_so_it_works_immediately() {
    let Setup {
        mut driver, host, ..
    } = setup();
    let fresh = TestKey::from_label("allowance-fresh-hot");
    assert!(driver.account(&fresh.address).is_none());
    driver
        .deliver_ok(
            &host,
            vec![msg_grant(
                &host.address,
                &fresh.address,
                "/kiln.sprint.v1.MsgSprintCommit",
                None,
            )],
        )
        .unwrap();
    assert_eq!(
        driver.account(&fresh.address).map(|a| a.1),
        Some(0),
        "MsgGrant created the grantee's account"
    );

    let tx = zero_fee_exec(&driver, &fresh, vec![commit_msg(&host.address, 1)], 0);
    let r = driver.deliver(vec![tx]).unwrap();
    assert_eq!(
        r.response.tx_results[0].code, 0,
        "{}",
        r.response.tx_results[0].log
    );
}

#[test]
fn the_allowance_runs_out_pays_nothing_when_fees_are_paid_and_resets_next_epoch() {
    let Setup {
        mut driver,
        host,
        hot,
        _dir,
    } = setup();
    // ALLOWANCE zero-fee txs in one mempool: CheckTx counts them in its overlay.
    for seq in 0..ALLOWANCE {
        let r = driver.submit(zero_fee_exec(
            &driver,
            &hot,
            vec![commit_msg(&host.address, 1)],
            seq,
        ));
        assert_eq!(r.code, 0, "tx {seq}: {}", r.log);
    }
    let over = zero_fee_exec(&driver, &hot, vec![commit_msg(&host.address, 1)], ALLOWANCE);
    let r = driver.submit(over.clone());
    assert_insufficient_fee(&r.codespace, r.code, &r.log);
    assert!(
        r.log.contains("allowance") && r.log.contains("exhausted"),
        "{}",
        r.log
    );
    let out = driver.produce_block().unwrap();
    assert_eq!(out.included.len(), ALLOWANCE as usize);
    // Only the first commit of the epoch succeeds in its handler; the others
    // fail there but passed the ante (so they counted).
    assert!(out
        .response
        .tx_results
        .iter()
        .all(|r| r.code != INSUFFICIENT_FEE || r.codespace != "sdk"));
    assert_eq!(used(&driver, 1, &host.address), ALLOWANCE);

    // Block execution refuses the next zero-fee tx with the same clear reason.
    let out = driver.deliver(vec![over]).unwrap();
    let r = &out.response.tx_results[0];
    assert_insufficient_fee(&r.codespace, r.code, &r.log);
    assert!(
        r.log.contains(&format!("{ALLOWANCE} of {ALLOWANCE}")) && r.log.contains("exhausted"),
        "{}",
        r.log
    );
    assert_eq!(
        driver.account(&hot.address).unwrap().1,
        ALLOWANCE,
        "a refused tx changes nothing"
    );

    // Paying the fee works and consumes no allowance.
    driver
        .deliver_ok(
            &host,
            vec![msg_send(&host.address, &hot.address, 1_000_000)],
        )
        .unwrap();
    let mut opts = driver.opts_for(&hot);
    opts.gas_limit = 400_000;
    opts.fee = 10_000;
    let paid = sign_tx(
        &hot,
        vec![msg_exec(&hot.address, vec![commit_msg(&host.address, 1)])],
        &opts,
    );
    let out = driver.deliver(vec![paid]).unwrap();
    assert_ne!(
        out.response.tx_results[0].code, INSUFFICIENT_FEE,
        "{}",
        out.response.tx_results[0].log
    );
    assert_eq!(driver.balance(&hot.address), 1_000_000 - 10_000);
    assert_eq!(used(&driver, 1, &host.address), ALLOWANCE);

    // A new epoch resets the allowance (and prunes the old counters).
    let epoch_length = kiln_epochs::EpochParams::devnet().epoch_length;
    while driver.height + 1 < 1 + epoch_length {
        driver.deliver(vec![]).unwrap();
        driver.check_invariants().unwrap();
    }
    let seq = driver.account(&hot.address).unwrap().1;
    let tx = zero_fee_exec(&driver, &hot, vec![commit_msg(&host.address, 2)], seq);
    let r = driver.submit(tx);
    assert_eq!(r.code, 0, "{}", r.log);
    let out = driver.produce_block().unwrap();
    assert_eq!(
        out.response.tx_results[0].code, 0,
        "{}",
        out.response.tx_results[0].log
    );
    assert_eq!(used(&driver, 2, &host.address), 1);
    assert_eq!(
        used(&driver, 1, &host.address),
        0,
        "epoch 1's counter was pruned"
    );
    driver.check_invariants().unwrap();
}

#[test]
fn zero_fee_exec_of_a_non_ml_ops_message_is_refused() {
    let Setup {
        mut driver,
        host,
        hot,
        _dir,
    } = setup();
    // Even with a MsgSend grant, a MsgSend through MsgExec pays the fee.
    driver
        .deliver_ok(
            &host,
            vec![msg_grant(
                &host.address,
                &hot.address,
                kiln_bank::handler::MSG_SEND_TYPE_URL,
                None,
            )],
        )
        .unwrap();

    let send = zero_fee_exec(
        &driver,
        &hot,
        vec![msg_send(&host.address, &hot.address, 5)],
        0,
    );
    let r = driver.submit(send.clone());
    assert_insufficient_fee(&r.codespace, r.code, &r.log);
    assert!(
        !r.log.contains("allowance"),
        "a non-ML-ops tx is not about the allowance: {}",
        r.log
    );
    assert_eq!(
        driver.deliver(vec![send]).unwrap().response.tx_results[0].code,
        INSUFFICIENT_FEE
    );

    // Mixing an ML-ops message with a MsgSend does not qualify either.
    let mixed = zero_fee_exec(
        &driver,
        &hot,
        vec![
            commit_msg(&host.address, 1),
            msg_send(&host.address, &hot.address, 5),
        ],
        0,
    );
    assert_eq!(driver.submit(mixed).code, INSUFFICIENT_FEE);
    // Nor does a plain (non-MsgExec) message signed by the host itself.
    let (number, seq) = driver.account(&host.address).unwrap();
    let mut opts = TxOptions::new(CHAIN, number, seq);
    opts.fee = 0;
    assert_eq!(
        driver
            .submit(sign_tx(&host, vec![commit_msg(&host.address, 1)], &opts))
            .code,
        INSUFFICIENT_FEE
    );
    assert_eq!(used(&driver, 1, &host.address), 0);
}

#[test]
fn zero_fee_tx_from_a_key_without_a_grant_is_refused() {
    let Setup {
        mut driver, host, ..
    } = setup();
    // A key with an account (funded once) but no grant from the host.
    let stranger = TestKey::from_label("allowance-stranger");
    driver
        .deliver_ok(&host, vec![msg_send(&host.address, &stranger.address, 1)])
        .unwrap();
    let tx = zero_fee_exec(&driver, &stranger, vec![commit_msg(&host.address, 1)], 0);
    let r = driver.submit(tx.clone());
    assert_insufficient_fee(&r.codespace, r.code, &r.log);
    assert!(!r.log.contains("allowance"), "{}", r.log);
    assert_eq!(
        driver.deliver(vec![tx]).unwrap().response.tx_results[0].code,
        INSUFFICIENT_FEE
    );
    assert_eq!(used(&driver, 1, &host.address), 0);
}

#[test]
fn an_expired_grant_or_a_zero_allowance_gives_no_exemption() {
    // The grants expire one second after genesis (block 1 is at genesis + 1 s).
    let Setup {
        mut driver,
        host,
        hot,
        _dir,
    } = setup_with(ALLOWANCE, Some(kiln_testkit::GENESIS_TIME + 1));
    driver.deliver(vec![]).unwrap();
    let r = driver.submit(zero_fee_exec(
        &driver,
        &hot,
        vec![commit_msg(&host.address, 1)],
        0,
    ));
    assert_eq!(r.code, INSUFFICIENT_FEE, "{}", r.log);

    let Setup {
        mut driver,
        host,
        hot,
        _dir,
    } = setup_with(0, None);
    let r = driver.submit(zero_fee_exec(
        &driver,
        &hot,
        vec![commit_msg(&host.address, 1)],
        0,
    ));
    assert_eq!(r.code, INSUFFICIENT_FEE, "{}", r.log);
    assert!(r.log.contains("disabled"), "{}", r.log);
}

#[test]
fn an_account_that_is_not_a_registered_host_gets_no_allowance() {
    let Setup {
        mut driver, host, ..
    } = setup();
    // A funded account that never registered as a host grants a fresh key.
    let outsider = TestKey::from_label("allowance-outsider");
    let outsider_hot = TestKey::from_label("allowance-outsider-hot");
    driver
        .deliver_ok(
            &host,
            vec![msg_send(&host.address, &outsider.address, 10_000_000)],
        )
        .unwrap();
    driver
        .deliver_ok(
            &outsider,
            vec![msg_grant(
                &outsider.address,
                &outsider_hot.address,
                "/kiln.sprint.v1.MsgSprintCommit",
                None,
            )],
        )
        .unwrap();

    let tx = zero_fee_exec(
        &driver,
        &outsider_hot,
        vec![commit_msg(&outsider.address, 1)],
        0,
    );
    let check = driver.submit(tx);
    assert_eq!(
        check.code, 13,
        "insufficient fee, not an exemption: {}",
        check.log
    );
    assert_eq!(used(&driver, 1, &outsider.address), 0);
}
