//! Property: whatever sequence of host registrations, consensus-key
//! rotations (several per block, back to earlier keys, onto keys another
//! host just left, in the two blocks after a settle) and settles with random
//! raw weights, the validator updates the chain returns
//!
//! * are always accepted by CometBFT 0.38's rules (no removal of a key
//!   CometBFT does not have, no key twice in a block, no empty set, no total
//!   above the max), and
//! * leave CometBFT's validator set equal, key by key, to the effective
//!   weights in force under each host's current consensus key, and
//! * the staking module's `consensus_validators(h)` equals the set CometBFT
//!   signs height `h` with (updates from `h - 2` applied), at every height.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey};
use kiln_framework::{Address, BlockInfo, Component, ExecCtx, GenesisCtx};
use kiln_hosts::msgs::{MsgRegisterHost, MsgUpdateHost};
use kiln_node::validator_rules::{self as rules, ConsensusKey, PowerSet};
use kiln_staking::StakingExt;
use kiln_state::{EmptyState, Overlay};
use proptest::prelude::*;
use tendermint_proto::v0_38::abci::ValidatorUpdate;
use tendermint_proto::v0_38::crypto::{public_key::Sum, PublicKey};

const CHAIN: &str = "kiln-prop";
const HOSTS: u8 = 4;
const KEYS: u8 = 7;

#[derive(Debug, Clone)]
enum Op {
    Register {
        host: u8,
        key: u8,
    },
    Rotate {
        host: u8,
        key: u8,
    },
    /// Raw weight per host (0 = none); the settle ends the block.
    Settle(Vec<u64>),
}

fn owner(host: u8) -> Address {
    Address([host + 1; 20])
}

fn signing_key(key: u8) -> SigningKey {
    SigningKey::from_bytes(&[key + 100; 32])
}

fn public(key: u8) -> Vec<u8> {
    signing_key(key).verifying_key().to_bytes().to_vec()
}

fn proof(key: u8, host: u8) -> Vec<u8> {
    signing_key(key)
        .sign(&kiln_hosts::pop::message(CHAIN, &owner(host)))
        .to_bytes()
        .to_vec()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..HOSTS, 0..KEYS).prop_map(|(host, key)| Op::Register { host, key }),
        (0..HOSTS, 0..KEYS).prop_map(|(host, key)| Op::Rotate { host, key }),
        proptest::collection::vec(
            prop_oneof![Just(0u64), 1u64..1_000, 1u64..(1u64 << 40)],
            HOSTS as usize
        )
        .prop_map(Op::Settle),
    ]
}

/// Runs one message in a nested overlay and keeps its writes only if it
/// succeeded (as the app does with a transaction).
fn run_tx<S: kiln_state::StateRead>(
    state: &mut Overlay<S>,
    block: &BlockInfo,
    f: impl FnOnce(&mut Overlay<&Overlay<S>>, &mut ExecCtx<'_>) -> kiln_framework::TxResult<()>,
) {
    let changes = {
        let mut tx = Overlay::new(&*state);
        let mut ctx = ExecCtx::new(block);
        match f(&mut tx, &mut ctx) {
            Ok(()) => Some(tx.into_changes()),
            Err(_) => None,
        }
    };
    if let Some(c) = changes {
        state.apply(c);
    }
}

fn to_power_set(updates: &BTreeMap<Vec<u8>, kiln_staking::state::ConsensusValidator>) -> PowerSet {
    updates
        .iter()
        .map(|(k, v)| {
            (
                ConsensusKey::Ed25519(k.as_slice().try_into().unwrap()),
                i64::try_from(v.power).unwrap(),
            )
        })
        .collect()
}

fn abci(updates: &[kiln_staking::PowerUpdate]) -> Vec<ValidatorUpdate> {
    updates
        .iter()
        .map(|u| ValidatorUpdate {
            pub_key: Some(PublicKey {
                sum: Some(Sum::Ed25519(u.consensus_pubkey.clone())),
            }),
            power: i64::try_from(u.power).unwrap(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validator_updates_applied_by_cometbft_rules_always_equal_the_effective_weights(
        blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..4), 1..24)
    ) {
        let mut state = Overlay::new(EmptyState);
        // Genesis: host 0 with key 0 and weight 10.
        let genesis = kiln_hosts::HostsGenesis {
            ml_nodes: Vec::new(),
            hosts: vec![kiln_hosts::GenesisHost {
                owner: owner(0),
                worker_url: "http://h0.example".into(),
                consensus_pubkey: hex::encode(public(0)),
                models: vec![],
                hardware: String::new(),
                weight: 10,
            }],
        };
        let ctx = GenesisCtx { chain_id: CHAIN.into(), initial_height: 1 };
        kiln_hosts::genesis::Hosts::init_genesis(&mut state, &genesis, &ctx).unwrap();
        kiln_staking::Staking::init_genesis(
            &mut state,
            &kiln_staking::StakingInit {
                params: kiln_staking::StakingParams::default(),
                initial_weights: genesis.initial_weights(),
                bonds: Vec::new(),
            },
            &ctx,
        )
        .unwrap();
        let genesis_updates: Vec<kiln_staking::PowerUpdate> = state
            .given_validators()
            .unwrap()
            .into_iter()
            .map(|(k, v)| kiln_staking::PowerUpdate { host: v.owner, consensus_pubkey: k, power: v.power })
            .collect();
        let genesis_set = rules::genesis_validator_set(&abci(&genesis_updates), rules::DEFAULT_KEY_TYPES).unwrap();
        // CometBFT's signing set per height: heights 1 and 2 use the genesis set.
        let mut signing: BTreeMap<u64, PowerSet> = BTreeMap::new();
        signing.insert(1, genesis_set.clone());
        signing.insert(2, genesis_set.clone());
        let mut next = genesis_set;
        let mut epoch = 0u64;

        for (i, ops) in blocks.iter().enumerate() {
            let height = i as u64 + 1;
            let block = BlockInfo { chain_id: CHAIN.into(), height, ..Default::default() };
            let mut settled = false;
            for op in ops {
                match op {
                    Op::Register { host, key } => run_tx(&mut state, &block, |s, c| {
                        kiln_hosts::handler::register_host(s, c, &MsgRegisterHost {
                            owner: owner(*host).to_string(),
                            worker_url: "http://h.example".into(),
                            consensus_pubkey: public(*key),
                            models: vec![],
                            hardware: String::new(),
                            consensus_key_proof: proof(*key, *host),
                        })
                    }),
                    Op::Rotate { host, key } => run_tx(&mut state, &block, |s, c| {
                        kiln_hosts::handler::update_host(s, c, &MsgUpdateHost {
                            owner: owner(*host).to_string(),
                            worker_url: "http://h.example".into(),
                            consensus_pubkey: public(*key),
                            models: vec![],
                            hardware: String::new(),
                            consensus_key_proof: proof(*key, *host),
                        })
                    }),
                    Op::Settle(raw) if !settled => {
                        epoch += 1;
                        // Only registered hosts earn weight (as the sprint tally does).
                        let raw: BTreeMap<Address, u64> = raw
                            .iter()
                            .enumerate()
                            .map(|(h, w)| (owner(h as u8), *w))
                            .filter(|(a, w)| *w > 0 && kiln_hosts::HostsExt::is_host(&state, a).unwrap())
                            .collect();
                        let effective = kiln_staking::settle::effective_weights(&state, 1, &raw).unwrap();
                        let change = kiln_staking::settle::apply_validator_set(&mut state, epoch, height, &effective).unwrap();
                        settled |= change.weights_changed;
                    }
                    Op::Settle(_) => {}
                }
            }
            let (updates, _) = kiln_staking::validators::end_block_updates(&mut state, height, settled).unwrap();
            // At most one update per key, and CometBFT accepts the list.
            let applied = rules::apply_validator_updates(&next, &abci(&updates), rules::DEFAULT_KEY_TYPES);
            prop_assert!(applied.is_ok(), "height {height}: CometBFT refuses {updates:?}: {applied:?}");
            next = applied.unwrap();
            signing.insert(height + 2, next.clone());
            // CometBFT's next set = the set the chain recorded = the effective
            // weights in force under each host's current key.
            prop_assert_eq!(&to_power_set(&state.given_validators().unwrap()), &next);
            let desired = kiln_staking::validators::desired_validator_set(&state).unwrap();
            prop_assert_eq!(&to_power_set(&desired), &next);
            // Each host holds its weight under exactly one key.
            let mut by_owner: BTreeMap<Address, u64> = BTreeMap::new();
            for v in desired.values() {
                prop_assert!(by_owner.insert(v.owner, v.power).is_none(), "a host holds power under two keys");
            }
            prop_assert_eq!(by_owner, state.weights_in_force().unwrap());
            // The schedule answers every height from this one on exactly.
            for h in height..=height + 2 {
                let expected = signing.get(&h).cloned().unwrap_or_else(|| next.clone());
                prop_assert_eq!(
                    &to_power_set(&state.consensus_validators(h).unwrap()),
                    &expected,
                    "consensus_validators({}) at state height {}", h, height
                );
            }
        }
    }
}
