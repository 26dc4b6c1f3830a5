//! Typed queries through `abci_query`: the standard Cosmos SDK gRPC-style
//! paths (protobuf in and out) and Kiln's module paths (JSON answers).

use anyhow::{anyhow, bail, Context, Result};
use cosmos_sdk_proto::cosmos::auth::v1beta1::{
    BaseAccount, ModuleAccount, QueryAccountRequest, QueryAccountResponse,
};
use cosmos_sdk_proto::cosmos::authz::v1beta1::{
    GrantAuthorization, QueryGranterGrantsRequest, QueryGranterGrantsResponse,
};
use cosmos_sdk_proto::cosmos::bank::v1beta1::{
    QueryAllBalancesRequest, QueryAllBalancesResponse, QueryBalanceRequest, QueryBalanceResponse,
};
use cosmos_sdk_proto::cosmos::base::query::v1beta1::PageRequest;
use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use prost::Message;
use serde_json::{json, Value};

use crate::rpc::{json_u64, AbciQueryResponse, RpcClient};

pub const ACCOUNT_PATH: &str = "/cosmos.auth.v1beta1.Query/Account";
pub const BALANCE_PATH: &str = "/cosmos.bank.v1beta1.Query/Balance";
pub const ALL_BALANCES_PATH: &str = "/cosmos.bank.v1beta1.Query/AllBalances";
pub const GRANTER_GRANTS_PATH: &str = "/cosmos.authz.v1beta1.Query/GranterGrants";
pub const BASE_ACCOUNT_URL: &str = "/cosmos.auth.v1beta1.BaseAccount";
pub const MODULE_ACCOUNT_URL: &str = "/cosmos.auth.v1beta1.ModuleAccount";

fn query_error(path: &str, r: &AbciQueryResponse) -> anyhow::Error {
    anyhow!(
        "query {path} failed (code {}{}): {}",
        r.code,
        if r.codespace.is_empty() {
            String::new()
        } else {
            format!(", codespace {}", r.codespace)
        },
        r.log
    )
}

/// Runs a protobuf query at `path`; returns the answer and its height.
pub fn query_proto<Req: Message, Resp: Message + Default>(
    rpc: &RpcClient,
    path: &str,
    req: &Req,
    height: u64,
) -> Result<(Resp, u64)> {
    let r = rpc.abci_query(path, &req.encode_to_vec(), height)?;
    if r.code != 0 {
        return Err(query_error(path, &r));
    }
    let resp = Resp::decode(r.value.as_slice())
        .with_context(|| format!("cannot decode the answer to {path}"))?;
    Ok((resp, r.height))
}

/// Whether a failed query means "not found".
pub fn looks_not_found(r: &AbciQueryResponse) -> bool {
    // Cosmos SDK: sdk code 22 (ErrKeyNotFound) / gRPC NotFound; any "not found" log.
    r.code == 22 || r.code == 5 || r.log.to_lowercase().contains("not found")
}

/// Account at `address` (`None` if it does not exist).
pub fn account(rpc: &RpcClient, address: &str, height: u64) -> Result<Option<BaseAccount>> {
    let req = QueryAccountRequest {
        address: address.to_string(),
    };
    let r = rpc.abci_query(ACCOUNT_PATH, &req.encode_to_vec(), height)?;
    if r.code != 0 {
        if looks_not_found(&r) {
            return Ok(None);
        }
        return Err(query_error(ACCOUNT_PATH, &r));
    }
    if r.value.is_empty() {
        return Ok(None);
    }
    let resp = QueryAccountResponse::decode(r.value.as_slice())
        .context("cannot decode QueryAccountResponse")?;
    let Some(any) = resp.account else {
        return Ok(None);
    };
    match any.type_url.as_str() {
        BASE_ACCOUNT_URL => Ok(Some(
            BaseAccount::decode(any.value.as_slice()).context("cannot decode BaseAccount")?,
        )),
        MODULE_ACCOUNT_URL => Ok(ModuleAccount::decode(any.value.as_slice())
            .context("cannot decode ModuleAccount")?
            .base_account),
        other => bail!("account {address} has unsupported type {other}"),
    }
}

/// Calls `f` with each page request (starting with none) until it returns an
/// empty next key.
pub fn all_pages<F>(mut f: F) -> Result<()>
where
    F: FnMut(Option<PageRequest>) -> Result<Vec<u8>>,
{
    let mut next: Option<Vec<u8>> = None;
    for _ in 0..1000 {
        let page = next.take().map(|key| PageRequest {
            key,
            ..Default::default()
        });
        let nk = f(page)?;
        if nk.is_empty() {
            return Ok(());
        }
        next = Some(nk);
    }
    bail!("too many result pages")
}

/// Every balance of `address`, all pages.
pub fn all_balances(rpc: &RpcClient, address: &str, height: u64) -> Result<Vec<ProtoCoin>> {
    let mut coins = vec![];
    all_pages(|pagination| {
        let req = QueryAllBalancesRequest {
            address: address.into(),
            pagination,
            resolve_denom: false,
        };
        let (resp, _): (QueryAllBalancesResponse, _) =
            query_proto(rpc, ALL_BALANCES_PATH, &req, height)?;
        coins.extend(resp.balances);
        Ok(resp.pagination.map(|p| p.next_key).unwrap_or_default())
    })?;
    Ok(coins)
}

/// The balance of `address` in `denom` (amount "0" when it has none).
pub fn balance(rpc: &RpcClient, address: &str, denom: &str, height: u64) -> Result<ProtoCoin> {
    let req = QueryBalanceRequest {
        address: address.into(),
        denom: denom.into(),
    };
    let (resp, _): (QueryBalanceResponse, _) = query_proto(rpc, BALANCE_PATH, &req, height)?;
    let mut c = resp.balance.unwrap_or_default();
    if c.amount.is_empty() {
        c.amount = "0".to_string();
    }
    if c.denom.is_empty() {
        c.denom = denom.to_string();
    }
    Ok(c)
}

/// Every grant `granter` gave, all pages.
pub fn granter_grants(
    rpc: &RpcClient,
    granter: &str,
    height: u64,
) -> Result<Vec<GrantAuthorization>> {
    let mut grants = vec![];
    all_pages(|pagination| {
        let req = QueryGranterGrantsRequest {
            granter: granter.into(),
            pagination,
        };
        let (resp, _): (QueryGranterGrantsResponse, _) =
            query_proto(rpc, GRANTER_GRANTS_PATH, &req, height)?;
        grants.extend(resp.grants);
        Ok(resp.pagination.map(|p| p.next_key).unwrap_or_default())
    })?;
    Ok(grants)
}

// ---------------------------------------------------------------------------
// Kiln modules: JSON queries (the chain answers JSON bytes in `value`)
// ---------------------------------------------------------------------------

pub const EPOCH_PATH: &str = "/kiln.epochs.v1.Query/Epoch";
pub const HOSTS_PATH: &str = "/kiln.sprint.v1.Query/Hosts";
pub const HOST_PATH: &str = "/kiln.sprint.v1.Query/Host";
pub const WEIGHTS_PATH: &str = "/kiln.sprint.v1.Query/Weights";
pub const RESULT_PATH: &str = "/kiln.sprint.v1.Query/Result";
pub const REPUTATION_PATH: &str = "/kiln.reputation.v1.Query/Reputation";

/// Stages of an epoch, in order (SPEC §3).
pub const STAGES: [&str; 10] = [
    "sprint",
    "commit_grace",
    "challenge",
    "open",
    "vote_commit",
    "vote_reveal",
    "escalation_commit",
    "escalation_reveal",
    "settle",
    "inference",
];

/// Runs a JSON query; `Ok(None)` when the chain answers "not found".
pub fn json_query_opt(
    rpc: &RpcClient,
    path: &str,
    data: &[u8],
    height: u64,
) -> Result<Option<Value>> {
    let r = rpc.abci_query(path, data, height)?;
    if r.code != 0 {
        if looks_not_found(&r) {
            return Ok(None);
        }
        if r.code == 6 || r.log.contains("unknown query path") {
            bail!(
                "the node does not serve {path} (code {}): {} — is it running a Kiln version with this module?",
                r.code,
                r.log
            );
        }
        return Err(query_error(path, &r));
    }
    if r.value.is_empty() {
        return Ok(None);
    }
    let v = serde_json::from_slice(&r.value).with_context(|| {
        format!(
            "the answer to {path} is not JSON: {}",
            String::from_utf8_lossy(&r.value[..r.value.len().min(80)])
        )
    })?;
    Ok(Some(v))
}

/// Like [`json_query_opt`], with "not found" an error.
pub fn json_query(rpc: &RpcClient, path: &str, data: &[u8], height: u64) -> Result<Value> {
    json_query_opt(rpc, path, data, height)?
        .ok_or_else(|| anyhow!("query {path}: the node returned nothing"))
}

/// The current epoch and stage (`kiln query epoch`), checked for its fields.
pub fn epoch(rpc: &RpcClient, height: u64) -> Result<Value> {
    let v = json_query(rpc, EPOCH_PATH, &[], height)?;
    for f in [
        "height",
        "epoch",
        "start_height",
        "stage_start",
        "next_stage_height",
        "blocks_to_next_stage",
    ] {
        if json_u64(&v[f]).is_none() {
            bail!("the answer to {EPOCH_PATH} has no number \"{f}\": {v}");
        }
    }
    if !v["stage"].is_string() {
        bail!("the answer to {EPOCH_PATH} has no \"stage\": {v}");
    }
    Ok(v)
}

/// Every registered host (a JSON list).
/// Misbehaviour CometBFT reported (newest first, at most 100).
pub fn misbehavior(rpc: &RpcClient, height: u64) -> Result<Value> {
    list_query(rpc, "/kiln.staking.v1.Query/Misbehavior", height).map(Value::Array)
}

pub fn hosts(rpc: &RpcClient, height: u64) -> Result<Value> {
    list_query(rpc, HOSTS_PATH, height).map(Value::Array)
}

/// The host record of `address`; `Ok(None)` when it is not a host.
pub fn host(rpc: &RpcClient, address: &str, height: u64) -> Result<Option<Value>> {
    json_query_opt(rpc, HOST_PATH, address.as_bytes(), height)
}

/// The reputation record of `address`.
pub fn reputation(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    json_query(rpc, REPUTATION_PATH, address.as_bytes(), height)
}

/// The settled sprint result of `host` in `epoch`; `Ok(None)` when none.
pub fn sprint_result(
    rpc: &RpcClient,
    epoch: u64,
    host: &str,
    height: u64,
) -> Result<Option<Value>> {
    let data = json!({"epoch": epoch, "host": host}).to_string();
    json_query_opt(rpc, RESULT_PATH, data.as_bytes(), height)
}

/// The sprint module's weight rows (a JSON list; empty when none).
/// Every registered model with its current price (`kiln query models`).
pub fn models(rpc: &RpcClient, height: u64) -> Result<Vec<Value>> {
    list_query(rpc, kiln_inference::query::MODELS_PATH, height)
}

/// Each model's price and floor, pkiln per token (`kiln query prices`).
pub fn prices(rpc: &RpcClient, height: u64) -> Result<Vec<Value>> {
    list_query(rpc, kiln_inference::query::PRICES_PATH, height)
}

/// A JSON query answering a list (an empty list when the key is absent).
fn list_query(rpc: &RpcClient, path: &str, height: u64) -> Result<Vec<Value>> {
    let rows = json_query_opt(rpc, path, &[], height)?.unwrap_or(json!([]));
    rows.as_array()
        .cloned()
        .ok_or_else(|| anyhow!("the answer to {path} is not a list: {rows}"))
}

pub fn weights(rpc: &RpcClient, height: u64) -> Result<Vec<Value>> {
    list_query(rpc, WEIGHTS_PATH, height)
}

/// An inference's settlement record by id (hex), `None` when the chain has
/// none (never started, or pruned after its retention).
pub fn inference(rpc: &RpcClient, id_hex: &str, height: u64) -> Result<Option<Value>> {
    json_query_opt(
        rpc,
        kiln_inference::query::INFERENCE_PATH,
        id_hex.as_bytes(),
        height,
    )
}

/// A requester's inferences still kept, newest first.
pub fn inferences_by_requester(rpc: &RpcClient, address: &str, height: u64) -> Result<Vec<Value>> {
    Ok(json_query(
        rpc,
        kiln_inference::query::BY_REQUESTER_PATH,
        address.as_bytes(),
        height,
    )?
    .as_array()
    .cloned()
    .unwrap_or_default())
}

/// A host's serving stats (requests completed and missed, reliability, earnings).
pub fn host_serving_stats(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    json_query(
        rpc,
        kiln_inference::query::HOST_STATS_PATH,
        address.as_bytes(),
        height,
    )
}

/// The serving period in force and a host's validation seeds the chain keeps.
pub fn validation_seeds(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    json_query(
        rpc,
        kiln_inference::query::VALIDATION_SEEDS_PATH,
        address.as_bytes(),
        height,
    )
}

/// A host's recomputed validation duties of recent periods.
pub fn validation_duties(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    json_query(
        rpc,
        kiln_inference::query::VALIDATION_DUTIES_PATH,
        address.as_bytes(),
        height,
    )
}
