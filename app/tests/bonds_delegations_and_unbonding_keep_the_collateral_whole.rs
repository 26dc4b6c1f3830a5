//! Issue 13, "Staking" (collateral), through the real pipeline with SPEC
//! §11's invariants after every block (the bonded account holds every
//! pool's tokens, the unbonding account every entry, pool shares are the
//! delegations' shares, supply is constant):
//! - a host bonds its own coins (`kiln.staking.v1.MsgBond`); stakers
//!   delegate, undelegate and redelegate with the Cosmos messages and the
//!   host's `kilnvaloper1…` address; the shares and the queries add up;
//! - an unbonding waits for its settle (`unbonding_epochs` = 1: the second
//!   settle after it starts) and then pays the delegator;
//! - the commission moves once per epoch by at most the param;
//! - a host with delegators keeps the minimum self-bond;
//! - bad inputs are refused with their codes and change nothing;
//! - the ML operational key cannot bond for its host (bonds move coins).

use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::staking::v1beta1::{MsgBeginRedelegate, MsgDelegate, MsgUndelegate};
use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_staking::msgs::{MsgBond, MsgSetCommission, MsgUnbond};
use kiln_staking::pools::codes;
use kiln_testkit::{any_of, msg_exec, sign_tx, BlockDriver, ConsensusTestKey, TestKey};
use serde_json::Value;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{ExecTxResult, RequestQuery};

const CHAIN: &str = "kiln-staking-pools";
/// The fee every test tx pays (testkit's default).
const FEE: u128 = 5_000;

struct Net {
    d: BlockDriver,
    hosts: Vec<TestKey>,
    alice: TestKey,
    bob: TestKey,
    hot: TestKey,
    _dir: tempfile::TempDir,
}

fn net() -> Net {
    let hosts: Vec<TestKey> = (0..2)
        .map(|i| TestKey::from_label(&format!("pools-host-{i}")))
        .collect();
    let alice = TestKey::from_label("pools-alice");
    let bob = TestKey::from_label("pools-bob");
    let hot = TestKey::from_label("pools-hot");
    let mut g = kiln_genesis::AppGenesis::with_devnet_params();
    g.staking.params.min_self_bond = 500;
    for (i, h) in hosts.iter().enumerate() {
        g.add_balance(h.address, vec![Coin::new(BASE_DENOM, 1_000_000)]);
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: h.address,
            worker_url: format!("http://host{i}.test:8080"),
            consensus_pubkey: hex::encode(
                ConsensusTestKey::from_label(&format!("pools-host-{i}")).public,
            ),
            models: vec![],
            hardware: "test".into(),
            weight: 10,
        });
    }
    g.add_balance(alice.address, vec![Coin::new(BASE_DENOM, 100_000)]);
    g.add_balance(bob.address, vec![Coin::new(BASE_DENOM, 100_000)]);
    g.add_balance(hot.address, vec![Coin::new(BASE_DENOM, 100_000)]);
    g.add_ml_ops_grants(hosts[0].address, hot.address);
    let dir = tempfile::tempdir().unwrap();
    let d = BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();
    Net {
        d,
        hosts,
        alice,
        bob,
        hot,
        _dir: dir,
    }
}

impl Net {
    fn send(&mut self, key: &TestKey, msg: cosmos_sdk_proto::Any) -> ExecTxResult {
        let tx = sign_tx(key, vec![msg], &self.d.opts_for(key));
        let out = self.d.deliver(vec![tx]).unwrap();
        self.d.check_invariants().unwrap();
        out.response.tx_results[0].clone()
    }

    fn ok(&mut self, key: &TestKey, msg: cosmos_sdk_proto::Any) {
        let r = self.send(key, msg);
        assert_eq!(r.code, 0, "{}", r.log);
    }

    fn refused(&mut self, key: &TestKey, msg: cosmos_sdk_proto::Any, code: u32, words: &str) {
        let r = self.send(key, msg);
        assert_eq!(
            (r.code, r.codespace.as_str()),
            (code, "staking"),
            "{}",
            r.log
        );
        assert!(r.log.contains(words), "{:?} lacks {words:?}", r.log);
    }

    fn query(&self, path: &str, data: &str) -> Value {
        let r = self.d.app.query(RequestQuery {
            path: path.into(),
            data: data.as_bytes().to_vec().into(),
            height: 0,
            prove: false,
        });
        assert_eq!(r.code, 0, "{path} {data}: {}", r.log);
        serde_json::from_slice(&r.value).unwrap()
    }

    fn pool(&self, host: &Address) -> Value {
        self.query(kiln_staking::query::HOST_POOL_PATH, &host.to_valoper())
    }

    /// Empty blocks until the settle of `epoch` has run.
    fn settle_through(&mut self, epoch: u64) {
        for _ in 0..1_000 {
            let settled = self.query(kiln_staking::query::POOL_PATH, "")["settled_epoch"]
                .as_u64()
                .unwrap();
            if settled >= epoch {
                return;
            }
            self.d.deliver(vec![]).unwrap();
            self.d.check_invariants().unwrap();
        }
        panic!("epoch {epoch} never settled");
    }

    fn balance(&self, a: &Address) -> u128 {
        self.d.balance(a)
    }
}

fn coin(amount: u128) -> Option<ProtoCoin> {
    Some(ProtoCoin {
        denom: BASE_DENOM.into(),
        amount: amount.to_string(),
    })
}

fn delegate(from: &TestKey, host: &Address, amount: u128) -> cosmos_sdk_proto::Any {
    any_of(&MsgDelegate {
        delegator_address: from.address.to_bech32(),
        validator_address: host.to_valoper(),
        amount: coin(amount),
    })
}

fn undelegate(from: &TestKey, host: &Address, amount: u128) -> cosmos_sdk_proto::Any {
    any_of(&MsgUndelegate {
        delegator_address: from.address.to_bech32(),
        validator_address: host.to_valoper(),
        amount: coin(amount),
    })
}

fn str_of(v: &Value) -> u128 {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn bonds_delegations_unbonding_and_commission() {
    let mut n = net();
    let (h0, h1) = (n.hosts[0].clone(), n.hosts[1].clone());
    let (alice, bob) = (n.alice.clone(), n.bob.clone());

    // The host bonds its own coins.
    let before = n.balance(&h0.address);
    let bond = any_of(&MsgBond {
        host: h0.address.to_bech32(),
        amount: "1000".into(),
    });
    n.ok(&h0, bond.clone());
    assert_eq!(before - n.balance(&h0.address), 1000 + FEE);
    let pool = n.pool(&h0.address);
    assert_eq!(str_of(&pool["backing"]), 1000);
    assert_eq!(str_of(&pool["self_bond"]), 1000);
    assert_eq!(pool["operator_address"], h0.address.to_valoper());

    // The hot key holds the host's ML-ops grants: bonding is not one of them.
    let hot = n.hot.clone();
    let r = n.send(&hot, msg_exec(&hot.address, vec![bond]));
    assert_ne!(r.code, 0, "the ML key bonded for its host: {}", r.log);

    // Stakers delegate with the Cosmos message and the operator address.
    n.ok(&alice, delegate(&alice, &h0.address, 500));
    n.ok(&bob, delegate(&bob, &h0.address, 300));
    let pool = n.pool(&h0.address);
    assert_eq!(str_of(&pool["backing"]), 1800);
    assert_eq!(str_of(&pool["shares"]), 1800);
    assert_eq!(pool["delegators"], 3);
    let mine = n.query(
        kiln_staking::query::DELEGATIONS_PATH,
        &alice.address.to_bech32(),
    );
    assert_eq!(
        mine["delegations"][0]["operator_address"],
        h0.address.to_valoper()
    );
    assert_eq!(str_of(&mine["delegations"][0]["balance"]), 500);

    // Bad inputs change nothing.
    let supply_before = n.query(kiln_staking::query::POOL_PATH, "")["bonded"].clone();
    n.refused(
        &alice,
        any_of(&MsgDelegate {
            delegator_address: alice.address.to_bech32(),
            validator_address: h0.address.to_bech32(), // not an operator address
            amount: coin(5),
        }),
        codes::BAD_FIELD,
        "expected an operator address",
    );
    n.refused(
        &alice,
        delegate(&alice, &bob.address, 5),
        codes::UNKNOWN_HOST,
        "is not a registered host",
    );
    n.refused(
        &alice,
        any_of(&MsgDelegate {
            delegator_address: alice.address.to_bech32(),
            validator_address: h0.address.to_valoper(),
            amount: Some(ProtoCoin {
                denom: "uatom".into(),
                amount: "5".into(),
            }),
        }),
        codes::BAD_FIELD,
        "only ukiln is bonded",
    );
    n.refused(
        &alice,
        delegate(&alice, &h0.address, 0),
        codes::BAD_FIELD,
        "must be positive",
    );
    n.refused(
        &alice,
        undelegate(&alice, &h0.address, 501),
        codes::NOT_ENOUGH_DELEGATED,
        "worth 500ukiln",
    );
    n.refused(
        &alice,
        undelegate(&alice, &h1.address, 1),
        codes::NO_DELEGATION,
        "has no delegation",
    );
    let r = n.send(&alice, delegate(&alice, &h0.address, 10_000_000));
    assert_ne!(r.code, 0, "delegating more than the balance: {}", r.log);
    assert_eq!(
        n.query(kiln_staking::query::POOL_PATH, "")["bonded"],
        supply_before
    );

    // The minimum self-bond (500) holds while the host has delegators.
    n.refused(
        &h0,
        any_of(&MsgUnbond {
            host: h0.address.to_bech32(),
            amount: "600".into(),
        }),
        codes::BELOW_MIN_SELF_BOND,
        "minimum self-bond is 500ukiln",
    );

    // Unbonding: out of the pool now, paid at the second settle from now.
    let alice_before = n.balance(&alice.address);
    n.ok(&alice, undelegate(&alice, &h0.address, 200));
    assert_eq!(str_of(&n.pool(&h0.address)["backing"]), 1600);
    let entries = n.query(
        kiln_staking::query::UNBONDING_PATH,
        &alice.address.to_bech32(),
    );
    let entry = &entries["entries"][0];
    assert_eq!(str_of(&entry["balance"]), 200);
    let completes = entry["completes_at_epoch"].as_u64().unwrap();
    assert_eq!(completes, 2, "{entries}");
    let fee = FEE;
    n.settle_through(1);
    assert_eq!(
        n.balance(&alice.address),
        alice_before - fee,
        "paid before its settle"
    );
    n.settle_through(2);
    assert_eq!(n.balance(&alice.address), alice_before - fee + 200);
    let entries = n.query(
        kiln_staking::query::UNBONDING_PATH,
        &alice.address.to_bech32(),
    );
    assert_eq!(entries["entries"].as_array().unwrap().len(), 0);

    // Redelegation moves the coins between pools at once.
    n.ok(
        &bob,
        any_of(&MsgBeginRedelegate {
            delegator_address: bob.address.to_bech32(),
            validator_src_address: h0.address.to_valoper(),
            validator_dst_address: h1.address.to_valoper(),
            amount: coin(100),
        }),
    );
    assert_eq!(str_of(&n.pool(&h0.address)["backing"]), 1500);
    assert_eq!(str_of(&n.pool(&h1.address)["backing"]), 100);
    let bobs = n.query(
        kiln_staking::query::DELEGATIONS_PATH,
        &bob.address.to_bech32(),
    );
    assert_eq!(bobs["delegations"].as_array().unwrap().len(), 2, "{bobs}");

    // Commission: at most 100 bps per epoch, once per epoch.
    let set = |bps: u32| {
        any_of(&MsgSetCommission {
            host: h0.address.to_bech32(),
            commission_bps: bps,
        })
    };
    n.refused(
        &h0,
        set(101),
        codes::COMMISSION_CHANGE,
        "at most 100 basis points",
    );
    n.ok(&h0, set(100));
    n.refused(
        &h0,
        set(150),
        codes::COMMISSION_CHANGE,
        "already changed this epoch",
    );
    n.settle_through(3);
    n.ok(&h0, set(200));
    assert_eq!(n.pool(&h0.address)["commission_bps"], 200);

    // Everyone leaves: the last shares take what the pool holds.
    n.ok(&alice, undelegate(&alice, &h0.address, 300));
    n.ok(&bob, undelegate(&bob, &h0.address, 200));
    n.ok(
        &h0,
        any_of(&MsgUnbond {
            host: h0.address.to_bech32(),
            amount: "1000".into(),
        }),
    );
    let pool = n.pool(&h0.address);
    assert_eq!(
        (str_of(&pool["backing"]), str_of(&pool["shares"])),
        (0, 0),
        "{pool}"
    );
    n.settle_through(5);
    let totals = n.query(kiln_staking::query::POOL_PATH, "");
    assert_eq!(str_of(&totals["unbonding"]), 0, "{totals}");
    assert_eq!(str_of(&totals["bonded"]), 100, "{totals}");
}
