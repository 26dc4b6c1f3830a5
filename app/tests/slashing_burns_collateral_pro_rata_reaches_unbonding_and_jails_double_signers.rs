//! Issue 13, "Slashing", through FinalizeBlock as CometBFT drives it, with
//! SPEC §11's invariants after every block (supply = genesis + minted −
//! burned; bonded and unbonding accounts = pools and entries; consensus
//! power = weights in force):
//! - double-sign evidence (`DuplicateVote`) slashes 5% of the host's pool —
//!   its own bond and its delegators' alike, one write — and 5% of an
//!   unbonding entry that started after the misbehaviour (not of one that
//!   started before), burns it, jails the host and takes its consensus
//!   power away in the same block's validator updates;
//! - the same evidence reported again is not punished twice;
//! - `MsgUnjail` is refused before the jail period and accepted after it,
//!   and the host's power returns;
//! - a host whose consensus key signed under half of the epoch's blocks
//!   (FinalizeBlock's `decided_last_commit`) is slashed 10% at the settle;
//!   hosts that signed every block, or two of three, are not.

use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::staking::v1beta1::{MsgDelegate, MsgUndelegate};
use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_staking::misbehavior::consensus_address;
use kiln_staking::msgs::{MsgBond, MsgUnjail};
use kiln_testkit::{any_of, sign_tx, BlockDriver, ConsensusTestKey, TestKey};
use serde_json::Value;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    CommitInfo, ExecTxResult, Misbehavior, MisbehaviorType, RequestQuery, Validator, VoteInfo,
};
use tendermint_proto::v0_38::types::BlockIdFlag;

const CHAIN: &str = "kiln-slashing";

struct Net {
    d: BlockDriver,
    hosts: Vec<TestKey>,
    consensus: Vec<[u8; 20]>,
    alice: TestKey,
    _dir: tempfile::TempDir,
}

fn net() -> Net {
    let hosts: Vec<TestKey> = (0..3)
        .map(|i| TestKey::from_label(&format!("slash-host-{i}")))
        .collect();
    let alice = TestKey::from_label("slash-alice");
    let mut g = kiln_genesis::AppGenesis::with_devnet_params();
    let mut consensus = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        g.add_balance(h.address, vec![Coin::new(BASE_DENOM, 10_000_000)]);
        let key = ConsensusTestKey::from_label(&format!("slash-host-{i}"));
        consensus.push(consensus_address(&key.public));
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: h.address,
            worker_url: format!("http://host{i}.test:8080"),
            consensus_pubkey: hex::encode(key.public),
            models: vec![],
            hardware: "test".into(),
            weight: 10,
        });
    }
    g.add_balance(alice.address, vec![Coin::new(BASE_DENOM, 10_000_000)]);
    let dir = tempfile::tempdir().unwrap();
    let d = BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();
    Net {
        d,
        hosts,
        consensus,
        alice,
        _dir: dir,
    }
}

fn coin(amount: u128) -> Option<ProtoCoin> {
    Some(ProtoCoin {
        denom: BASE_DENOM.into(),
        amount: amount.to_string(),
    })
}

fn num(v: &Value) -> u128 {
    v.as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| v.as_u64().map(u128::from))
        .unwrap_or_else(|| panic!("not a number: {v}"))
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

    fn settled(&self) -> u64 {
        self.query(kiln_staking::query::POOL_PATH, "")["settled_epoch"]
            .as_u64()
            .unwrap()
    }

    fn burned(&self) -> u128 {
        let supply = self.query(kiln_rewards::SUPPLY_PATH, "");
        num(&supply["burned"])
    }

    fn weight(&self, host: &Address) -> u64 {
        kiln_staking::StakingExt::weight_in_force(&self.d.app.latest_view(), host).unwrap()
    }

    /// The commit of the previous block: `signers[i]` says whether host i signed.
    fn commit(&self, signers: &[bool]) -> CommitInfo {
        CommitInfo {
            round: 0,
            votes: self
                .consensus
                .iter()
                .zip(signers)
                .map(|(address, signed)| VoteInfo {
                    validator: Some(Validator {
                        address: address.to_vec().into(),
                        power: 10,
                    }),
                    block_id_flag: if *signed {
                        BlockIdFlag::Commit as i32
                    } else {
                        BlockIdFlag::Absent as i32
                    },
                })
                .collect(),
        }
    }

    /// Blocks with commits signed as `signers` until the settle of `epoch` has run.
    fn settle_through(&mut self, epoch: u64, signers: &[bool]) {
        for _ in 0..2_000 {
            if self.settled() >= epoch {
                return;
            }
            let commit = self.commit(signers);
            self.d.deliver_with_commit(vec![], commit).unwrap();
            self.d.check_invariants().unwrap();
        }
        panic!("epoch {epoch} never settled");
    }
}

fn double_sign(address: [u8; 20], height: u64) -> Misbehavior {
    Misbehavior {
        r#type: MisbehaviorType::DuplicateVote as i32,
        validator: Some(Validator {
            address: address.to_vec().into(),
            power: 10,
        }),
        height: height as i64,
        time: None,
        total_voting_power: 30,
    }
}

#[test]
fn a_double_signer_is_slashed_pro_rata_jailed_and_returns_after_unjail() {
    let mut n = net();
    let h0 = n.hosts[0].clone();
    let alice = n.alice.clone();
    let host = h0.address;

    // Collateral: 1 000 000 of the host's own, 600 000 of alice's.
    n.ok(
        &h0,
        any_of(&MsgBond {
            host: host.to_bech32(),
            amount: "1000000".into(),
        }),
    );
    n.ok(
        &alice,
        any_of(&MsgDelegate {
            delegator_address: alice.address.to_bech32(),
            validator_address: host.to_valoper(),
            amount: coin(600_000),
        }),
    );
    // An unbonding that started before the misbehaviour (not slashable for it)…
    n.ok(
        &alice,
        any_of(&MsgUndelegate {
            delegator_address: alice.address.to_bech32(),
            validator_address: host.to_valoper(),
            amount: coin(100_000),
        }),
    );
    let misbehaved_at = n.d.height + 1;
    n.d.deliver(vec![]).unwrap();
    // …and one that started after it (slashable).
    n.ok(
        &alice,
        any_of(&MsgUndelegate {
            delegator_address: alice.address.to_bech32(),
            validator_address: host.to_valoper(),
            amount: coin(200_000),
        }),
    );
    assert_eq!(num(&n.pool(&host)["backing"]), 1_300_000);
    let burned_before = n.burned();
    assert_eq!(n.weight(&host), 10);

    // CometBFT reports the double sign.
    let out =
        n.d.deliver_with_misbehavior(vec![], vec![double_sign(n.consensus[0], misbehaved_at)])
            .unwrap();
    n.d.check_invariants().unwrap();
    // 5% of the pool: 65 000, one write; 5% of the later entry: 10 000.
    let pool = n.pool(&host);
    assert_eq!(num(&pool["backing"]), 1_235_000);
    assert_eq!(n.burned() - burned_before, 65_000 + 10_000);
    // Pro rata: the host's 1 000 000 shares and alice's 300 000 lost 5% each.
    assert_eq!(num(&pool["self_bond"]), 950_000);
    let mine = n.query(
        kiln_staking::query::DELEGATIONS_PATH,
        &alice.address.to_bech32(),
    );
    assert_eq!(num(&mine["delegations"][0]["balance"]), 285_000, "{mine}");
    let entries = n.query(
        kiln_staking::query::UNBONDING_PATH,
        &alice.address.to_bech32(),
    );
    let mut balances: Vec<u128> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| num(&e["balance"]))
        .collect();
    balances.sort();
    assert_eq!(balances, vec![100_000, 190_000], "{entries}");
    // Jailed: no weight in force, power 0 in this block's validator updates.
    assert!(pool["jailed"].is_object(), "{pool}");
    assert_eq!(n.weight(&host), 0);
    let key = ConsensusTestKey::from_label("slash-host-0").public;
    let update = out
        .response
        .validator_updates
        .iter()
        .find(|u| {
            u.pub_key
                .as_ref()
                .and_then(|k| k.sum.clone())
                .is_some_and(|s| {
                    matches!(s, tendermint_proto::v0_38::crypto::public_key::Sum::Ed25519(b) if b.as_slice() == key.as_slice())
                })
        })
        .expect("a validator update for the jailed key");
    assert_eq!(update.power, 0);
    let slashes = n.query(kiln_slashing::SLASHES_PATH, &host.to_bech32());
    assert_eq!(slashes.as_array().unwrap().len(), 1, "{slashes}");
    assert_eq!(slashes[0]["infraction"], "double_sign");
    assert_eq!(num(&slashes[0]["bonded_burned"]), 65_000);
    assert_eq!(num(&slashes[0]["unbonding_burned"]), 10_000);

    // The same evidence again: recorded, not punished twice.
    n.d.deliver_with_misbehavior(vec![], vec![double_sign(n.consensus[0], misbehaved_at)])
        .unwrap();
    n.d.check_invariants().unwrap();
    assert_eq!(num(&n.pool(&host)["backing"]), 1_235_000);
    assert_eq!(n.burned() - burned_before, 75_000);

    // Unjail too early: refused with its code, nothing changes.
    let unjail = any_of(&MsgUnjail {
        host: host.to_bech32(),
    });
    let r = n.send(&h0, unjail.clone());
    assert_eq!(
        (r.code, r.codespace.as_str()),
        (kiln_staking::pools::codes::STILL_JAILED, "staking"),
        "{}",
        r.log
    );
    assert!(r.log.contains("jailed until"), "{}", r.log);
    // Someone else cannot unjail it (the signer is the host).
    let r = n.send(&alice, unjail.clone());
    assert_ne!(r.code, 0);

    // After the jail period, unjail: the power returns.
    let until = pool["jailed"]["until_epoch"].as_u64().unwrap();
    n.settle_through(until, &[true, true, true]);
    assert_eq!(
        n.weight(&host),
        0,
        "a jailed host gets no weight at a settle"
    );
    n.ok(&h0, unjail.clone());
    assert_eq!(n.weight(&host), 10);
    assert!(n.pool(&host)["jailed"].is_null());
    assert!(n
        .d
        .validators
        .iter()
        .any(|(k, p)| k.as_slice() == key.as_slice() && *p == 10));
    let r = n.send(&h0, unjail);
    assert_eq!(r.code, kiln_staking::pools::codes::NOT_JAILED, "{}", r.log);
}

#[test]
fn a_host_that_signs_under_half_the_blocks_is_slashed_for_downtime() {
    let mut n = net();
    for h in n.hosts.clone() {
        n.ok(
            &h,
            any_of(&MsgBond {
                host: h.address.to_bech32(),
                amount: "1000000".into(),
            }),
        );
    }
    // Through the end of epoch 1 with complete commits, then epoch 2 with
    // host 1 signing nothing and host 2 signing two blocks of three.
    n.settle_through(1, &[true, true, true]);
    let burned_before = n.burned();
    for i in 0..2_000u64 {
        if n.settled() >= 2 {
            break;
        }
        let commit = n.commit(&[true, false, i % 3 != 0]);
        n.d.deliver_with_commit(vec![], commit).unwrap();
        n.d.check_invariants().unwrap();
    }
    let backing = |n: &Net, i: usize| num(&n.pool(&n.hosts[i].address)["backing"]);
    assert_eq!(backing(&n, 0), 1_000_000, "host 0 signed every block");
    assert_eq!(backing(&n, 1), 900_000, "host 1 signed nothing: 10%");
    assert_eq!(
        backing(&n, 2),
        1_000_000,
        "host 2 signed two thirds: not under half"
    );
    assert_eq!(n.burned() - burned_before, 100_000);
    let slashes = n.query(kiln_slashing::SLASHES_PATH, "");
    assert_eq!(slashes.as_array().unwrap().len(), 1, "{slashes}");
    assert_eq!(slashes[0]["infraction"], "downtime");
    assert!(
        slashes[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("signed 0 of "),
        "{slashes}"
    );
    // Downtime does not jail.
    assert!(n.pool(&n.hosts[1].address)["jailed"].is_null());
}

/// The settle's slashing step on a real genesis state: an INVALID host
/// loses 20%, a host that missed more than 5% of its inferences 10%, a
/// host that missed exactly 5% nothing; invariants hold on the result.
#[test]
fn the_settle_slashes_invalid_hosts_and_inference_downtime() {
    let mut n = net();
    for h in n.hosts.clone() {
        n.ok(
            &h,
            any_of(&MsgBond {
                host: h.address.to_bech32(),
                amount: "1000000".into(),
            }),
        );
    }
    let view = n.d.app.latest_view();
    let mut state = kiln_state::Overlay::new(&view);
    let conduct: std::collections::BTreeMap<Address, kiln_slashing::EpochConduct> = [
        (
            n.hosts[0].address,
            kiln_slashing::EpochConduct {
                invalid: true,
                inferences_completed: 100,
                inferences_missed: 0,
            },
        ),
        (
            n.hosts[1].address,
            kiln_slashing::EpochConduct {
                invalid: false,
                inferences_completed: 94,
                inferences_missed: 6,
            },
        ),
        (
            n.hosts[2].address,
            kiln_slashing::EpochConduct {
                invalid: false,
                inferences_completed: 95,
                inferences_missed: 5,
            },
        ),
    ]
    .into_iter()
    .collect();
    let block = kiln_framework::BlockInfo {
        height: n.d.height + 1,
        ..Default::default()
    };
    let mut ctx = kiln_framework::ExecCtx::new(&block);
    kiln_slashing::settle(&mut state, &mut ctx, 1, 1, block.height, &conduct).unwrap();
    let tokens = |i: usize| {
        kiln_staking::pools::PoolsExt::pool(&state, &n.hosts[i].address)
            .unwrap()
            .tokens
    };
    assert_eq!(tokens(0), 800_000, "INVALID: 20%");
    assert_eq!(tokens(1), 900_000, "6% missed: 10%");
    assert_eq!(tokens(2), 1_000_000, "5% missed is not above 5%");
    let records = kiln_slashing::recent(&state, None, 10).unwrap();
    let mut kinds: Vec<(&str, u128)> = records
        .iter()
        .map(|r| (r.infraction.as_str(), r.bonded_burned))
        .collect();
    kinds.sort();
    assert_eq!(kinds, vec![("downtime", 100_000), ("invalid", 200_000)]);
    BlockDriver::check_invariants_with(&state, &n.d.genesis_supply, &n.d.validators).unwrap();
}
