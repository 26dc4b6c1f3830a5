//! The JSON-RPC methods (CometBFT 0.38 result shapes), written against
//! [`ChainView`]; the JSON itself is built in [`render`].

use std::sync::Arc;

use serde_json::{json, Value};
use tendermint_proto::v0_38::abci::{ExecTxResult, RequestQuery};

use super::render;
use super::view::ChainView;
use super::{Params, RpcError, RpcResult};
use crate::events::parse_query;

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
pub async fn dispatch<V: ChainView + ?Sized>(node: Arc<V>, method: &str, p: Params) -> RpcResult {
    match method {
        "broadcast_tx_commit" => broadcast_tx_commit(node, p).await,
        "subscribe" | "unsubscribe" | "unsubscribe_all" => Err(RpcError::internal(format!(
            "{method} is only available over the websocket (/websocket)"
        ))),
        _ => {
            let m = method.to_string();
            match tokio::task::spawn_blocking(move || dispatch_blocking(&*node, &m, &p)).await {
                Ok(r) => r,
                Err(e) => Err(RpcError::internal(format!("handler panicked: {e}"))),
            }
        }
    }
}

fn dispatch_blocking<V: ChainView + ?Sized>(node: &V, method: &str, p: &Params) -> RpcResult {
    match method {
        "health" => Ok(json!({})),
        "status" => status(node),
        "net_info" => Ok(
            json!({"listening": true, "listeners": ["Listener(@)"], "n_peers": "0", "peers": []}),
        ),
        "genesis" => Ok(json!({"genesis": node.genesis()})),
        "abci_info" => Ok(render::abci_info_json(&node.abci_info())),
        "abci_query" => abci_query(node, p),
        "broadcast_tx_sync" => broadcast_tx(node, p, false),
        "broadcast_tx_async" => broadcast_tx(node, p, true),
        "check_tx" => Ok(render::check_tx_json(&node.check_tx(get_tx(p)?))),
        "block" => block(node, p.i64("height")?),
        "block_by_hash" => {
            let hash = p
                .hash("hash")?
                .ok_or_else(|| RpcError::invalid_params("missing hash"))?;
            match node.height_by_hash(&hash)? {
                Some(h) => block(node, Some(h as i64)),
                None => Ok(render::block_result_json(None)),
            }
        }
        "header" => {
            let h = height_param(node, p.i64("height")?)?;
            let meta = node.block_meta(h)?.ok_or_else(|| {
                RpcError::internal(format!("block meta not found for height {h}"))
            })?;
            Ok(json!({"header": render::header_json(&meta.header)}))
        }
        "header_by_hash" => {
            let hash = p
                .hash("hash")?
                .ok_or_else(|| RpcError::invalid_params("missing hash"))?;
            match node.height_by_hash(&hash)? {
                Some(h) => Ok(
                    json!({"header": node.block_meta(h)?.map(|m| render::header_json(&m.header))}),
                ),
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
                node.consensus_params(h)?.ok_or_else(|| {
                    RpcError::internal(format!("consensus params not found for height {h}"))
                })?
            };
            Ok(
                json!({"block_height": h.to_string(), "consensus_params": render::params_json(&params)}),
            )
        }
        "unconfirmed_txs" => {
            let limit = p.i64("limit")?.unwrap_or(30).clamp(1, 100) as usize;
            let mp = node.unconfirmed_txs(limit);
            Ok(render::unconfirmed_txs_json(
                mp.txs.len(),
                mp.total,
                mp.total_bytes,
                Some(&mp.txs),
            ))
        }
        "num_unconfirmed_txs" => {
            let mp = node.unconfirmed_txs(0);
            Ok(render::unconfirmed_txs_json(
                mp.total,
                mp.total,
                mp.total_bytes,
                None,
            ))
        }
        other => Err(RpcError::method_not_found(other)),
    }
}

/// Resolve an optional height argument (CometBFT's `getHeight`).
fn height_param<V: ChainView + ?Sized>(node: &V, h: Option<i64>) -> Result<u64, RpcError> {
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
            let base = node.base().map_err(RpcError::from)?;
            if h < base {
                return Err(RpcError::internal(format!(
                    "height {h} is not available, lowest height is {base}"
                )));
            }
            Ok(h)
        }
    }
}

fn status<V: ChainView + ?Sized>(node: &V) -> RpcResult {
    let st = node.state();
    let id = node.identity();
    let latest = node.height();
    let base = node.base()?;
    let (lhash, ltime) = match node.block_meta(latest)? {
        Some(m) => (m.block_id.hash.to_string(), m.header.time.to_rfc3339()),
        None => (String::new(), st.last_block_time.to_rfc3339()),
    };
    let (ehash, etime, eapp) = match node.block_meta(base)? {
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
    let address = id.validator_address();
    let power = st
        .validators
        .iter()
        .find(|v| v.address == address)
        .map(|v| v.power.value())
        .unwrap_or(0);
    let rpc = id
        .rpc_address
        .map(|a| format!("tcp://{a}"))
        .unwrap_or_default();
    Ok(json!({
        "node_info": {
            "protocol_version": {"p2p": crate::P2P_PROTOCOL.to_string(), "block": crate::BLOCK_PROTOCOL.to_string(), "app": st.app_version.to_string()},
            "id": id.id,
            "listen_addr": "tcp://0.0.0.0:26656",
            "network": st.chain_id,
            "version": crate::COMETBFT_VERSION,
            "channels": "40202122233038606100",
            "moniker": id.moniker,
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
            "address": address.to_string(),
            "pub_key": id.validator_pub_key,
            "voting_power": power.to_string(),
        },
    }))
}

fn abci_query<V: ChainView + ?Sized>(node: &V, p: &Params) -> RpcResult {
    let path = p.string("path")?.unwrap_or_default();
    let data = p.bytes_hex("data")?.unwrap_or_default();
    let height = p.i64("height")?.unwrap_or(0);
    let prove = p.bool("prove")?.unwrap_or(false);
    if height < 0 {
        return Err(RpcError::invalid_params("height must be non-negative"));
    }
    let r = node.abci_query(RequestQuery {
        data: data.into(),
        path,
        height,
        prove,
    });
    Ok(render::abci_query_json(&r))
}

fn get_tx(p: &Params) -> Result<Vec<u8>, RpcError> {
    p.bytes_b64("tx")?.ok_or_else(|| {
        RpcError::invalid_params("error converting json params to arguments: missing tx")
    })
}

fn broadcast_tx<V: ChainView + ?Sized>(node: &V, p: &Params, is_async: bool) -> RpcResult {
    let tx = get_tx(p)?;
    let hash = crate::tx_hash(&tx);
    match node.submit_tx(tx) {
        Err(e) if is_async => Err(RpcError::internal(e.to_string())),
        Err(e) => Err(RpcError::internal(format!("error on broadcastTxSync: {e}"))),
        Ok(_) if is_async => Ok(render::broadcast_tx_async_json(&hash)),
        Ok(r) => Ok(render::broadcast_tx_sync_json(&r, &hash)),
    }
}

async fn broadcast_tx_commit<V: ChainView + ?Sized>(node: Arc<V>, p: Params) -> RpcResult {
    let tx = get_tx(&p)?;
    let hash = crate::tx_hash(&tx);
    let mut rx = node.subscribe();
    let n2 = node.clone();
    let r = tokio::task::spawn_blocking(move || n2.submit_tx(tx))
        .await
        .map_err(|e| RpcError::internal(e.to_string()))?
        .map_err(|e| RpcError::internal(format!("error on broadcastTxCommit: {e}")))?;
    if r.code != 0 {
        return Ok(render::broadcast_tx_commit_json(
            &r,
            &ExecTxResult::default(),
            &hash,
            0,
        ));
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
    match tokio::time::timeout(node.broadcast_tx_commit_timeout(), wait).await {
        Ok(Ok(ev)) => Ok(render::broadcast_tx_commit_json(
            &r,
            ev.tx_result.as_ref().unwrap_or(&ExecTxResult::default()),
            &hash,
            ev.height,
        )),
        Ok(Err(_)) => Err(RpcError::internal("node is shutting down")),
        Err(_) => Err(RpcError::internal(
            "timed out waiting for tx to be included in a block",
        )),
    }
}

fn block<V: ChainView + ?Sized>(node: &V, h: Option<i64>) -> RpcResult {
    let h = height_param(node, h)?;
    if h == 0 {
        return Ok(render::block_result_json(None));
    }
    let blk = node
        .block(h)?
        .ok_or_else(|| RpcError::internal(format!("block not found for height {h}")))?;
    let meta = node
        .block_meta(h)?
        .ok_or_else(|| RpcError::internal(format!("block meta not found for height {h}")))?;
    Ok(render::block_result_json(Some((&meta.block_id, &blk))))
}

fn block_results<V: ChainView + ?Sized>(node: &V, h: Option<i64>) -> RpcResult {
    let h = height_param(node, h)?;
    let r = node
        .results(h)?
        .ok_or_else(|| RpcError::internal(format!("could not find results for height #{h}")))?;
    let params_after = match &r.consensus_param_updates {
        Some(_) => Some(
            node.consensus_params(h + 1)?
                .unwrap_or_else(|| node.state().consensus_params),
        ),
        None => None,
    };
    Ok(render::block_results_json(h, &r, params_after.as_ref()))
}

fn blockchain<V: ChainView + ?Sized>(node: &V, min: Option<i64>, max: Option<i64>) -> RpcResult {
    let latest = node.height();
    let base = node.base()?.max(1);
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
            if let Some(m) = node.block_meta(h)? {
                metas.push(render::block_meta_json(&m));
            }
        }
    }
    Ok(json!({"last_height": latest.to_string(), "block_metas": metas}))
}

fn commit<V: ChainView + ?Sized>(node: &V, h: Option<i64>) -> RpcResult {
    let h = height_param(node, h)?;
    let latest = node.height();
    let meta = node
        .block_meta(h)?
        .ok_or_else(|| RpcError::internal(format!("block meta not found for height {h}")))?;
    let (commit, canonical) = if h == latest {
        (node.seen_commit(h)?, false)
    } else {
        (node.block(h + 1)?.and_then(|b| b.last_commit), true)
    };
    let commit =
        commit.ok_or_else(|| RpcError::internal(format!("commit not found for height {h}")))?;
    Ok(render::commit_json(&meta.header, &commit, canonical))
}

fn tx_json<V: ChainView + ?Sized>(node: &V, h: u64, idx: u32) -> Result<Value, RpcError> {
    let (tx, r) = node.tx(h, idx)?;
    Ok(render::tx_json(h, idx, &tx, &r))
}

fn tx<V: ChainView + ?Sized>(node: &V, p: &Params) -> RpcResult {
    let hash = p.hash("hash")?.ok_or_else(|| {
        RpcError::invalid_params("error converting json params to arguments: missing hash")
    })?;
    match node.tx_position(&hash)? {
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

fn tx_search<V: ChainView + ?Sized>(node: &V, p: &Params) -> RpcResult {
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
    let mut hits = node.search_txs(&q)?;
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

fn validators<V: ChainView + ?Sized>(node: &V, p: &Params) -> RpcResult {
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
        let base = node.base()?;
        if h < base {
            return Err(RpcError::internal(format!(
                "height {h} is not available, lowest height is {base}"
            )));
        }
        node.validators(h)?.ok_or_else(|| {
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
        .map(render::validator_json)
        .collect();
    Ok(json!({
        "block_height": h.to_string(),
        "validators": items,
        "count": items.len().to_string(),
        "total": vals.len().to_string(),
    }))
}
