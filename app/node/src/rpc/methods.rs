//! The JSON-RPC methods (CometBFT 0.38 result shapes).

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use tendermint::abci::types::ExecTxResult as DomainExecTxResult;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    CheckTxType, ExecTxResult, RequestCheckTx, RequestInfo, RequestQuery, ResponseCheckTx,
};
use tendermint_rpc::query::{Operand, Operation};

use super::{Params, RpcError, RpcResult};
use crate::devnet::{block_json, block_meta_json, events_json, header_json, params_json, Node};
use crate::events::{parse_query, value_matches};
use crate::mempool::MempoolError;

/// Method name → positional argument names.
pub const METHODS: &[(&str, &[&str])] = &[
    ("health", &[]),
    ("status", &[]),
    ("net_info", &[]),
    ("genesis", &[]),
    ("abci_info", &[]),
    ("abci_query", &["path", "data", "height", "prove"]),
    ("broadcast_tx_sync", &["tx"]),
    ("broadcast_tx_async", &["tx"]),
    ("broadcast_tx_commit", &["tx"]),
    ("check_tx", &["tx"]),
    ("block", &["height"]),
    ("block_by_hash", &["hash"]),
    ("header", &["height"]),
    ("header_by_hash", &["hash"]),
    ("block_results", &["height"]),
    ("blockchain", &["minHeight", "maxHeight"]),
    ("commit", &["height"]),
    ("tx", &["hash", "prove"]),
    (
        "tx_search",
        &["query", "prove", "page", "per_page", "order_by"],
    ),
    ("validators", &["height", "page", "per_page"]),
    ("consensus_params", &["height"]),
    ("unconfirmed_txs", &["limit"]),
    ("num_unconfirmed_txs", &[]),
    ("subscribe", &["query"]),
    ("unsubscribe", &["query"]),
    ("unsubscribe_all", &[]),
];

pub fn arg_names(method: &str) -> Option<&'static [&'static str]> {
    METHODS.iter().find(|(m, _)| *m == method).map(|(_, a)| *a)
}

/// Run one method. `subscribe`/`unsubscribe*` are only valid on the websocket.
pub async fn dispatch<A: Application>(node: Arc<Node<A>>, method: &str, p: Params) -> RpcResult {
    match method {
        "broadcast_tx_commit" => broadcast_tx_commit(node, p).await,
        "subscribe" | "unsubscribe" | "unsubscribe_all" => Err(RpcError::internal(format!(
            "{method} is only available over the websocket (/websocket)"
        ))),
        _ => {
            let m = method.to_string();
            match tokio::task::spawn_blocking(move || dispatch_blocking(&node, &m, &p)).await {
                Ok(r) => r,
                Err(e) => Err(RpcError::internal(format!("handler panicked: {e}"))),
            }
        }
    }
}

fn dispatch_blocking<A: Application>(node: &Node<A>, method: &str, p: &Params) -> RpcResult {
    match method {
        "health" => Ok(json!({})),
        "status" => status(node),
        "net_info" => Ok(
            json!({"listening": true, "listeners": ["Listener(@)"], "n_peers": "0", "peers": []}),
        ),
        "genesis" => Ok(json!({"genesis": node.genesis_raw})),
        "abci_info" => abci_info(node),
        "abci_query" => abci_query(node, p),
        "broadcast_tx_sync" => broadcast_tx(node, p, false),
        "broadcast_tx_async" => broadcast_tx(node, p, true),
        "check_tx" => check_tx_only(node, p),
        "block" => block(node, p.i64("height")?),
        "block_by_hash" => {
            let hash = p
                .hash("hash")?
                .ok_or_else(|| RpcError::invalid_params("missing hash"))?;
            match node.store.height_by_hash(&hash)? {
                Some(h) => block(node, Some(h as i64)),
                None => Ok(
                    json!({"block_id": {"hash": "", "parts": {"total": 0, "hash": ""}}, "block": null}),
                ),
            }
        }
        "header" => {
            let h = height_param(node, p.i64("height")?)?;
            let meta = node.store.block_meta(h)?.ok_or_else(|| {
                RpcError::internal(format!("block meta not found for height {h}"))
            })?;
            Ok(json!({"header": header_json(&meta.header)}))
        }
        "header_by_hash" => {
            let hash = p
                .hash("hash")?
                .ok_or_else(|| RpcError::invalid_params("missing hash"))?;
            match node.store.height_by_hash(&hash)? {
                Some(h) => {
                    Ok(json!({"header": node.store.block_meta(h)?.map(|m| header_json(&m.header))}))
                }
                None => Ok(json!({"header": null})),
            }
        }
        "block_results" => block_results(node, p.i64("height")?),
        "blockchain" => blockchain(node, p.i64("minHeight")?, p.i64("maxHeight")?),
        "commit" => commit(node, p.i64("height")?),
        "tx" => tx(node, p),
        "tx_search" => tx_search(node, p),
        "validators" => validators(node, p),
        "consensus_params" => {
            let h = height_param(node, p.i64("height")?)?;
            let params = if h == node.height() || h == 0 {
                node.state().consensus_params
            } else {
                node.store.consensus_params(h)?.ok_or_else(|| {
                    RpcError::internal(format!("consensus params not found for height {h}"))
                })?
            };
            Ok(json!({"block_height": h.to_string(), "consensus_params": params_json(&params)}))
        }
        "unconfirmed_txs" => {
            let limit = p.i64("limit")?.unwrap_or(30).clamp(1, 100) as usize;
            let mp = node.mempool.lock().unwrap_or_else(|e| e.into_inner());
            let txs: Vec<String> = mp.txs().take(limit).map(|t| B64.encode(&t.tx)).collect();
            Ok(
                json!({"n_txs": txs.len().to_string(), "total": mp.len().to_string(), "total_bytes": mp.total_bytes().to_string(), "txs": txs}),
            )
        }
        "num_unconfirmed_txs" => {
            let mp = node.mempool.lock().unwrap_or_else(|e| e.into_inner());
            Ok(
                json!({"n_txs": mp.len().to_string(), "total": mp.len().to_string(), "total_bytes": mp.total_bytes().to_string(), "txs": null}),
            )
        }
        other => Err(RpcError::method_not_found(other)),
    }
}

/// Resolve an optional height argument (CometBFT's `getHeight`).
fn height_param<A: Application>(node: &Node<A>, h: Option<i64>) -> Result<u64, RpcError> {
    let latest = node.height();
    match h {
        None | Some(0) => Ok(latest),
        Some(h) if h < 0 => Err(RpcError::internal(format!(
            "height {h} must be greater than 0, but got {h}"
        ))),
        Some(h) => {
            let h = h as u64;
            if h > latest {
                return Err(RpcError::internal(format!(
                    "height {h} must be less than or equal to the current blockchain height {latest}"
                )));
            }
            let base = node.store.base().map_err(RpcError::from)?;
            if h < base {
                return Err(RpcError::internal(format!(
                    "height {h} is not available, lowest height is {base}"
                )));
            }
            Ok(h)
        }
    }
}

fn status<A: Application>(node: &Node<A>) -> RpcResult {
    let st = node.state();
    let latest = node.height();
    let base = node.store.base()?;
    let (lhash, ltime) = match node.store.block_meta(latest)? {
        Some(m) => (m.block_id.hash.to_string(), m.header.time.to_rfc3339()),
        None => (String::new(), st.last_block_time.to_rfc3339()),
    };
    let (ehash, etime, eapp) = match node.store.block_meta(base)? {
        Some(m) => (
            m.block_id.hash.to_string(),
            m.header.time.to_rfc3339(),
            hex::encode_upper(m.header.app_hash.as_bytes()),
        ),
        None => (
            String::new(),
            st.last_block_time.to_rfc3339(),
            String::new(),
        ),
    };
    let power = st
        .validators
        .iter()
        .find(|v| v.address == node.key.address())
        .map(|v| v.power.value())
        .unwrap_or(0);
    let rpc = node
        .rpc_addr
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .map(|a| format!("tcp://{a}"))
        .unwrap_or_default();
    Ok(json!({
        "node_info": {
            "protocol_version": {"p2p": crate::P2P_PROTOCOL.to_string(), "block": crate::BLOCK_PROTOCOL.to_string(), "app": st.app_version.to_string()},
            "id": node.node_id,
            "listen_addr": "tcp://0.0.0.0:26656",
            "network": st.chain_id,
            "version": crate::COMETBFT_VERSION,
            "channels": "40202122233038606100",
            "moniker": node.moniker,
            "other": {"tx_index": "on", "rpc_address": rpc},
        },
        "sync_info": {
            "latest_block_hash": lhash,
            "latest_app_hash": hex::encode_upper(&st.app_hash),
            "latest_block_height": latest.to_string(),
            "latest_block_time": ltime,
            "earliest_block_hash": ehash,
            "earliest_app_hash": eapp,
            "earliest_block_height": base.to_string(),
            "earliest_block_time": etime,
            "catching_up": false,
        },
        "validator_info": {
            "address": node.key.address().to_string(),
            "pub_key": node.key.public_key(),
            "voting_power": power.to_string(),
        },
    }))
}

fn abci_info<A: Application>(node: &Node<A>) -> RpcResult {
    let r = node.app().info(RequestInfo {
        version: crate::COMETBFT_VERSION.into(),
        block_version: crate::BLOCK_PROTOCOL,
        p2p_version: crate::P2P_PROTOCOL,
        abci_version: crate::ABCI_VERSION.into(),
    });
    Ok(json!({"response": {
        "data": r.data,
        "version": r.version,
        "app_version": r.app_version.to_string(),
        "last_block_height": r.last_block_height.to_string(),
        "last_block_app_hash": B64.encode(&r.last_block_app_hash),
    }}))
}

fn abci_query<A: Application>(node: &Node<A>, p: &Params) -> RpcResult {
    let path = p.string("path")?.unwrap_or_default();
    let data = p.bytes_hex("data")?.unwrap_or_default();
    let height = p.i64("height")?.unwrap_or(0);
    let prove = p.bool("prove")?.unwrap_or(false);
    if height < 0 {
        return Err(RpcError::invalid_params("height must be non-negative"));
    }
    let r = node.app().query(RequestQuery {
        data: data.into(),
        path,
        height,
        prove,
    });
    let proof_ops = r.proof_ops.as_ref().map(|po| {
        json!({"ops": po.ops.iter().map(|o| json!({"type": o.r#type, "key": B64.encode(&o.key), "data": B64.encode(&o.data)})).collect::<Vec<_>>()})
    });
    Ok(json!({"response": {
        "code": r.code,
        "log": r.log,
        "info": r.info,
        "index": r.index.to_string(),
        "key": if r.key.is_empty() { Value::Null } else { json!(B64.encode(&r.key)) },
        "value": if r.value.is_empty() { Value::Null } else { json!(B64.encode(&r.value)) },
        "proofOps": proof_ops,
        "height": r.height.to_string(),
        "codespace": r.codespace,
    }}))
}

fn get_tx(p: &Params) -> Result<Vec<u8>, RpcError> {
    p.bytes_b64("tx")?.ok_or_else(|| {
        RpcError::invalid_params("error converting json params to arguments: missing tx")
    })
}

/// Add a tx to the mempool (CheckTx). Errors are CometBFT's mempool errors.
pub fn submit_tx<A: Application>(
    node: &Node<A>,
    tx: Vec<u8>,
) -> Result<ResponseCheckTx, MempoolError> {
    let app = node.app();
    let mut mp = node.mempool.lock().unwrap_or_else(|e| e.into_inner());
    mp.check_tx(&app, tx)
}

fn broadcast_tx<A: Application>(node: &Node<A>, p: &Params, is_async: bool) -> RpcResult {
    let tx = get_tx(p)?;
    let hash = hex::encode_upper(crate::tx_hash(&tx));
    match submit_tx(node, tx) {
        Err(e) if is_async => Err(RpcError::internal(e.to_string())),
        Err(e) => Err(RpcError::internal(format!("error on broadcastTxSync: {e}"))),
        Ok(_) if is_async => {
            Ok(json!({"code": 0, "data": "", "log": "", "codespace": "", "hash": hash}))
        }
        Ok(r) => Ok(json!({
            "code": r.code,
            "data": hex::encode_upper(&r.data),
            "log": r.log,
            "codespace": r.codespace,
            "hash": hash,
        })),
    }
}

fn check_tx_json(r: &ResponseCheckTx) -> Value {
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

fn check_tx_only<A: Application>(node: &Node<A>, p: &Params) -> RpcResult {
    let tx = get_tx(p)?;
    let r = node.app().check_tx(RequestCheckTx {
        tx: tx.into(),
        r#type: CheckTxType::New as i32,
    });
    Ok(check_tx_json(&r))
}

async fn broadcast_tx_commit<A: Application>(node: Arc<Node<A>>, p: Params) -> RpcResult {
    let tx = get_tx(&p)?;
    let hash = crate::tx_hash(&tx);
    let mut rx = node.events.subscribe();
    let n2 = node.clone();
    let r = tokio::task::spawn_blocking(move || submit_tx(&n2, tx))
        .await
        .map_err(|e| RpcError::internal(e.to_string()))?
        .map_err(|e| RpcError::internal(format!("error on broadcastTxCommit: {e}")))?;
    let hash_hex = hex::encode_upper(hash);
    if r.code != 0 {
        return Ok(json!({
            "check_tx": check_tx_json(&r),
            "tx_result": exec_json(&ExecTxResult::default()),
            "hash": hash_hex,
            "height": "0",
        }));
    }
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(ev) if ev.tx_hash == Some(hash) => return Ok(ev),
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(node.broadcast_tx_commit_timeout, wait).await {
        Ok(Ok(ev)) => Ok(json!({
            "check_tx": check_tx_json(&r),
            "tx_result": exec_json(ev.tx_result.as_ref().unwrap_or(&ExecTxResult::default())),
            "hash": hash_hex,
            "height": ev.height.to_string(),
        })),
        Ok(Err(_)) => Err(RpcError::internal("node is shutting down")),
        Err(_) => Err(RpcError::internal(
            "timed out waiting for tx to be included in a block",
        )),
    }
}

/// ExecTxResult in CometBFT's JSON (via tendermint's serde).
pub fn exec_json(r: &ExecTxResult) -> Value {
    match DomainExecTxResult::try_from(r.clone()) {
        Ok(d) => serde_json::to_value(d).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn block<A: Application>(node: &Node<A>, h: Option<i64>) -> RpcResult {
    let h = height_param(node, h)?;
    if h == 0 {
        return Ok(
            json!({"block_id": {"hash": "", "parts": {"total": 0, "hash": ""}}, "block": null}),
        );
    }
    let blk = node
        .store
        .block(h)?
        .ok_or_else(|| RpcError::internal(format!("block not found for height {h}")))?;
    let meta = node
        .store
        .block_meta(h)?
        .ok_or_else(|| RpcError::internal(format!("block meta not found for height {h}")))?;
    Ok(json!({"block_id": meta.block_id, "block": block_json(&blk)}))
}

fn block_results<A: Application>(node: &Node<A>, h: Option<i64>) -> RpcResult {
    let h = height_param(node, h)?;
    let r = node
        .store
        .results(h)?
        .ok_or_else(|| RpcError::internal(format!("could not find results for height #{h}")))?;
    let txs: Vec<Value> = r.tx_results.iter().map(exec_json).collect();
    let vus: Vec<Value> = r
        .validator_updates
        .iter()
        .filter_map(|u| tendermint::validator::Update::try_from(u.clone()).ok())
        .map(|u| serde_json::to_value(u).unwrap_or(Value::Null))
        .collect();
    let cpu = match &r.consensus_param_updates {
        Some(_) => serde_json::to_value(
            node.store
                .consensus_params(h + 1)?
                .unwrap_or_else(|| node.state().consensus_params),
        )
        .unwrap_or(Value::Null),
        None => Value::Null,
    };
    Ok(json!({
        "height": h.to_string(),
        "txs_results": if txs.is_empty() { Value::Null } else { Value::Array(txs) },
        "finalize_block_events": events_json(&r.events),
        "validator_updates": if vus.is_empty() { Value::Null } else { Value::Array(vus) },
        "consensus_param_updates": cpu,
        "app_hash": B64.encode(&r.app_hash),
    }))
}

fn blockchain<A: Application>(node: &Node<A>, min: Option<i64>, max: Option<i64>) -> RpcResult {
    let latest = node.height();
    let base = node.store.base()?.max(1);
    let max_h = match max {
        None | Some(0) => latest,
        Some(m) if m < 0 => {
            return Err(RpcError::internal(format!(
                "heights must be non-negative, got maxHeight {m}"
            )))
        }
        Some(m) => (m as u64).min(latest),
    };
    let min_h = match min {
        None | Some(0) => base,
        Some(m) if m < 0 => {
            return Err(RpcError::internal(format!(
                "heights must be non-negative, got minHeight {m}"
            )))
        }
        Some(m) => (m as u64).max(base),
    };
    if min_h > max_h && latest > 0 {
        return Err(RpcError::internal(format!(
            "min height {min_h} can't be greater than max height {max_h}"
        )));
    }
    let lo = min_h.max(max_h.saturating_sub(19));
    let mut metas = vec![];
    if latest > 0 {
        for h in (lo..=max_h).rev() {
            if let Some(m) = node.store.block_meta(h)? {
                metas.push(block_meta_json(&m));
            }
        }
    }
    Ok(json!({"last_height": latest.to_string(), "block_metas": metas}))
}

fn commit<A: Application>(node: &Node<A>, h: Option<i64>) -> RpcResult {
    let h = height_param(node, h)?;
    let latest = node.height();
    let meta = node
        .store
        .block_meta(h)?
        .ok_or_else(|| RpcError::internal(format!("block meta not found for height {h}")))?;
    let (commit, canonical) = if h == latest {
        (node.store.seen_commit(h)?, false)
    } else {
        (node.store.block(h + 1)?.and_then(|b| b.last_commit), true)
    };
    let commit =
        commit.ok_or_else(|| RpcError::internal(format!("commit not found for height {h}")))?;
    Ok(
        json!({"signed_header": {"header": header_json(&meta.header), "commit": commit}, "canonical": canonical}),
    )
}

/// A tx with its result, from the tx index (which outlives block pruning);
/// stores written before the index held txs fall back to the block.
fn indexed_tx<A: Application>(
    node: &Node<A>,
    h: u64,
    idx: u32,
) -> Result<(Vec<u8>, ExecTxResult), RpcError> {
    if let Some(t) = node.store.indexed_tx(h, idx)? {
        return Ok((t.tx.to_vec(), t.result.unwrap_or_default()));
    }
    let base = node.store.base()?;
    if h < base {
        return Err(RpcError::internal(format!(
            "height {h} is not available, lowest height is {base}"
        )));
    }
    let blk = node
        .store
        .block(h)?
        .ok_or_else(|| RpcError::internal(format!("block {h} not found")))?;
    let res = node
        .store
        .results(h)?
        .ok_or_else(|| RpcError::internal(format!("results {h} not found")))?;
    let tx = blk
        .data
        .get(idx as usize)
        .ok_or_else(|| RpcError::internal("tx index out of range"))?;
    let r = res
        .tx_results
        .get(idx as usize)
        .cloned()
        .unwrap_or_default();
    Ok((tx.clone(), r))
}

fn tx_json<A: Application>(node: &Node<A>, h: u64, idx: u32) -> Result<Value, RpcError> {
    let (tx, r) = indexed_tx(node, h, idx)?;
    Ok(json!({
        "hash": hex::encode_upper(crate::tx_hash(&tx)),
        "height": h.to_string(),
        "index": idx,
        "tx_result": exec_json(&r),
        "tx": B64.encode(&tx),
    }))
}

fn tx<A: Application>(node: &Node<A>, p: &Params) -> RpcResult {
    let hash = p.hash("hash")?.ok_or_else(|| {
        RpcError::invalid_params("error converting json params to arguments: missing hash")
    })?;
    match node.store.tx_position(&hash)? {
        // The tx index outlives block pruning (as in CometBFT 0.38).
        Some((h, i)) => tx_json(node, h, i),
        None => Err(RpcError::internal(format!(
            "tx ({}) not found",
            hex::encode_upper(hash)
        ))),
    }
}

fn validate_page(page: Option<i64>, per_page: usize, total: usize) -> Result<usize, RpcError> {
    let pages = if total == 0 {
        1
    } else {
        total.div_ceil(per_page)
    };
    match page {
        None => Ok(1),
        Some(p) if p < 1 || p as usize > pages => Err(RpcError::internal(format!(
            "page should be within [1, {pages}] range, given {p}"
        ))),
        Some(p) => Ok(p as usize),
    }
}

fn per_page(v: Option<i64>) -> usize {
    match v {
        None | Some(0) => 30,
        Some(n) if n < 0 => 30,
        Some(n) => (n as usize).min(100),
    }
}

fn tx_search<A: Application>(node: &Node<A>, p: &Params) -> RpcResult {
    let qs = p.string("query")?.ok_or_else(|| {
        RpcError::invalid_params("error converting json params to arguments: missing query")
    })?;
    let q = parse_query(&qs).map_err(RpcError::internal)?;
    let order = p.string("order_by")?.unwrap_or_default();
    let desc = match order.as_str() {
        "" | "asc" => false,
        "desc" => true,
        _ => {
            return Err(RpcError::internal(
                "expected order_by to be either `asc` or `desc` or empty",
            ))
        }
    };
    let mut cand: Option<BTreeSet<(u64, u32)>> = None;
    let mut filters = vec![];
    let intersect = |cand: &mut Option<BTreeSet<(u64, u32)>>, s: BTreeSet<(u64, u32)>| {
        *cand = Some(match cand.take() {
            None => s,
            Some(c) => c.intersection(&s).cloned().collect(),
        });
    };
    for c in &q.conditions {
        match (&c.key[..], &c.operation) {
            ("tx.hash", Operation::Eq(o)) => {
                let s = match o {
                    Operand::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let mut set = BTreeSet::new();
                if let Ok(b) = hex::decode(&s) {
                    if let Some(pos) = node.store.tx_position(&b)? {
                        set.insert(pos);
                    }
                }
                intersect(&mut cand, set);
            }
            ("tx.height", Operation::Eq(o)) => {
                let h: u64 = match o {
                    Operand::Signed(i) => *i as u64,
                    Operand::Unsigned(u) => *u,
                    Operand::String(s) => s.parse().unwrap_or(0),
                    _ => 0,
                };
                let mut set = node.store.indexed_positions(Some(h))?;
                set.extend((0..node.store.num_txs(h)?).map(|i| (h, i)));
                intersect(&mut cand, set);
            }
            (key, Operation::Eq(o)) if key != "tm.event" => {
                let v = match o {
                    Operand::String(s) => s.clone(),
                    Operand::Signed(i) => i.to_string(),
                    Operand::Unsigned(u) => u.to_string(),
                    other => other.to_string(),
                };
                intersect(&mut cand, node.store.search_event(key, &v)?);
            }
            _ => filters.push(c.clone()),
        }
    }
    let cand = match cand {
        Some(c) => c,
        None => {
            let mut all = node.store.indexed_positions(None)?;
            let latest = node.height();
            for h in node.store.base()?.max(1)..=latest {
                for i in 0..node.store.num_txs(h)? {
                    all.insert((h, i));
                }
            }
            all
        }
    };
    let base = node.store.base()?;
    let mut hits: Vec<(u64, u32)> = vec![];
    for (h, i) in cand {
        // A pruned block's tx is served from the index; stores written before
        // the index held txs have nothing left to serve for it.
        if h < base && node.store.indexed_tx(h, i)?.is_none() {
            continue;
        }
        if !filters.is_empty() {
            let mut map = std::collections::BTreeMap::new();
            map.insert("tx.height".to_string(), vec![h.to_string()]);
            let (tx, res) = indexed_tx(node, h, i)?;
            map.insert(
                "tx.hash".into(),
                vec![hex::encode_upper(crate::tx_hash(&tx))],
            );
            crate::events::flatten_events(&res.events, &mut map);
            let ok = filters.iter().all(|c| {
                map.get(&c.key)
                    .map(|vals| vals.iter().any(|v| value_matches(&c.operation, v)))
                    .unwrap_or(false)
            });
            if !ok {
                continue;
            }
        }
        hits.push((h, i));
    }
    if desc {
        hits.reverse();
    }
    let total = hits.len();
    let pp = per_page(p.i64("per_page")?);
    let page = validate_page(p.i64("page")?, pp, total)?;
    let mut txs = vec![];
    for &(h, i) in hits.iter().skip((page - 1) * pp).take(pp) {
        txs.push(tx_json(node, h, i)?);
    }
    Ok(json!({"txs": txs, "total_count": total.to_string()}))
}

fn validators<A: Application>(node: &Node<A>, p: &Params) -> RpcResult {
    let latest = node.height();
    let st = node.state();
    let h = match p.i64("height")? {
        None | Some(0) => latest.max(st.initial_height),
        Some(h) if h < 0 => {
            return Err(RpcError::internal(format!(
                "height {h} must be greater than 0, but got {h}"
            )))
        }
        Some(h) => h as u64,
    };
    // Known: stored sets up to `latest`, plus the next two from the state.
    let vals = if h == latest + 1 || (latest == 0 && h == st.initial_height) {
        st.validators.clone()
    } else if h == latest + 2 {
        st.next_validators.clone()
    } else if h > latest + 2 {
        return Err(RpcError::internal(format!(
            "height {h} must be less than or equal to the current blockchain height {latest}"
        )));
    } else {
        let base = node.store.base()?;
        if h < base {
            return Err(RpcError::internal(format!(
                "height {h} is not available, lowest height is {base}"
            )));
        }
        node.store.validators(h)?.ok_or_else(|| {
            RpcError::internal(format!("could not find validator set for height #{h}"))
        })?
    };
    let vals = crate::chain::sorted(&vals);
    let pp = per_page(p.i64("per_page")?);
    let page = validate_page(p.i64("page")?, pp, vals.len())?;
    let items: Vec<Value> = vals
        .iter()
        .skip((page - 1) * pp)
        .take(pp)
        .map(|v| {
            json!({
                "address": v.address,
                "pub_key": v.pub_key,
                "voting_power": v.power.value().to_string(),
                "proposer_priority": v.proposer_priority.value().to_string(),
            })
        })
        .collect();
    Ok(json!({
        "block_height": h.to_string(),
        "validators": items,
        "count": items.len().to_string(),
        "total": vals.len().to_string(),
    }))
}
