//! Validation of served inferences and disputes (SPEC §5 "Validation").
//!
//! A host serving the model (other than the executor) replays a finished
//! inference and posts `MsgValidation{id, score}`. A score at or above the
//! model's `validation_threshold_micro` counts as a passed validation of the
//! executor's work; below it opens a **dispute**, with the validator's own
//! weight voting "invalid". The model's other hosts vote by weight
//! (`MsgDisputeVote`); a side wins as soon as it holds more than half of the
//! eligible weight (the serving set without the executor), else at
//! `dispute_blocks` the dispute is rejected. A validation posted while a
//! dispute is open is also its validator's vote (valid or invalid by its
//! score); one posted after an upheld dispute still discharges the
//! validator's duty ([`crate::duties`]) and changes nothing else.
//!
//! An **upheld** dispute marks the inference `Invalidated`, takes the
//! executor's pay back to the requester (as much as its balance holds),
//! and counts an invalidation. The executor becomes **INVALID** for the rest
//! of the epoch after `invalid_streak` upheld disputes, or earlier when the
//! sequential probability ratio test ([`sprt_invalid`]) says its
//! invalidation rate is above what honest work shows; INVALID hosts get no
//! more requests (they leave the draw), and the settle resets their
//! reputation. Integer arithmetic only.

use kiln_bank::state::BankExt;
use kiln_framework::msg::address_field;
use kiln_framework::{Address, Event, ExecCtx, StateReadExt, StateWriteExt, TxResult};
use kiln_state::StateWrite;

use crate::handler::{codes, coins, err, id_of, mark_dead, suffixes, update_stats};
use crate::keys;
use crate::msgs::{MsgDisputeVote, MsgValidation};
use crate::state::{Dispute, InferenceExt, InferenceRecord, SettlementExt, Status};

/// The SPRT's fixed design (SPEC `p0_inference`): honest work is
/// invalidated at rate p0 = 1%, cheating at p1 = 10%, α = β = 1%. In
/// millionths of a natural log: each upheld dispute adds ln(p1/p0), each
/// passed validation adds ln((1−p1)/(1−p0)) (negative); INVALID once the sum
/// reaches ln((1−β)/α).
pub const SPRT_UPHELD_MICRO: i64 = 2_302_585;
pub const SPRT_PASSED_MICRO: i64 = -95_310;
pub const SPRT_THRESHOLD_MICRO: i64 = 4_595_120;

/// Whether `invalidated` upheld disputes among `validated + invalidated`
/// checked inferences reject "honest" in the SPRT.
pub fn sprt_invalid(validated: u64, invalidated: u64) -> bool {
    let llr = i128::from(invalidated) * i128::from(SPRT_UPHELD_MICRO)
        + i128::from(validated) * i128::from(SPRT_PASSED_MICRO);
    llr >= i128::from(SPRT_THRESHOLD_MICRO)
}

/// The weight of `host` in the model's serving set (0 when absent).
fn serving_weight<S: StateWrite>(state: &S, model: &str, host: &Address) -> TxResult<u64> {
    Ok(state
        .serving_set(model)?
        .entries
        .iter()
        .find(|e| e.host == *host)
        .map_or(0, |e| e.weight))
}

fn finished_record<S: StateWrite>(state: &S, id: &[u8; 32]) -> TxResult<InferenceRecord> {
    let record = state.record(id)?.ok_or_else(|| {
        err(
            codes::UNKNOWN_INFERENCE,
            format!(
                "no inference {} (never started, or pruned)",
                hex::encode(id)
            ),
        )
    })?;
    if record.status != Status::Finished {
        return Err(err(
            codes::NOT_FINISHED,
            format!(
                "inference {} is {:?}: only finished inferences are validated",
                hex::encode(id),
                record.status
            ),
        ));
    }
    Ok(record)
}

/// `MsgValidation`.
pub fn validate<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgValidation,
) -> TxResult<()> {
    let validator = address_field(&msg.validator, "validator")?;
    let id = id_of(&msg.id)?;
    let record = match state.record(&id)? {
        // Another host's dispute already invalidated it: a late validation
        // still discharges the validator's duty, and changes nothing else.
        Some(r) if r.status == Status::Invalidated => r,
        _ => finished_record(state, &id)?,
    };
    if validator == record.executor {
        return Err(err(
            codes::OWN_WORK,
            "the executor cannot validate its own inference",
        ));
    }
    let weight = serving_weight(state, &record.model, &validator)?;
    if weight == 0 {
        return Err(err(
            codes::NOT_SERVING,
            format!(
                "{validator} is not in the serving set of {}: only the model's hosts validate it",
                record.model
            ),
        ));
    }
    let key = keys::validation(&id, &validator);
    if state.get_raw(&key)?.is_some() {
        return Err(err(
            codes::ALREADY_VALIDATED,
            format!(
                "{validator} already validated inference {}",
                hex::encode(id)
            ),
        ));
    }
    state.put_u64(key, msg.score_micro);
    crate::duties::on_validation(state, record.period, &id, &validator)?;
    if record.status == Status::Invalidated {
        ctx.emit(
            Event::new("kiln.inference.v1.EventInferenceValidated")
                .attr("id", hex::encode(id))
                .attr("validator", validator)
                .attr("executor", record.executor)
                .attr("score_micro", msg.score_micro)
                .attr("after_invalidation", true),
        );
        return Ok(());
    }
    let threshold = state
        .model(&record.model)?
        .map_or(0, |m| m.validation_threshold_micro);
    ctx.emit(
        Event::new("kiln.inference.v1.EventInferenceValidated")
            .attr("id", hex::encode(id))
            .attr("validator", validator)
            .attr("executor", record.executor)
            .attr("score_micro", msg.score_micro)
            .attr("threshold_micro", threshold),
    );
    // While a dispute is open, the score is also the validator's vote
    // (unless it voted already).
    let dispute_open = state.get_raw(&keys::dispute(&id))?.is_some();
    let may_vote = dispute_open
        && state
            .get_raw(&keys::dispute_vote(&id, &validator))?
            .is_none();
    if msg.score_micro >= threshold {
        update_stats(state, &record.executor, |s| {
            s.epoch_validated = s.epoch_validated.saturating_add(1)
        })?;
        if may_vote {
            return cast(state, ctx, &id, &validator, weight, false);
        }
        return Ok(());
    }
    if dispute_open {
        if may_vote {
            return cast(state, ctx, &id, &validator, weight, true);
        }
        return Ok(());
    }
    let params = state.inference_params()?;
    let eligible: u64 = state
        .serving_set(&record.model)?
        .entries
        .iter()
        .filter(|e| e.host != record.executor)
        .map(|e| e.weight)
        .fold(0u64, u64::saturating_add);
    let height = ctx.block.height;
    let deadline = height.saturating_add(params.dispute_blocks);
    let dispute = Dispute {
        id,
        opened_by: validator,
        score_micro: msg.score_micro,
        opened_height: height,
        deadline,
        eligible_weight: eligible,
        invalid_weight: 0,
        valid_weight: 0,
    };
    state.put_value(keys::dispute(&id), &dispute)?;
    state.put_raw(keys::dispute_deadline(deadline, &id), Vec::new());
    ctx.emit(
        Event::new("kiln.inference.v1.EventDisputeOpened")
            .attr("id", hex::encode(id))
            .attr("validator", validator)
            .attr("executor", record.executor)
            .attr("score_micro", msg.score_micro)
            .attr("deadline", deadline),
    );
    cast(state, ctx, &id, &validator, weight, true)
}

/// `MsgDisputeVote`.
pub fn vote<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgDisputeVote,
) -> TxResult<()> {
    let voter = address_field(&msg.voter, "voter")?;
    let id = id_of(&msg.id)?;
    if state.get_raw(&keys::dispute(&id))?.is_none() {
        return Err(err(
            codes::NO_DISPUTE,
            format!("no open dispute over inference {}", hex::encode(id)),
        ));
    }
    let record = finished_record(state, &id)?;
    if voter == record.executor {
        return Err(err(
            codes::OWN_WORK,
            "the executor cannot vote on a dispute over its own inference",
        ));
    }
    let weight = serving_weight(state, &record.model, &voter)?;
    if weight == 0 {
        return Err(err(
            codes::NOT_SERVING,
            format!(
                "{voter} is not in the serving set of {}: only the model's hosts vote",
                record.model
            ),
        ));
    }
    cast(state, ctx, &id, &voter, weight, msg.invalid)
}

/// Records one vote and resolves the dispute when a side holds more than
/// half of the eligible weight.
fn cast<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    id: &[u8; 32],
    voter: &Address,
    weight: u64,
    invalid: bool,
) -> TxResult<()> {
    let vote_key = keys::dispute_vote(id, voter);
    if state.get_raw(&vote_key)?.is_some() {
        return Err(err(
            codes::ALREADY_VOTED,
            format!(
                "{voter} already voted on the dispute over {}",
                hex::encode(id)
            ),
        ));
    }
    let Some(mut dispute) = state.get_value::<Dispute>(&keys::dispute(id))? else {
        return Err(err(codes::NO_DISPUTE, "no open dispute"));
    };
    state.put_raw(vote_key, vec![u8::from(invalid)]);
    if invalid {
        dispute.invalid_weight = dispute.invalid_weight.saturating_add(weight);
    } else {
        dispute.valid_weight = dispute.valid_weight.saturating_add(weight);
    }
    ctx.emit(
        Event::new("kiln.inference.v1.EventDisputeVote")
            .attr("id", hex::encode(id))
            .attr("voter", voter)
            .attr("invalid", invalid)
            .attr("weight", weight),
    );
    let half = u128::from(dispute.eligible_weight);
    if u128::from(dispute.invalid_weight) * 2 > half {
        return resolve(state, ctx, dispute, true);
    }
    if u128::from(dispute.valid_weight) * 2 > half {
        return resolve(state, ctx, dispute, false);
    }
    state.put_value(keys::dispute(id), &dispute)
}

/// Closes a dispute; an upheld one invalidates the inference.
fn resolve<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    dispute: Dispute,
    upheld: bool,
) -> TxResult<()> {
    let id = dispute.id;
    state.delete_raw(keys::dispute(&id));
    state.delete_raw(keys::dispute_deadline(dispute.deadline, &id));
    let vote_prefix = [keys::DISPUTE_VOTE_PREFIX, &id].concat();
    for suffix in suffixes(state, &vote_prefix)? {
        state.delete_raw([vote_prefix.as_slice(), &suffix].concat());
    }
    ctx.emit(
        Event::new("kiln.inference.v1.EventDisputeResolved")
            .attr("id", hex::encode(id))
            .attr("upheld", upheld)
            .attr("invalid_weight", dispute.invalid_weight)
            .attr("valid_weight", dispute.valid_weight)
            .attr("eligible_weight", dispute.eligible_weight),
    );
    if !upheld {
        return Ok(());
    }
    let Some(mut record) = state.record(&id)? else {
        return Ok(());
    };
    if record.status != Status::Finished {
        return Ok(());
    }
    // The executor's pay goes back to the requester, as far as it can.
    let held = state.balance(&record.executor, kiln_framework::BASE_DENOM)?;
    let taken = record.paid.min(held);
    if taken > 0 {
        state.transfer(ctx, &record.executor, &record.requester, &coins(taken)?)?;
    }
    record.paid -= taken;
    record.refunded = record.refunded.saturating_add(taken);
    record.status = Status::Invalidated;
    state.put_value(keys::record(&id), &record)?;
    let params = state.inference_params()?;
    let mut now_invalid = false;
    update_stats(state, &record.executor, |s| {
        s.epoch_invalidated = s.epoch_invalidated.saturating_add(1);
        s.total_invalidated = s.total_invalidated.saturating_add(1);
        s.total_earned = s.total_earned.saturating_sub(taken);
        if !s.invalid
            && (s.epoch_invalidated >= params.invalid_streak
                || sprt_invalid(s.epoch_validated, s.epoch_invalidated))
        {
            s.invalid = true;
            now_invalid = true;
        }
    })?;
    ctx.emit(
        Event::new("kiln.inference.v1.EventInferenceInvalidated")
            .attr("id", hex::encode(id))
            .attr("requester", record.requester)
            .attr("executor", record.executor)
            .attr("refunded", taken),
    );
    if now_invalid {
        mark_dead(state, &record.executor, ctx.block.height)?;
        ctx.emit(Event::new("kiln.inference.v1.EventHostInvalid").attr("host", record.executor));
    }
    Ok(())
}

/// End of block: disputes whose voting window ends here are tallied — upheld
/// only with more than half of the eligible weight voting invalid.
pub fn end_block<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>) -> TxResult<()> {
    let height = ctx.block.height;
    for suffix in suffixes(state, &keys::dispute_deadline_at(height))? {
        let id = id_of(&suffix)?;
        if let Some(dispute) = state.get_value::<Dispute>(&keys::dispute(&id))? {
            let upheld =
                u128::from(dispute.invalid_weight) * 2 > u128::from(dispute.eligible_weight);
            resolve(state, ctx, dispute, upheld)?;
        } else {
            state.delete_raw([keys::dispute_deadline_at(height), suffix].concat());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sprt_invalid;

    #[test]
    fn the_sprt_flags_repeated_invalidations_not_rare_ones() {
        assert!(!sprt_invalid(0, 1));
        assert!(sprt_invalid(0, 2));
        // 2 upheld among many passed validations is within honest noise.
        assert!(!sprt_invalid(100, 2));
        // 10 in 200 (5%) is far above p0 = 1%; 5 in 100 is not yet enough evidence.
        assert!(sprt_invalid(190, 10));
        assert!(!sprt_invalid(95, 5));
        assert!(!sprt_invalid(1_000, 0));
    }
}
