//! Settlement of inferences (SPEC §5 "Settlement on chain"): escrow at the
//! start, pay and refund at the finish (either order), refund and a miss at
//! the timeout. Stateless checks already ran (`MsgKind::validate_basic`).
//! Every refusal names the check that failed and moves no coin.

use kiln_bank::state::BankExt;
use kiln_framework::msg::address_field;
use kiln_framework::{
    Address, Coin, Coins, Event, ExecCtx, StateReadExt, StateWriteExt, TxError, TxResult,
    BASE_DENOM,
};
use kiln_hosts::HostsExt;
use kiln_state::StateWrite;

use crate::draw;
use crate::keys;
use crate::msgs::{MsgFinishInference, MsgStartInference};
use crate::request::{timestamp_is_fresh, RequestHeader, MAX_REQUEST_AGE_SECONDS};
use crate::state::{
    charge, EarlyFinish, HostStats, InferenceExt, InferenceRecord, SettlementExt, Status,
};
use crate::CODESPACE;

/// Error codes of the `inference` codespace (the README's error table lists
/// them; the worker matches on these, never on text).
pub mod codes {
    /// A malformed field (hash length, key length, empty model, zero max_tokens).
    pub const BAD_FIELD: u32 = 2;
    /// The model is not registered.
    pub const UNKNOWN_MODEL: u32 = 3;
    /// The transfer agent or executor is not a registered host.
    pub const NOT_A_HOST: u32 = 4;
    /// The requester's signature over the request does not verify.
    pub const BAD_REQUEST_SIGNATURE: u32 = 5;
    /// The request was signed more than 60 s from the block time.
    pub const EXPIRED_REQUEST: u32 = 6;
    /// An inference with this id (this signature) was already started.
    pub const REUSED_REQUEST: u32 = 7;
    /// `id` is not `SHA256(request_signature)`.
    pub const BAD_ID: u32 = 8;
    /// `seed_height` is not one of the last `draw_window_blocks` blocks.
    pub const SEED_OUT_OF_WINDOW: u32 = 9;
    /// `seed_height` is before the previous serving set too (two epochs
    /// settled in between).
    pub const SEED_BEFORE_SERVING_SET: u32 = 10;
    /// The named executor is not the one the draw picks.
    pub const WRONG_EXECUTOR: u32 = 11;
    /// No host with weight serves the model.
    pub const NO_EXECUTOR: u32 = 12;
    /// The requester cannot pay the escrow.
    pub const REQUESTER_CANNOT_PAY: u32 = 13;
    /// A finish from a host that is not the inference's executor.
    pub const NOT_THE_EXECUTOR: u32 = 14;
    /// The inference already finished or expired.
    pub const ALREADY_SETTLED: u32 = 15;
    /// More tokens than the request allows.
    pub const TOO_MANY_TOKENS: u32 = 16;
    /// The executor already posted a finish for this id (before the start).
    pub const ALREADY_FINISHED: u32 = 17;
    /// No inference with this id (never started, or pruned).
    pub const UNKNOWN_INFERENCE: u32 = 18;
    /// Only finished inferences are validated.
    pub const NOT_FINISHED: u32 = 19;
    /// The executor cannot validate or vote on its own work.
    pub const OWN_WORK: u32 = 20;
    /// The validator or voter is not in the model's serving set.
    pub const NOT_SERVING: u32 = 21;
    /// This host already validated this inference.
    pub const ALREADY_VALIDATED: u32 = 22;
    /// No open dispute for this id.
    pub const NO_DISPUTE: u32 = 23;
    /// This host already voted on the dispute.
    pub const ALREADY_VOTED: u32 = 24;
    /// A validation seed for a period that is not open for it (commit while
    /// the period or the one before runs; reveal while the next one runs).
    pub const SEED_OUT_OF_PERIOD: u32 = 25;
    /// The host already committed a seed for this period.
    pub const SEED_ALREADY_COMMITTED: u32 = 26;
    /// No seed commitment from this host for the period.
    pub const SEED_NOT_COMMITTED: u32 = 27;
    /// The seed was revealed already.
    pub const SEED_ALREADY_REVEALED: u32 = 28;
    /// The revealed seed does not match the commitment.
    pub const SEED_MISMATCH: u32 = 29;
}

pub fn err(code: u32, log: impl Into<String>) -> TxError {
    TxError::module(CODESPACE, code, log)
}

pub(crate) fn coins(amount: u128) -> TxResult<Coins> {
    Coins::normalize(vec![Coin::new(BASE_DENOM, amount)])
}

pub(crate) fn escrow_account() -> Address {
    Address::module(keys::ESCROW_ACCOUNT)
}

pub(crate) fn id_of(bytes: &[u8]) -> TxResult<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| err(codes::BAD_FIELD, "id must be 32 bytes"))
}

fn hash_of(bytes: &[u8]) -> [u8; 32] {
    <[u8; 32]>::try_from(bytes).unwrap_or_default()
}

/// `MsgStartInference`: checks the request and the draw, escrows, and
/// settles at once when the executor's finish is already here.
pub fn start<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgStartInference,
) -> TxResult<()> {
    let height = ctx.block.height;
    let params = state.inference_params()?;
    let transfer_agent = address_field(&msg.transfer_agent, "transfer_agent")?;
    let requester = address_field(&msg.requester, "requester")?;
    let executor = address_field(&msg.executor, "executor")?;
    let id = id_of(&msg.id)?;

    if state.model(&msg.model)?.is_none() {
        return Err(err(
            codes::UNKNOWN_MODEL,
            format!(
                "model {:?} is not registered (kiln query models)",
                msg.model
            ),
        ));
    }
    if let Some(at) = state.get_u64(&crate::keys::retired(&msg.model))? {
        return Err(err(
            codes::UNKNOWN_MODEL,
            format!(
                "model {:?} was retired by governance at height {at}; it takes no new requests",
                msg.model
            ),
        ));
    }
    if !state.is_host(&transfer_agent)? {
        return Err(err(
            codes::NOT_A_HOST,
            format!("transfer agent {transfer_agent} is not a registered host"),
        ));
    }
    let tokens = msg
        .prompt_tokens
        .checked_add(msg.max_tokens)
        .filter(|t| *t <= params.max_request_tokens)
        .ok_or_else(|| {
            err(
                codes::TOO_MANY_TOKENS,
                format!(
                    "prompt_tokens {} + max_tokens {} exceed the limit of {} tokens per request",
                    msg.prompt_tokens, msg.max_tokens, params.max_request_tokens
                ),
            )
        })?;

    // The requester's own signature: the transfer agent cannot invent,
    // alter or re-target a request.
    let header = signed_header(&ctx.block.chain_id, transfer_agent, msg);
    header
        .verify_cached(&requester, &msg.requester_pubkey, &msg.request_signature)
        .map_err(|e| err(codes::BAD_REQUEST_SIGNATURE, e))?;
    if !timestamp_is_fresh(msg.request_timestamp, ctx.block.time_seconds) {
        return Err(err(
            codes::EXPIRED_REQUEST,
            format!(
                "the request was signed at {} but the block time is {}: requests are valid for {MAX_REQUEST_AGE_SECONDS} s",
                msg.request_timestamp, ctx.block.time_seconds
            ),
        ));
    }
    if state.record(&id)?.is_some() {
        return Err(err(
            codes::REUSED_REQUEST,
            format!(
                "inference {} was already started: a request signature is used once",
                hex::encode(id)
            ),
        ));
    }

    // The draw, re-derived from the same block hash and serving set.
    let expected = expected_executor(
        state,
        height,
        msg.seed_height,
        &msg.model,
        &msg.request_signature,
        params.draw_window_blocks,
    )?;
    if expected != executor {
        return Err(err(
            codes::WRONG_EXECUTOR,
            format!(
                "the draw seeded at height {} picks executor {expected}, not {executor}",
                msg.seed_height
            ),
        ));
    }

    // Escrow.
    let price = state.price(&msg.model)?;
    let escrow =
        charge(tokens, price).ok_or_else(|| TxError::internal("escrow amount overflows"))?;
    let have = state.balance(&requester, BASE_DENOM)?;
    if have < escrow {
        return Err(err(
            codes::REQUESTER_CANNOT_PAY,
            format!(
                "requester {requester} holds {have}{BASE_DENOM} but this request escrows {escrow}{BASE_DENOM} ({tokens} tokens at {price} pkiln per token)"
            ),
        ));
    }
    if escrow > 0 {
        state.transfer(ctx, &requester, &escrow_account(), &coins(escrow)?)?;
    }
    let used_key = keys::used(&msg.model);
    let used = state.get_u64(&used_key)?.unwrap_or(0);
    state.put_u64(used_key, used.saturating_add(tokens));

    let deadline = height.saturating_add(params.inference_timeout_blocks);
    let record = InferenceRecord {
        id,
        requester,
        transfer_agent,
        executor,
        model: msg.model.clone(),
        prompt_hash: hash_of(&msg.prompt_hash),
        prompt_tokens: msg.prompt_tokens,
        max_tokens: msg.max_tokens,
        price_pkiln: price,
        escrow,
        start_height: height,
        request_timestamp: msg.request_timestamp,
        deadline,
        status: Status::Open,
        completion_tokens: 0,
        response_hash: [0; 32],
        top_logprobs_hash: [0; 32],
        paid: 0,
        refunded: 0,
        end_height: 0,
        period: 0,
    };
    state.put_raw(keys::by_requester(&requester, height, &id), Vec::new());
    ctx.emit(
        Event::new("kiln.inference.v1.EventInferenceStarted")
            .attr("id", hex::encode(id))
            .attr("requester", requester)
            .attr("transfer_agent", transfer_agent)
            .attr("executor", executor)
            .attr("model", &msg.model)
            .attr("prompt_tokens", msg.prompt_tokens)
            .attr("max_tokens", msg.max_tokens)
            .attr("price_pkiln", price)
            .attr("escrow", escrow)
            .attr("deadline", deadline),
    );

    // Either order: the executor's finish may already be here.
    let early_key = keys::early(&id, &executor);
    if let Some(early) = state.get_value::<EarlyFinish>(&early_key)? {
        state.delete_raw(early_key);
        let early_deadline = early.height.saturating_add(params.inference_timeout_blocks);
        state.delete_raw(keys::early_deadline(early_deadline, &id, &executor));
        return settle_finish(
            state,
            ctx,
            record,
            early.completion_tokens,
            early.response_hash,
            early.top_logprobs_hash,
            params.record_retention_blocks,
        );
    }
    state.put_raw(keys::deadline(deadline, &id), Vec::new());
    state.put_value(keys::record(&id), &record)
}

/// What the requester signed, as `msg` states it.
pub fn signed_header(
    chain_id: &str,
    transfer_agent: Address,
    msg: &MsgStartInference,
) -> RequestHeader {
    RequestHeader {
        chain_id: chain_id.to_string(),
        transfer_agent,
        timestamp: msg.request_timestamp,
        body_sha256: hash_of(&msg.prompt_hash),
        model: msg.model.clone(),
        max_tokens: msg.max_tokens,
    }
}

/// Verifies the requester's signature of a start ahead of execution
/// (CheckTx, and the app's parallel pre-verification of a block), filling
/// the cache the handler reads. Addresses were checked by `validate_basic`.
pub fn check_start_signature(chain_id: &str, msg: &MsgStartInference) -> TxResult<()> {
    let transfer_agent = address_field(&msg.transfer_agent, "transfer_agent")?;
    let requester = address_field(&msg.requester, "requester")?;
    signed_header(chain_id, transfer_agent, msg)
        .verify_cached(&requester, &msg.requester_pubkey, &msg.request_signature)
        .map_err(|e| err(codes::BAD_REQUEST_SIGNATURE, e))
}

/// The executor the draw picks for a request seeded at `seed_height`, or
/// the refusal that says why there is none.
pub fn expected_executor<S: kiln_state::StateRead + ?Sized>(
    state: &S,
    height: u64,
    seed_height: u64,
    model: &str,
    request_signature: &[u8],
    window: u64,
) -> TxResult<Address> {
    if seed_height >= height || height - seed_height > window {
        return Err(err(
            codes::SEED_OUT_OF_WINDOW,
            format!(
                "seed_height {seed_height} must be one of the {window} blocks before height {height}: draw with the latest committed block"
            ),
        ));
    }
    let Some(block_hash) = state.get_raw(&keys::block_hash(seed_height))? else {
        return Err(err(
            codes::SEED_OUT_OF_WINDOW,
            format!("no block hash is kept for height {seed_height}"),
        ));
    };
    let serving = state.serving_set(model)?;
    let Some(candidates) = serving.candidates_for_seed(seed_height) else {
        return Err(err(
            codes::SEED_BEFORE_SERVING_SET,
            format!(
                "the executors of {model} changed twice (at heights {} and {}: epochs settled) since the draw's seed height {seed_height}: draw again",
                serving.previous_since_height, serving.since_height
            ),
        ));
    };
    let seed = draw::draw_seed(&block_hash, request_signature);
    draw::draw_executor(&candidates, &seed).ok_or_else(|| {
        err(
            codes::NO_EXECUTOR,
            format!("no live host with weight serves model {model}"),
        )
    })
}

/// `MsgFinishInference`: pays and refunds when the start is here, or keeps
/// the finish until it arrives.
pub fn finish<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgFinishInference,
) -> TxResult<()> {
    let params = state.inference_params()?;
    let executor = address_field(&msg.executor, "executor")?;
    let id = id_of(&msg.id)?;
    match state.record(&id)? {
        Some(record) if record.status != Status::Open => Err(err(
            codes::ALREADY_SETTLED,
            format!(
                "inference {} is already {:?} at height {}",
                hex::encode(id),
                record.status,
                record.end_height
            ),
        )),
        Some(record) => {
            if record.executor != executor {
                return Err(err(
                    codes::NOT_THE_EXECUTOR,
                    format!(
                        "inference {} was drawn to {}, not {executor}",
                        hex::encode(id),
                        record.executor
                    ),
                ));
            }
            check_completion(msg.completion_tokens, record.max_tokens)?;
            state.delete_raw(keys::deadline(record.deadline, &id));
            settle_finish(
                state,
                ctx,
                record,
                msg.completion_tokens,
                hash_of(&msg.response_hash),
                hash_of(&msg.top_logprobs_hash),
                params.record_retention_blocks,
            )
        }
        None => {
            if !state.is_host(&executor)? {
                return Err(err(
                    codes::NOT_A_HOST,
                    format!("executor {executor} is not a registered host"),
                ));
            }
            if msg.completion_tokens > params.max_request_tokens {
                return Err(err(
                    codes::TOO_MANY_TOKENS,
                    format!(
                        "completion_tokens {} exceed the limit of {} tokens per request",
                        msg.completion_tokens, params.max_request_tokens
                    ),
                ));
            }
            let key = keys::early(&id, &executor);
            if state.get_raw(&key)?.is_some() {
                return Err(err(
                    codes::ALREADY_FINISHED,
                    format!(
                        "{executor} already posted a finish for inference {}",
                        hex::encode(id)
                    ),
                ));
            }
            let height = ctx.block.height;
            state.put_value(
                key,
                &EarlyFinish {
                    response_hash: hash_of(&msg.response_hash),
                    completion_tokens: msg.completion_tokens,
                    top_logprobs_hash: hash_of(&msg.top_logprobs_hash),
                    height,
                },
            )?;
            state.put_raw(
                keys::early_deadline(
                    height.saturating_add(params.inference_timeout_blocks),
                    &id,
                    &executor,
                ),
                Vec::new(),
            );
            ctx.emit(
                Event::new("kiln.inference.v1.EventFinishBeforeStart")
                    .attr("id", hex::encode(id))
                    .attr("executor", executor)
                    .attr("completion_tokens", msg.completion_tokens),
            );
            Ok(())
        }
    }
}

fn check_completion(completion_tokens: u64, max_tokens: u64) -> TxResult<()> {
    if completion_tokens > max_tokens {
        return Err(err(
            codes::TOO_MANY_TOKENS,
            format!(
                "completion_tokens {completion_tokens} exceed the request's max_tokens {max_tokens}"
            ),
        ));
    }
    Ok(())
}

/// Pays the executor `(prompt + completion) × price` (at most the escrow)
/// and refunds the requester the rest; records the hashes.
fn settle_finish<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    mut record: InferenceRecord,
    completion_tokens: u64,
    response_hash: [u8; 32],
    top_logprobs_hash: [u8; 32],
    retention: u64,
) -> TxResult<()> {
    check_completion(completion_tokens, record.max_tokens)?;
    let tokens = record.prompt_tokens.saturating_add(completion_tokens);
    let pay = charge(tokens, record.price_pkiln)
        .ok_or_else(|| TxError::internal("pay amount overflows"))?
        .min(record.escrow);
    let refund = record.escrow - pay;
    let escrow = escrow_account();
    if pay > 0 {
        state.transfer(ctx, &escrow, &record.executor, &coins(pay)?)?;
    }
    if refund > 0 {
        state.transfer(ctx, &escrow, &record.requester, &coins(refund)?)?;
    }
    let height = ctx.block.height;
    record.status = Status::Finished;
    record.completion_tokens = completion_tokens;
    record.response_hash = response_hash;
    record.top_logprobs_hash = top_logprobs_hash;
    record.paid = pay;
    record.refunded = refund;
    record.end_height = height;
    record.period = crate::duties::current_period(state)?;
    let rate_micro = crate::duties::rate_for(state, &record.model, &record.executor)?;
    crate::duties::on_finish(
        state,
        record.period,
        &record.id,
        &crate::duties::DutyEntry {
            executor: record.executor,
            model: record.model.clone(),
            rate_micro,
            finish_height: height,
            validators: Vec::new(),
        },
    )?;
    state.put_raw(
        keys::prune(height.saturating_add(retention), &record.id),
        Vec::new(),
    );
    update_stats(state, &record.executor, |s| {
        s.epoch_completed = s.epoch_completed.saturating_add(1);
        s.total_completed = s.total_completed.saturating_add(1);
        s.consecutive_misses = 0;
        s.total_tokens = s.total_tokens.saturating_add(u128::from(tokens));
        s.total_earned = s.total_earned.saturating_add(pay);
    })?;
    ctx.emit(
        Event::new("kiln.inference.v1.EventInferenceFinished")
            .attr("id", hex::encode(record.id))
            .attr("requester", record.requester)
            .attr("executor", record.executor)
            .attr("model", &record.model)
            .attr("prompt_tokens", record.prompt_tokens)
            .attr("completion_tokens", completion_tokens)
            .attr("paid", pay)
            .attr("refunded", refund)
            .attr("response_hash", hex::encode(response_hash))
            .attr("period", record.period)
            .attr("validation_rate_micro", rate_micro),
    );
    state.put_value(keys::record(&record.id), &record)
}

/// End of block: inferences whose deadline is this block are refunded and
/// count a miss; early finishes whose start never came are dropped; records
/// past their retention are pruned.
pub fn end_block<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>) -> TxResult<()> {
    let height = ctx.block.height;
    let params = state.inference_params()?;
    let expiring = suffixes(state, &keys::deadline_at(height))?;
    for suffix in expiring {
        state.delete_raw([keys::deadline_at(height), suffix.clone()].concat());
        let id = id_of(&suffix)?;
        let Some(mut record) = state.record(&id)? else {
            continue;
        };
        if record.status != Status::Open {
            continue;
        }
        if record.escrow > 0 {
            state.transfer(
                ctx,
                &escrow_account(),
                &record.requester,
                &coins(record.escrow)?,
            )?;
        }
        record.status = Status::Expired;
        record.refunded = record.escrow;
        record.end_height = height;
        state.put_raw(
            keys::prune(height.saturating_add(params.record_retention_blocks), &id),
            Vec::new(),
        );
        let mut now_dead = false;
        update_stats(state, &record.executor, |s| {
            s.epoch_missed = s.epoch_missed.saturating_add(1);
            s.total_missed = s.total_missed.saturating_add(1);
            s.consecutive_misses = s.consecutive_misses.saturating_add(1);
            now_dead = s.consecutive_misses == params.dead_after_misses;
        })?;
        ctx.emit(
            Event::new("kiln.inference.v1.EventInferenceExpired")
                .attr("id", hex::encode(id))
                .attr("requester", record.requester)
                .attr("executor", record.executor)
                .attr("refunded", record.escrow),
        );
        if now_dead {
            mark_dead(state, &record.executor, height)?;
            ctx.emit(
                Event::new("kiln.inference.v1.EventExecutorDead")
                    .attr("host", record.executor)
                    .attr("misses_in_a_row", params.dead_after_misses),
            );
        }
        state.put_value(keys::record(&id), &record)?;
    }
    for suffix in suffixes(state, &keys::early_deadline_at(height))? {
        state.delete_raw([keys::early_deadline_at(height), suffix.clone()].concat());
        if let (Some(id), Some(executor)) = (
            suffix.get(..32).and_then(|b| <[u8; 32]>::try_from(b).ok()),
            suffix.get(32..).and_then(Address::from_bytes),
        ) {
            state.delete_raw(keys::early(&id, &executor));
        }
    }
    for suffix in suffixes(state, &keys::prune_at(height))? {
        state.delete_raw([keys::prune_at(height), suffix.clone()].concat());
        let id = id_of(&suffix)?;
        if let Some(record) = state.record(&id)? {
            // While its signature could still be replayed, the record stays.
            if timestamp_is_fresh(record.request_timestamp, ctx.block.time_seconds) {
                state.put_raw(keys::prune(height.saturating_add(1), &id), Vec::new());
                continue;
            }
            state.delete_raw(keys::by_requester(
                &record.requester,
                record.start_height,
                &id,
            ));
            state.delete_raw(keys::record(&id));
            for validator in suffixes(state, &keys::validations_of(&id))? {
                state.delete_raw([keys::validations_of(&id), validator].concat());
            }
        }
    }
    crate::validation::end_block(state, ctx)?;
    // The draw window's block hashes: this block's in, the oldest out.
    if !ctx.block.hash.is_empty() {
        state.put_raw(keys::block_hash(height), ctx.block.hash.clone());
    }
    if let Some(old) = height.checked_sub(params.draw_window_blocks.saturating_add(1)) {
        state.delete_raw(keys::block_hash(old));
    }
    Ok(())
}

/// Keys under `prefix`, as suffixes (collected before the caller deletes them).
pub(crate) fn suffixes<S: StateWrite>(state: &S, prefix: &[u8]) -> TxResult<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    state.for_each_under(prefix, |suffix, _| {
        out.push(suffix.to_vec());
        Ok(())
    })?;
    Ok(out)
}

pub(crate) fn update_stats<S: StateWrite>(
    state: &mut S,
    host: &Address,
    change: impl FnOnce(&mut HostStats),
) -> TxResult<()> {
    let mut stats = state.host_stats(host)?;
    change(&mut stats);
    state.put_value(keys::stats(host), &stats)
}

/// Draws seeded at `height` or later skip `host` in every model it serves.
pub(crate) fn mark_dead<S: StateWrite>(state: &mut S, host: &Address, height: u64) -> TxResult<()> {
    for model in state.models()? {
        let mut serving = state.serving_set(&model.id)?;
        let mut changed = false;
        for entry in serving.entries.iter_mut() {
            if entry.host == *host && entry.dead_since.is_none() {
                entry.dead_since = Some(height);
                changed = true;
            }
        }
        if changed {
            state.put_value(keys::serving(&model.id), &serving)?;
        }
    }
    Ok(())
}
