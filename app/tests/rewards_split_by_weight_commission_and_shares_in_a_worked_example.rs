//! Issue 13, "Rewards": a worked example with exact numbers, on a real
//! genesis state (every module's genesis; SPEC §11's invariants checked on
//! the result), running the settle's rewards step
//! (`kiln_rewards::distribute`) for epoch 1 with E0 = 1 000 000 ukiln and a
//! 2% community tax.
//!
//! Hosts: H (effective weight 10, 10% commission, self-bond 1 000 ukiln,
//! delegators D1 600 and D2 400) and G (weight 30, no pool). H skipped a
//! quarter of its validation duties (1 of 4).
//!
//! | step | ukiln |
//! |---|---|
//! | minted | 1 000 000 |
//! | community tax 2% | 20 000 |
//! | to hosts | 980 000 |
//! | H's share 10/40 | 245 000 → 183 750 after its skipped duties (61 250 forfeited) |
//! | G's share 30/40 | 735 000, all to G (no pool) |
//! | H's commission 10% | 18 375 |
//! | H's own part 1 000/2 000 of 165 375 | 82 687 (rounded down) |
//! | delegators' part | 82 688 → reward ratio +82 688·10¹⁸/1 000 |
//! | D1 (600 shares) | 49 612 (49 612.8 rounded down) |
//! | D2 (400 shares) | 33 075 (33 075.2 rounded down) |
//! | community pool | 20 000 + 61 250 = 81 250 |
//!
//! One ukiln of dust stays in the distribution account (0.8 + 0.2).

use std::collections::BTreeMap;

use kiln_framework::{Coin, ExecCtx, BASE_DENOM};
use kiln_staking::pools::PoolsExt;
use kiln_state::Overlay;
use kiln_testkit::{any_of, sign_tx, BlockDriver, ConsensusTestKey, TestKey};

const CHAIN: &str = "kiln-rewards-example";

#[test]
fn the_worked_example_splits_exactly() {
    let h = TestKey::from_label("rewards-h");
    let g = TestKey::from_label("rewards-g");
    let d1 = TestKey::from_label("rewards-d1");
    let d2 = TestKey::from_label("rewards-d2");
    let mut genesis = kiln_genesis::AppGenesis::with_devnet_params();
    genesis.rewards.params = kiln_rewards::RewardsParams {
        initial_emission: 1_000_000,
        decay_ppb: 475_000,
        community_tax_bps: 200,
    };
    // One commission step of 10% (the default limit is 1% per epoch).
    genesis.staking.params.max_commission_change_bps = 1_000;
    for (i, host) in [&h, &g].iter().enumerate() {
        genesis.add_balance(host.address, vec![Coin::new(BASE_DENOM, 100_000)]);
        genesis.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: host.address,
            worker_url: format!("http://host{i}.test:8080"),
            consensus_pubkey: hex::encode(
                ConsensusTestKey::from_label(&format!("rewards-host-{i}")).public,
            ),
            models: vec![],
            hardware: "test".into(),
            weight: 10,
        });
    }
    genesis.add_balance(d1.address, vec![Coin::new(BASE_DENOM, 1_000)]);
    genesis.add_balance(d2.address, vec![Coin::new(BASE_DENOM, 1_000)]);
    for (who, amount) in [(&h, 1_000u128), (&d1, 600), (&d2, 400)] {
        genesis
            .staking
            .bonds
            .push(kiln_staking::genesis::GenesisBond {
                delegator: who.address,
                host: h.address,
                amount,
            });
    }
    let dir = tempfile::tempdir().unwrap();
    let mut d = BlockDriver::open(
        dir.path(),
        CHAIN,
        &serde_json::to_value(&genesis).unwrap(),
        0,
    )
    .unwrap();
    let set = any_of(&kiln_staking::msgs::MsgSetCommission {
        host: h.address.to_bech32(),
        commission_bps: 1_000,
    });
    let tx = sign_tx(&h, vec![set], &d.opts_for(&h));
    let r = d.deliver(vec![tx]).unwrap();
    assert_eq!(
        r.response.tx_results[0].code, 0,
        "{}",
        r.response.tx_results[0].log
    );
    d.check_invariants().unwrap();

    let view = d.app.latest_view();
    let mut state = Overlay::new(&view);
    let balance = |s: &Overlay<_>, a: &kiln_framework::Address| {
        kiln_bank::state::balance_readonly(s, a, BASE_DENOM).unwrap()
    };
    let (h0, g0) = (balance(&state, &h.address), balance(&state, &g.address));
    let eligible: BTreeMap<_, _> = [
        (
            h.address,
            kiln_rewards::Eligible {
                effective_weight: 10,
                duties_assigned_micro: 4_000_000,
                duties_skipped_micro: 1_000_000,
            },
        ),
        (
            g.address,
            kiln_rewards::Eligible {
                effective_weight: 30,
                duties_assigned_micro: 0,
                duties_skipped_micro: 0,
            },
        ),
    ]
    .into_iter()
    .collect();
    let block = kiln_framework::BlockInfo {
        height: d.height + 1,
        ..Default::default()
    };
    let mut ctx = ExecCtx::new(&block);
    kiln_rewards::distribute(&mut state, &mut ctx, 1, &eligible).unwrap();

    assert_eq!(balance(&state, &h.address) - h0, 18_375 + 82_687);
    assert_eq!(balance(&state, &g.address) - g0, 735_000);
    assert_eq!(
        state.pending_rewards(&h.address, &d1.address).unwrap(),
        49_612
    );
    assert_eq!(
        state.pending_rewards(&h.address, &d2.address).unwrap(),
        33_075
    );
    assert_eq!(state.pending_rewards(&h.address, &h.address).unwrap(), 0);
    let community = kiln_framework::Address::module(kiln_rewards::COMMUNITY_POOL_ACCOUNT);
    assert_eq!(balance(&state, &community), 81_250);
    let distribution = kiln_framework::Address::module(kiln_staking::pools::DISTRIBUTION_ACCOUNT);
    assert_eq!(balance(&state, &distribution), 82_688);
    assert_eq!(
        balance(
            &state,
            &kiln_framework::Address::module(kiln_rewards::EMISSION_ACCOUNT)
        ),
        0
    );
    d.check_invariants_on(&state).unwrap();

    // D1 withdraws: paid exactly its pending rewards, and nothing is left
    // to withdraw twice.
    let d1_before = balance(&state, &d1.address);
    let paid = kiln_staking::pools::withdraw_rewards(&mut state, &mut ctx, &d1.address, &h.address)
        .unwrap();
    assert_eq!(paid, 49_612);
    assert_eq!(balance(&state, &d1.address) - d1_before, 49_612);
    assert_eq!(state.pending_rewards(&h.address, &d1.address).unwrap(), 0);
    // D2 leaves entirely: its rewards are paid first (a delegation change
    // withdraws).
    let d2_before = balance(&state, &d2.address);
    kiln_staking::pools::undelegate(&mut state, &mut ctx, &d2.address, &h.address, 400).unwrap();
    assert_eq!(balance(&state, &d2.address) - d2_before, 33_075);
    // What remains in the distribution account is the rounding dust.
    assert_eq!(balance(&state, &distribution), 1);
    d.check_invariants_on(&state).unwrap();
}
