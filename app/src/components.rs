//! The components of the Kiln state machine and the one fixed order in which
//! the app calls them. There is no registry: adding a component means adding
//! its calls here, where every ordering decision is visible.
//!
//! | order | component | genesis | begin block | end of epoch (settle) |
//! |---|---|---|---|---|
//! | 1 | `epochs` | params, first height | computes the block's [`EpochInfo`]; records seed/challenge hashes | — |
//! | 2 | `bank` (auth + bank) | accounts, balances, supply | — | — |
//! | 3 | `authz` | grants, params | prunes old fee-allowance counters at each epoch start | — |
//! | 4 | `hosts` | genesis hosts | at each epoch start: ML nodes' scheduled enables and disables | — |
//! | 5 | `staking` | params, epoch-1 weights (power-capped), genesis bonds, the genesis validator set | — | 2. effective weights, 3. weights in force, 6. unbondings paid |
//! | 6 | `sprint` | params | challenge stage start: the epoch's beacon; vote-commit stage start: committees | 1. raw weights |
//! | 7 | `reputation` | params | — | 5. reputation |
//! | 8 | `inference` | params, models, starting prices, serving sets | end of block: timeouts (refund + miss), pruning, the draw window's block hash, each model's price steps toward the utilisation band | 4. reliability, validation duties, serving sets |
//! | 9 | `rewards` | params | — | 7. emission and its split |
//! | 10 | `slashing` | params | evidence: double signs slashed and jailed; the commit's signatures counted (liveness) | 8. INVALID and downtime slashes |
//! | 11 | `gov` | params | — (end of block: deposit and voting periods that end; passed proposals' messages executed, all or nothing) | — |
//!
//! Before every hook of a block: a software upgrade planned for this height
//! runs its migration or halts the node (`crate::upgrades`); at the first
//! block of an epoch, parameter changes that passed governance are put in
//! force ([`apply_scheduled_params`]), before the epochs hook computes the
//! block's place in the (possibly re-anchored) schedule.
//!
//! Last in every block's end, staking turns the block's weight changes and
//! consensus-key rotations into CometBFT's validator updates
//! (`kiln_staking::validators::end_block_updates`): one list, one update per key.
//!
//! The settle ([`settle`]) runs at the epoch's settle block, after the
//! block's transactions, as one explicit pipeline:
//! raw weights (sprint) → effective weights (staking: collateral after the
//! grace epochs, power cap) → validator set (staking) → serving (inference:
//! reliability, validation duties, serving sets) → reputation (sprint
//! outcome + inference misses) → unbondings (staking) → rewards (emission
//! split by effective weight, reduced for skipped duties) → slashing
//! (INVALID, downtime).

use kiln_framework::{
    BlockInfo, Component, EpochInfo, Event, GenesisCtx, RawWeightSource, Stage, TxResult,
};
use kiln_genesis::AppGenesis;
use kiln_staking::PowerUpdate;
use kiln_state::StateWrite;

/// The key prefix each module owns, in component order. Every key in the
/// state starts with exactly one of them (checked by the pinned-scenario
/// test); no prefix is a prefix of another.
pub const KEY_PREFIXES: &[(&str, &[u8])] = &[
    ("app", crate::app::keys::PREFIX),
    ("epochs", kiln_epochs::keys::PREFIX),
    ("auth", kiln_bank::keys::AUTH_PREFIX),
    ("bank", kiln_bank::keys::BANK_PREFIX),
    ("authz", kiln_authz::keys::PREFIX),
    ("hosts", kiln_hosts::keys::PREFIX),
    ("staking", kiln_staking::keys::PREFIX),
    ("sprint", kiln_sprint::keys::PREFIX),
    ("reputation", kiln_reputation::PREFIX),
    ("inference", kiln_inference::keys::PREFIX),
    ("rewards", kiln_rewards::PREFIX),
    ("slashing", kiln_slashing::PREFIX),
    ("gov", kiln_gov::PREFIX),
];

/// Writes every module's genesis, in the component order.
pub fn init_genesis<S: StateWrite>(
    state: &mut S,
    genesis: &AppGenesis,
    ctx: &GenesisCtx,
) -> TxResult<()> {
    kiln_epochs::Epochs::init_genesis(state, &genesis.epochs, ctx)?;
    kiln_bank::Bank::init_genesis(
        state,
        &kiln_bank::BankInit {
            auth: genesis.auth.clone(),
            bank: genesis.bank.clone(),
        },
        ctx,
    )?;
    kiln_authz::Authz::init_genesis(state, &genesis.authz, ctx)?;
    kiln_hosts::genesis::Hosts::init_genesis(state, &genesis.hosts, ctx)?;
    kiln_staking::Staking::init_genesis(
        state,
        &kiln_staking::StakingInit {
            params: genesis.staking.params.clone(),
            initial_weights: genesis.hosts.initial_weights(),
            bonds: genesis.staking.bonds.clone(),
        },
        ctx,
    )?;
    kiln_sprint::Sprint::init_genesis(state, &genesis.sprint, ctx)?;
    kiln_reputation::Reputation::init_genesis(state, &genesis.reputation, ctx)?;
    kiln_inference::Inference::init_genesis(state, &genesis.inference, ctx)?;
    kiln_rewards::Rewards::init_genesis(state, &genesis.rewards, ctx)?;
    kiln_slashing::Slashing::init_genesis(state, &genesis.slashing, ctx)?;
    kiln_gov::Gov::init_genesis(state, &genesis.gov, ctx)?;
    Ok(())
}

/// Begin-block hooks, in the component order. Returns the block's position
/// in the epoch schedule and the events.
pub fn begin_block<S: StateWrite>(
    state: &mut S,
    block: &BlockInfo,
) -> TxResult<(EpochInfo, Vec<Event>)> {
    let mut events = apply_scheduled_params(state, block.height)?;
    let (epoch, stage_event) = kiln_epochs::state::begin_block(state, block.height, &block.hash)?;
    events.extend(stage_event);
    events.extend(kiln_bank::Bank::begin_block(state, block, &epoch)?);
    events.extend(kiln_authz::Authz::begin_block(state, block, &epoch)?);
    events.extend(kiln_hosts::genesis::Hosts::begin_block(
        state, block, &epoch,
    )?);
    events.extend(kiln_staking::Staking::begin_block(state, block, &epoch)?);
    events.extend(kiln_sprint::Sprint::begin_block(state, block, &epoch)?);
    events.extend(kiln_reputation::Reputation::begin_block(
        state, block, &epoch,
    )?);
    if epoch.stage_start == block.height {
        events.extend(kiln_bank::Bank::on_stage_start(state, block, &epoch)?);
        events.extend(kiln_authz::Authz::on_stage_start(state, block, &epoch)?);
        events.extend(kiln_hosts::genesis::Hosts::on_stage_start(
            state, block, &epoch,
        )?);
        events.extend(kiln_staking::Staking::on_stage_start(state, block, &epoch)?);
        events.extend(kiln_sprint::Sprint::on_stage_start(state, block, &epoch)?);
        events.extend(kiln_reputation::Reputation::on_stage_start(
            state, block, &epoch,
        )?);
    }
    Ok((epoch, events))
}

/// At the first block of an epoch, puts in force every module's params
/// that a passed proposal scheduled (`MsgUpdateParams`), in the component
/// order. New epoch params re-anchor the schedule at this block, so the
/// epoch that starts here keeps its number and runs under the new lengths.
pub fn apply_scheduled_params<S: StateWrite>(state: &mut S, height: u64) -> TxResult<Vec<Event>> {
    use kiln_epochs::EpochExt;
    use kiln_framework::params::{applied_event, apply_pending, take_pending};
    if state.epoch_info(height)?.start_height != height {
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    if let Some(params) = take_pending::<kiln_epochs::EpochParams, _>(state)? {
        kiln_epochs::state::apply_params(state, height, &params)?;
        events.push(applied_event("epochs", height));
    }
    events.extend(apply_pending::<kiln_bank::AuthParams, _>(state, height)?);
    events.extend(apply_pending::<kiln_authz::AuthzParams, _>(state, height)?);
    events.extend(apply_pending::<kiln_staking::StakingParams, _>(
        state, height,
    )?);
    events.extend(apply_pending::<kiln_sprint::SprintParams, _>(
        state, height,
    )?);
    events.extend(apply_pending::<kiln_reputation::ReputationParams, _>(
        state, height,
    )?);
    events.extend(apply_pending::<kiln_inference::InferenceParams, _>(
        state, height,
    )?);
    events.extend(apply_pending::<kiln_rewards::RewardsParams, _>(
        state, height,
    )?);
    events.extend(apply_pending::<kiln_slashing::SlashingParams, _>(
        state, height,
    )?);
    events.extend(apply_pending::<kiln_gov::GovParams, _>(state, height)?);
    Ok(events)
}

/// What CometBFT reports about consensus in each FinalizeBlock, acted on
/// after the begin-block hooks and before the transactions: evidence of
/// misbehaviour is recorded (staking) and double signs are slashed and
/// jailed (slashing); the previous block's commit counts into each host's
/// liveness (slashing).
pub fn block_evidence<S: StateWrite>(
    state: &mut S,
    block: &BlockInfo,
    epoch: &EpochInfo,
    misbehavior: &[kiln_staking::misbehavior::Reported],
    commit_votes: &[kiln_slashing::CommitVote],
) -> TxResult<Vec<Event>> {
    let (mut events, records) =
        kiln_staking::misbehavior::record(state, block.height, misbehavior)?;
    let mut ctx = kiln_framework::ExecCtx::new(block);
    kiln_slashing::handle_misbehavior(state, &mut ctx, block.height, &records)?;
    kiln_slashing::record_commit(state, block.height, epoch.epoch, commit_votes)?;
    events.extend(ctx.events);
    Ok(events)
}

/// What the end of a block produced: events and validator power changes.
#[derive(Debug, Default)]
pub struct EndBlock {
    pub events: Vec<Event>,
    pub power_updates: Vec<PowerUpdate>,
}

/// End-block hooks, in the component order; on the settle block the settle
/// pipeline runs first.
pub fn end_block<S: StateWrite>(
    state: &mut S,
    block: &BlockInfo,
    epoch: &EpochInfo,
) -> TxResult<EndBlock> {
    let mut out = EndBlock::default();
    let mut weights_changed = false;
    if epoch.stage == Stage::Settle && epoch.stage_start == block.height {
        let settled = settle(state, epoch.epoch, epoch.start_height, block.height)?;
        out.events = settled.events;
        weights_changed = settled.weights_changed;
    }
    out.events
        .extend(kiln_bank::Bank::end_block(state, block, epoch)?);
    out.events
        .extend(kiln_authz::Authz::end_block(state, block, epoch)?);
    out.events
        .extend(kiln_hosts::genesis::Hosts::end_block(state, block, epoch)?);
    out.events
        .extend(kiln_staking::Staking::end_block(state, block, epoch)?);
    out.events
        .extend(kiln_sprint::Sprint::end_block(state, block, epoch)?);
    out.events
        .extend(kiln_reputation::Reputation::end_block(state, block, epoch)?);
    out.events
        .extend(kiln_inference::Inference::end_block(state, block, epoch)?);
    out.events.extend(gov_end_block(state, block)?);
    // Last: the validator updates of the block — the settle's new weights and
    // this block's consensus-key rotations, as one list with one update per key.
    let (updates, events) =
        kiln_staking::validators::end_block_updates(state, block.height, weights_changed)?;
    out.power_updates = updates;
    out.events.extend(events);
    Ok(out)
}

/// Governance's end of block: periods that end now; a passed proposal's
/// messages run in one overlay of their own, kept only if every one
/// succeeds (the proposal then records the first failure's reason).
fn gov_end_block<S: StateWrite>(state: &mut S, block: &BlockInfo) -> TxResult<Vec<Event>> {
    let mut ctx = kiln_framework::ExecCtx::new(block);
    kiln_gov::end_block(state, &mut ctx, block.height, |state, ctx, messages| {
        let (changes, events) = {
            let mut overlay = kiln_state::Overlay::new(&*state);
            let mut inner = kiln_framework::ExecCtx::new(ctx.block);
            kiln_messages::execute_proposal_messages(&mut overlay, &mut inner, messages)?;
            (overlay.into_changes(), inner.events)
        };
        for (key, value) in changes {
            match value {
                Some(v) => state.put_raw(key, v),
                None => state.delete_raw(key),
            }
        }
        ctx.events.extend(events);
        Ok(())
    })?;
    Ok(ctx.events)
}

/// What the settle pipeline produced.
#[derive(Debug, Default)]
pub struct Settled {
    pub events: Vec<Event>,
    /// The weights in force changed: the end of the block emits validator updates.
    pub weights_changed: bool,
}

/// The epoch's settle pipeline (see the module doc). Each step names the
/// module function it calls; later issues fill the places marked "later".
pub fn settle<S: StateWrite>(
    state: &mut S,
    epoch: u64,
    epoch_start: u64,
    height: u64,
) -> TxResult<Settled> {
    let mut out = Settled::default();

    // 1. Raw weights: the sprint's tally of accepted compute.
    let raw = kiln_sprint::Sprint::settle_raw_weights(state, epoch)?;
    out.events.extend(raw.events);

    // 2. Effective weights: collateral (after the grace epochs), then the
    //    power cap.
    let effective = kiln_staking::settle::effective_weights(state, epoch, &raw.weights)?;
    kiln_sprint::settle::record_effective_weights(state, epoch, &effective)?;

    // 3. Validator set: effective weights become the weights in force;
    //    CometBFT's validator updates follow at the end of the block
    //    (`end_block`), applied by CometBFT at height + 2.
    let validators = kiln_staking::settle::apply_validator_set(state, epoch, height, &effective)?;
    out.events.extend(validators.events);
    out.weights_changed = validators.weights_changed;

    // 4. Inference: the epoch's misses become next epoch's reliability, and
    //    each model's executor candidates are rebuilt from the new weights.
    let (serving, serving_events) = kiln_inference::settle::end_epoch(state, epoch, height)?;
    out.events.extend(serving_events);

    // 5. Reputation: what each host did this epoch (sprint and serving).
    let mut outcomes: std::collections::BTreeMap<_, kiln_reputation::EpochOutcome> = raw
        .outcomes
        .iter()
        .map(|(host, outcome)| (*host, (*outcome).into()))
        .collect();
    for (host, served) in serving.iter().filter(|(_, s)| s.affects_reputation()) {
        let outcome = outcomes.entry(*host).or_default();
        outcome.excess_miss_percent = served.excess_miss_percent;
        outcome.upheld_disputes = served.upheld_disputes;
        outcome.invalid = served.invalid;
    }
    for (host, outcome) in &outcomes {
        out.events
            .push(kiln_reputation::apply_outcome(state, epoch, host, outcome)?);
    }

    // 6. Unbondings that mature at this settle are paid out.
    let block = kiln_framework::BlockInfo {
        height,
        ..Default::default()
    };
    let mut ctx = kiln_framework::ExecCtx::new(&block);
    kiln_staking::pools::complete_unbondings(state, &mut ctx, epoch)?;
    out.events.extend(std::mem::take(&mut ctx.events));

    // 7. Rewards: the epoch's emission, split by effective weight among
    //    the accepted hosts that are not INVALID, each share reduced by the
    //    validation duties skipped in the period step 4 just recomputed.
    let duty_period = epoch.checked_sub(2);
    let mut eligible = std::collections::BTreeMap::new();
    for (host, raw_weight) in &raw.weights {
        let weight = effective.get(host).copied().unwrap_or(0);
        if *raw_weight == 0 || weight == 0 || serving.get(host).is_some_and(|s| s.invalid) {
            continue;
        }
        let duties = match duty_period {
            Some(p) => kiln_inference::duties::duty_record(state, p, host)?.unwrap_or_default(),
            None => Default::default(),
        };
        eligible.insert(
            *host,
            kiln_rewards::Eligible {
                effective_weight: weight,
                duties_assigned_micro: duties.assigned_micro,
                duties_skipped_micro: duties.skipped_micro,
            },
        );
    }
    out.events
        .extend(kiln_rewards::distribute(state, &mut ctx, epoch, &eligible)?);
    out.events.extend(std::mem::take(&mut ctx.events));
    // 8. Slashing: INVALID hosts and downtime (inference misses, consensus
    //    signing), burned from their pools and recent unbonding entries.
    let conduct: std::collections::BTreeMap<_, _> = serving
        .iter()
        .map(|(host, s)| {
            (
                *host,
                kiln_slashing::EpochConduct {
                    invalid: s.invalid,
                    inferences_completed: s.completed,
                    inferences_missed: s.missed,
                },
            )
        })
        .collect();
    kiln_slashing::settle(state, &mut ctx, epoch, epoch_start, height, &conduct)?;
    out.events.extend(std::mem::take(&mut ctx.events));
    Ok(out)
}
