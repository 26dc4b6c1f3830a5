//! JSON queries of the inference module:
//!
//! | path | data | answer |
//! |---|---|---|
//! | `/kiln.inference.v1.Query/Models` | — | every registered model with its current price |
//! | `/kiln.inference.v1.Query/Prices` | — | each model's price and floor |
//! | `/kiln.inference.v1.Query/Inference` | hex id | the inference's record |
//! | `/kiln.inference.v1.Query/ByRequester` | bech32 address | the requester's inferences still kept, newest first (at most 100) |
//! | `/kiln.inference.v1.Query/HostStats` | bech32 address | the host's serving stats |
//! | `/kiln.inference.v1.Query/Executors` | model id | the model's serving set (the draw's candidates) |
//! | `/kiln.inference.v1.Query/Dispute` | hex id | the open dispute over an inference |
//! | `/kiln.inference.v1.Query/ValidationSeeds` | bech32 address | the serving period in force and the host's seeds still kept |
//! | `/kiln.inference.v1.Query/ValidationDuties` | bech32 address | the host's duty records still kept, newest first |

use kiln_framework::query::json;
use kiln_framework::{Address, StateReadExt, TxError, TxResult};
use kiln_state::StateRead;
use serde_json::json as j;

use crate::keys;
use crate::state::{InferenceExt, InferenceRecord, SettlementExt};

pub const MODELS_PATH: &str = "/kiln.inference.v1.Query/Models";
pub const PRICES_PATH: &str = "/kiln.inference.v1.Query/Prices";
pub const INFERENCE_PATH: &str = "/kiln.inference.v1.Query/Inference";
pub const BY_REQUESTER_PATH: &str = "/kiln.inference.v1.Query/ByRequester";
pub const HOST_STATS_PATH: &str = "/kiln.inference.v1.Query/HostStats";
pub const EXECUTORS_PATH: &str = "/kiln.inference.v1.Query/Executors";
pub const DISPUTE_PATH: &str = "/kiln.inference.v1.Query/Dispute";
pub const VALIDATION_SEEDS_PATH: &str = "/kiln.inference.v1.Query/ValidationSeeds";
pub const VALIDATION_DUTIES_PATH: &str = "/kiln.inference.v1.Query/ValidationDuties";

/// Most records one `ByRequester` answer lists.
pub const BY_REQUESTER_LIMIT: usize = 100;

pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        MODELS_PATH => models(state),
        PRICES_PATH => prices(state),
        INFERENCE_PATH => inference(state, data),
        BY_REQUESTER_PATH => by_requester(state, data),
        HOST_STATS_PATH => host_stats(state, data),
        EXECUTORS_PATH => executors(state, data),
        DISPUTE_PATH => dispute(state, data),
        VALIDATION_SEEDS_PATH => validation_seeds(state, data),
        VALIDATION_DUTIES_PATH => validation_duties(state, data),
        _ => return None,
    };
    Some(result)
}

fn text(data: &[u8], what: &str) -> TxResult<String> {
    String::from_utf8(data.to_vec())
        .map(|s| s.trim().to_string())
        .map_err(|_| TxError::invalid_request(format!("{what} must be UTF-8 text")))
}

fn address(data: &[u8]) -> TxResult<Address> {
    let t = text(data, "the address")?;
    Address::parse(&t).map_err(|e| TxError::invalid_address(e.to_string()))
}

/// The JSON of a record, as the CLI, the worker and tests read it.
pub fn record_json(r: &InferenceRecord) -> serde_json::Value {
    j!({
        "id": hex::encode(r.id),
        "requester": r.requester,
        "transfer_agent": r.transfer_agent,
        "executor": r.executor,
        "model": r.model,
        "prompt_hash": hex::encode(r.prompt_hash),
        "prompt_tokens": r.prompt_tokens,
        "max_tokens": r.max_tokens,
        "price_pkiln": r.price_pkiln,
        "escrow": r.escrow.to_string(),
        "start_height": r.start_height,
        "deadline": r.deadline,
        "status": r.status,
        "completion_tokens": r.completion_tokens,
        "response_hash": hex::encode(r.response_hash),
        "top_logprobs_hash": hex::encode(r.top_logprobs_hash),
        "paid": r.paid.to_string(),
        "refunded": r.refunded.to_string(),
        "end_height": r.end_height,
        "period": r.period,
    })
}

fn id_arg(data: &[u8]) -> TxResult<(String, [u8; 32])> {
    let t = text(data, "the id")?;
    let id = hex::decode(&t)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| TxError::invalid_request("the id must be 64 hex digits"))?;
    Ok((t, id))
}

fn dispute<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let (t, id) = id_arg(data)?;
    match state.get_value::<crate::state::Dispute>(&keys::dispute(&id))? {
        Some(d) => json(&j!({
            "id": t,
            "opened_by": d.opened_by,
            "score_micro": d.score_micro,
            "opened_height": d.opened_height,
            "deadline": d.deadline,
            "eligible_weight": d.eligible_weight,
            "invalid_weight": d.invalid_weight,
            "valid_weight": d.valid_weight,
        })),
        None => Err(TxError::key_not_found(format!("no open dispute over {t}"))),
    }
}

fn inference<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let (t, id) = id_arg(data)?;
    match state.record(&id)? {
        Some(r) => json(&record_json(&r)),
        None => Err(TxError::key_not_found(format!(
            "no inference {t} (never started, or pruned after its retention)"
        ))),
    }
}

fn by_requester<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let requester = address(data)?;
    let mut ids = Vec::new();
    state.for_each_under(&keys::by_requester_of(&requester), |suffix, _| {
        if let Some(id) = suffix.get(8..).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            ids.push(id);
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    for id in ids.iter().rev().take(BY_REQUESTER_LIMIT) {
        if let Some(r) = state.record(id)? {
            out.push(record_json(&r));
        }
    }
    json(&out)
}

fn host_stats<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let host = address(data)?;
    let stats = state.host_stats(&host)?;
    json(&j!({
        "host": host,
        "epoch_completed": stats.epoch_completed,
        "epoch_missed": stats.epoch_missed,
        "consecutive_misses": stats.consecutive_misses,
        "reliability_bps": stats.reliability_bps,
        "total_completed": stats.total_completed,
        "total_missed": stats.total_missed,
        "total_tokens": stats.total_tokens.to_string(),
        "total_earned": stats.total_earned.to_string(),
        "epoch_validated": stats.epoch_validated,
        "epoch_invalidated": stats.epoch_invalidated,
        "invalid": stats.invalid,
        "total_invalidated": stats.total_invalidated,
    }))
}

fn executors<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let model = text(data, "the model id")?;
    if state.model(&model)?.is_none() {
        return Err(TxError::key_not_found(format!(
            "model {model:?} is not registered"
        )));
    }
    json(&state.serving_set(&model)?)
}

fn models<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<u8>> {
    let mut out = Vec::new();
    for m in state.models()? {
        let price = state.price(&m.id)?;
        out.push(j!({
            "id": m.id,
            "gguf_sha256": m.gguf_sha256,
            "tokenizer_sha256": m.tokenizer_sha256,
            "validation_threshold_micro": m.validation_threshold_micro,
            "price_floor_pkiln": m.price_floor_pkiln,
            "price_pkiln": price,
            "retired_height": state.get_u64(&crate::keys::retired(&m.id))?,
        }));
    }
    json(&out)
}

fn prices<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<u8>> {
    let mut out = Vec::new();
    for m in state.models()? {
        out.push(j!({
            "model": m.id,
            "price_pkiln": state.price(&m.id)?,
            "price_floor_pkiln": m.price_floor_pkiln,
        }));
    }
    json(&out)
}

fn validation_seeds<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let host = address(data)?;
    let period = crate::duties::current_period(state)?;
    let mut seeds = Vec::new();
    // Seeds live from the period before theirs to the settle after the next.
    for p in period.saturating_sub(1)..=period.saturating_add(1) {
        if let Some(c) = crate::duties::seed_commit(state, p, &host)? {
            seeds.push(j!({
                "period": p,
                "commitment": hex::encode(c.commitment),
                "commit_height": c.commit_height,
                "revealed": c.seed.is_some(),
            }));
        }
    }
    json(&j!({"host": host, "period": period, "seeds": seeds}))
}

fn validation_duties<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let host = address(data)?;
    let period = crate::duties::current_period(state)?;
    let mut out = Vec::new();
    for back in 2..2 + crate::duties::DUTY_RECORDS_KEPT {
        let Some(p) = period.checked_sub(back) else {
            break;
        };
        if let Some(r) = crate::duties::duty_record(state, p, &host)? {
            out.push(j!({
                "period": p,
                "assigned_micro": r.assigned_micro,
                "performed": r.performed,
                "skipped_micro": r.skipped_micro,
                "revealed": r.revealed,
            }));
        }
    }
    json(&j!({"host": host, "period": period, "records": out}))
}
