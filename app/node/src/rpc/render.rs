//! CometBFT 0.38 JSON rendering: pure functions from tendermint / ABCI types
//! to `serde_json::Value`, shared by the RPC methods, the websocket events
//! and the block producer's event bus. Nothing here reads node state.
//!
//! CometBFT's Go JSON differs from tendermint-rs' serde output in a few
//! places (empty lists as `[]`, the empty `last_block_id` / LastCommit objects
//! at the initial height, no `time_iota_ms`, omitted zero fields in event
//! payloads); those differences are patched here, and pinned by the
//! response-shape and CometBFT-compatibility tests.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use tendermint::abci::types::ExecTxResult as DomainExecTxResult;
use tendermint::{block, consensus, validator, Block};
use tendermint_proto::v0_38::abci::{
    Event, ExecTxResult, ResponseCheckTx, ResponseFinalizeBlock, ResponseInfo, ResponseQuery,
};

use super::view::MetricsSnapshot;

/// The empty block id CometBFT writes where there is none.
pub fn empty_block_id_json() -> Value {
    json!({"hash": "", "parts": {"total": 0, "hash": ""}})
}

/// Patch a serialized header to CometBFT's shape (empty `last_block_id`
/// object instead of null at the initial height).
pub fn fix_header_json(h: &mut Value) {
    if h.get("last_block_id").map(Value::is_null).unwrap_or(false) {
        h["last_block_id"] = empty_block_id_json();
    }
}

/// A header as CometBFT serializes it.
pub fn header_json(h: &block::Header) -> Value {
    let mut v = serde_json::to_value(h).unwrap_or(Value::Null);
    fix_header_json(&mut v);
    v
}

/// A block as CometBFT serializes it (`[]` rather than null for empty lists,
/// the empty LastCommit object at the initial height).
pub fn block_json(b: &Block) -> Value {
    let mut v = serde_json::to_value(b).unwrap_or(Value::Null);
    if let Some(h) = v.get_mut("header") {
        fix_header_json(h);
    }
    if v.pointer("/data/txs").map(Value::is_null).unwrap_or(false) {
        v["data"]["txs"] = json!([]);
    }
    if v.pointer("/evidence/evidence")
        .map(Value::is_null)
        .unwrap_or(false)
    {
        v["evidence"]["evidence"] = json!([]);
    }
    if v.get("last_commit").map(Value::is_null).unwrap_or(false) {
        v["last_commit"] =
            json!({"height": "0", "round": 0, "block_id": empty_block_id_json(), "signatures": []});
    }
    v
}

/// A block meta as CometBFT serializes it.
pub fn block_meta_json(m: &block::Meta) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    if let Some(h) = v.get_mut("header") {
        fix_header_json(h);
    }
    v
}

/// Consensus params as CometBFT 0.38 serializes them (no `time_iota_ms`).
pub fn params_json(p: &consensus::Params) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(b) = v.get_mut("block").and_then(Value::as_object_mut) {
        b.remove("time_iota_ms");
    }
    v
}

/// ABCI event JSON (CometBFT 0.38 shape).
pub fn events_json(evs: &[Event]) -> Value {
    Value::Array(
        evs.iter()
            .map(|e| {
                json!({
                    "type": e.r#type,
                    "attributes": e.attributes.iter().map(|a| json!({"key": a.key, "value": a.value, "index": a.index})).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// ExecTxResult JSON as in Tx events (zero fields omitted, like CometBFT).
pub fn exec_result_event_json(r: &ExecTxResult) -> Value {
    let mut m = serde_json::Map::new();
    if r.code != 0 {
        m.insert("code".into(), json!(r.code));
    }
    if !r.data.is_empty() {
        m.insert("data".into(), json!(B64.encode(&r.data)));
    }
    if !r.log.is_empty() {
        m.insert("log".into(), json!(r.log));
    }
    if !r.info.is_empty() {
        m.insert("info".into(), json!(r.info));
    }
    if r.gas_wanted != 0 {
        m.insert("gas_wanted".into(), json!(r.gas_wanted.to_string()));
    }
    if r.gas_used != 0 {
        m.insert("gas_used".into(), json!(r.gas_used.to_string()));
    }
    m.insert("events".into(), events_json(&r.events));
    if !r.codespace.is_empty() {
        m.insert("codespace".into(), json!(r.codespace));
    }
    Value::Object(m)
}

/// ABCI validator updates as CometBFT serializes them (invalid ones skipped).
pub fn validator_updates_json(
    updates: &[tendermint_proto::v0_38::abci::ValidatorUpdate],
) -> Vec<Value> {
    updates
        .iter()
        .filter_map(|u| validator::Update::try_from(u.clone()).ok())
        .map(|u| serde_json::to_value(u).unwrap_or(Value::Null))
        .collect()
}

/// ResponseFinalizeBlock JSON as in NewBlock events.
pub fn finalize_block_json(f: &ResponseFinalizeBlock) -> Value {
    let mut m = serde_json::Map::new();
    if !f.events.is_empty() {
        m.insert("events".into(), events_json(&f.events));
    }
    if !f.tx_results.is_empty() {
        m.insert(
            "tx_results".into(),
            Value::Array(f.tx_results.iter().map(exec_result_event_json).collect()),
        );
    }
    m.insert(
        "validator_updates".into(),
        Value::Array(validator_updates_json(&f.validator_updates)),
    );
    if let Some(p) = &f.consensus_param_updates {
        if let Ok(v) = serde_json::to_value(p) {
            m.insert("consensus_param_updates".into(), v);
        }
    }
    m.insert("app_hash".into(), json!(B64.encode(&f.app_hash)));
    Value::Object(m)
}

/// The `data` of a `NewBlock` event.
pub fn new_block_event_json(blk: &Block, id: &block::Id, fin: &ResponseFinalizeBlock) -> Value {
    json!({
        "type": "tendermint/event/NewBlock",
        "value": {
            "block": block_json(blk),
            "block_id": id,
            "result_finalize_block": finalize_block_json(fin),
        }
    })
}

/// The `data` of a `NewBlockHeader` event.
pub fn new_block_header_event_json(h: &block::Header) -> Value {
    json!({"type": "tendermint/event/NewBlockHeader", "value": {"header": header_json(h)}})
}

/// The `data` of a `Tx` event: tx `index` of block `height`, with its result.
pub fn tx_event_json(height: u64, index: usize, tx: &[u8], r: &ExecTxResult) -> Value {
    let mut txr = json!({
        "height": height.to_string(),
        "tx": B64.encode(tx),
        "result": exec_result_event_json(r),
    });
    if index > 0 {
        // omitempty, as CometBFT
        txr["index"] = json!(index);
    }
    json!({"type": "tendermint/event/Tx", "value": {"TxResult": txr}})
}

/// ExecTxResult in CometBFT's RPC JSON (via tendermint's serde).
pub fn exec_json(r: &ExecTxResult) -> Value {
    match DomainExecTxResult::try_from(r.clone()) {
        Ok(d) => serde_json::to_value(d).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// ResponseCheckTx as `check_tx` and `broadcast_tx_commit` return it.
pub fn check_tx_json(r: &ResponseCheckTx) -> Value {
    json!({
        "code": r.code,
        "data": if r.data.is_empty() { Value::Null } else { json!(B64.encode(&r.data)) },
        "log": r.log,
        "info": r.info,
        "gas_wanted": r.gas_wanted.to_string(),
        "gas_used": r.gas_used.to_string(),
        "events": events_json(&r.events),
        "codespace": r.codespace,
    })
}

/// The `broadcast_tx_sync` result for a CheckTx response.
pub fn broadcast_tx_sync_json(r: &ResponseCheckTx, hash: &[u8; 32]) -> Value {
    json!({
        "code": r.code,
        "data": hex::encode_upper(&r.data),
        "log": r.log,
        "codespace": r.codespace,
        "hash": hex::encode_upper(hash),
    })
}

/// The `broadcast_tx_async` result (the tx was accepted into the mempool).
pub fn broadcast_tx_async_json(hash: &[u8; 32]) -> Value {
    json!({"code": 0, "data": "", "log": "", "codespace": "", "hash": hex::encode_upper(hash)})
}

/// The `broadcast_tx_commit` result; `height` 0 when CheckTx rejected the tx.
pub fn broadcast_tx_commit_json(
    check: &ResponseCheckTx,
    result: &ExecTxResult,
    hash: &[u8; 32],
    height: u64,
) -> Value {
    json!({
        "check_tx": check_tx_json(check),
        "tx_result": exec_json(result),
        "hash": hex::encode_upper(hash),
        "height": height.to_string(),
    })
}

/// The `abci_info` result.
pub fn abci_info_json(r: &ResponseInfo) -> Value {
    json!({"response": {
        "data": r.data,
        "version": r.version,
        "app_version": r.app_version.to_string(),
        "last_block_height": r.last_block_height.to_string(),
        "last_block_app_hash": B64.encode(&r.last_block_app_hash),
    }})
}

/// The `abci_query` result.
pub fn abci_query_json(r: &ResponseQuery) -> Value {
    let proof_ops = r.proof_ops.as_ref().map(|po| {
        json!({"ops": po.ops.iter().map(|o| json!({"type": o.r#type, "key": B64.encode(&o.key), "data": B64.encode(&o.data)})).collect::<Vec<_>>()})
    });
    json!({"response": {
        "code": r.code,
        "log": r.log,
        "info": r.info,
        "index": r.index.to_string(),
        "key": if r.key.is_empty() { Value::Null } else { json!(B64.encode(&r.key)) },
        "value": if r.value.is_empty() { Value::Null } else { json!(B64.encode(&r.value)) },
        "proofOps": proof_ops,
        "height": r.height.to_string(),
        "codespace": r.codespace,
    }})
}

/// A `block` / `block_by_hash` result; `None` renders the empty answer
/// (height 0, unknown hash).
pub fn block_result_json(found: Option<(&block::Id, &Block)>) -> Value {
    match found {
        Some((id, blk)) => json!({"block_id": id, "block": block_json(blk)}),
        None => json!({"block_id": empty_block_id_json(), "block": null}),
    }
}

/// The `block_results` result. `param_updates` are the params in force after
/// the block when it changed them (serialized as tendermint-rs does).
pub fn block_results_json(
    height: u64,
    r: &ResponseFinalizeBlock,
    param_updates: Option<&consensus::Params>,
) -> Value {
    let txs: Vec<Value> = r.tx_results.iter().map(exec_json).collect();
    let vus = validator_updates_json(&r.validator_updates);
    let cpu = match param_updates {
        Some(p) => serde_json::to_value(p).unwrap_or(Value::Null),
        None => Value::Null,
    };
    json!({
        "height": height.to_string(),
        "txs_results": if txs.is_empty() { Value::Null } else { Value::Array(txs) },
        "finalize_block_events": events_json(&r.events),
        "validator_updates": if vus.is_empty() { Value::Null } else { Value::Array(vus) },
        "consensus_param_updates": cpu,
        "app_hash": B64.encode(&r.app_hash),
    })
}

/// The `commit` result.
pub fn commit_json(header: &block::Header, commit: &block::Commit, canonical: bool) -> Value {
    json!({"signed_header": {"header": header_json(header), "commit": commit}, "canonical": canonical})
}

/// One tx of `tx` / `tx_search`: tx `index` of block `height` with its result.
pub fn tx_json(height: u64, index: u32, tx: &[u8], r: &ExecTxResult) -> Value {
    json!({
        "hash": hex::encode_upper(crate::tx_hash(tx)),
        "height": height.to_string(),
        "index": index,
        "tx_result": exec_json(r),
        "tx": B64.encode(tx),
    })
}

/// One validator of a `validators` page.
pub fn validator_json(v: &validator::Info) -> Value {
    json!({
        "address": v.address,
        "pub_key": v.pub_key,
        "voting_power": v.power.value().to_string(),
        "proposer_priority": v.proposer_priority.value().to_string(),
    })
}

/// Mempool txs as `unconfirmed_txs` (`txs` = the listed ones, base64) and
/// `num_unconfirmed_txs` (`txs: None` → null) return them.
pub fn unconfirmed_txs_json(
    n_txs: usize,
    total: usize,
    total_bytes: usize,
    txs: Option<&[Vec<u8>]>,
) -> Value {
    let txs = match txs {
        Some(t) => json!(t.iter().map(|t| B64.encode(t)).collect::<Vec<_>>()),
        None => Value::Null,
    };
    json!({"n_txs": n_txs.to_string(), "total": total.to_string(), "total_bytes": total_bytes.to_string(), "txs": txs})
}

/// The `/metrics` page (Prometheus text format).
pub fn metrics_text(m: &MetricsSnapshot) -> String {
    let mut s = String::new();
    let mut metric = |name: &str, ty: &str, help: &str, v: String| {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {v}\n"
        ));
    };
    metric(
        "kiln_node_height",
        "gauge",
        "Latest committed block height.",
        m.height.to_string(),
    );
    metric(
        "kiln_node_txs_total",
        "counter",
        "Transactions committed since start.",
        m.total_txs.to_string(),
    );
    metric(
        "kiln_node_block_txs",
        "gauge",
        "Transactions in the latest block.",
        m.last_block_txs.to_string(),
    );
    metric(
        "kiln_node_mempool_size",
        "gauge",
        "Transactions in the mempool.",
        m.mempool_size.to_string(),
    );
    metric(
        "kiln_node_mempool_bytes",
        "gauge",
        "Total bytes of mempool transactions.",
        m.mempool_bytes.to_string(),
    );
    metric(
        "kiln_node_block_interval_seconds",
        "gauge",
        "Time between the latest two blocks (block header times).",
        format!("{:.3}", m.last_block_interval_ms as f64 / 1000.0),
    );
    metric(
        "kiln_node_blocks_rejected_total",
        "counter",
        "Proposals rejected by ProcessProposal.",
        m.blocks_rejected.to_string(),
    );
    s
}
