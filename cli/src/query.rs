//! Queries through `abci_query` gRPC-style paths (standard Cosmos SDK) and RPC.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use cosmrs::proto::cosmos::auth::v1beta1::{
    BaseAccount, ModuleAccount, QueryAccountRequest, QueryAccountResponse,
};
use cosmrs::proto::cosmos::authz::v1beta1::{
    QueryGranterGrantsRequest, QueryGranterGrantsResponse,
};
use cosmrs::proto::cosmos::bank::v1beta1::{
    QueryAllBalancesRequest, QueryAllBalancesResponse, QueryBalanceRequest, QueryBalanceResponse,
};
use cosmrs::proto::cosmos::base::query::v1beta1::PageRequest;
use prost::Message;
use serde_json::{json, Value};

use crate::rpc::{json_str, json_u64, AbciQueryResponse, RpcClient};
use crate::tx::{decode_tx_json, describe_any, tx_result_json};

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

fn run<Req: Message, Resp: Message + Default>(
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

fn looks_not_found(r: &AbciQueryResponse) -> bool {
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

pub fn account_json(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    let acc = account(rpc, address, height)?.ok_or_else(|| {
        anyhow!("account {address} not found on chain: it has never received funds")
    })?;
    Ok(json!({
        "address": acc.address,
        "account_number": acc.account_number.to_string(),
        "sequence": acc.sequence.to_string(),
        "pub_key": acc.pub_key.as_ref().map(|pk| {
            let key = cosmrs::proto::cosmos::crypto::secp256k1::PubKey::decode(pk.value.as_slice())
                .map(|k| base64::engine::general_purpose::STANDARD.encode(k.key))
                .unwrap_or_default();
            json!({"@type": pk.type_url, "key": key})
        }),
    }))
}

fn all_pages<F>(mut f: F) -> Result<()>
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

pub fn balances_json(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    let mut coins = vec![];
    all_pages(|pagination| {
        let req = QueryAllBalancesRequest {
            address: address.into(),
            pagination,
            resolve_denom: false,
        };
        let (resp, _): (QueryAllBalancesResponse, _) = run(rpc, ALL_BALANCES_PATH, &req, height)?;
        coins.extend(
            resp.balances
                .into_iter()
                .map(|c| json!({"denom": c.denom, "amount": c.amount})),
        );
        Ok(resp.pagination.map(|p| p.next_key).unwrap_or_default())
    })?;
    Ok(json!({"address": address, "balances": coins}))
}

pub fn balance_json(rpc: &RpcClient, address: &str, denom: &str, height: u64) -> Result<Value> {
    let req = QueryBalanceRequest {
        address: address.into(),
        denom: denom.into(),
    };
    let (resp, _): (QueryBalanceResponse, _) = run(rpc, BALANCE_PATH, &req, height)?;
    let c = resp.balance.unwrap_or_default();
    let amount = if c.amount.is_empty() {
        "0".to_string()
    } else {
        c.amount
    };
    Ok(json!({"address": address, "denom": denom, "amount": amount}))
}

pub fn granter_grants_json(rpc: &RpcClient, granter: &str, height: u64) -> Result<Value> {
    let mut grants = vec![];
    all_pages(|pagination| {
        let req = QueryGranterGrantsRequest {
            granter: granter.into(),
            pagination,
        };
        let (resp, _): (QueryGranterGrantsResponse, _) =
            run(rpc, GRANTER_GRANTS_PATH, &req, height)?;
        for g in resp.grants {
            let exp = g.expiration.map(|t| {
                time::OffsetDateTime::from_unix_timestamp(t.seconds)
                    .ok()
                    .and_then(|d| {
                        d.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| t.seconds.to_string())
            });
            grants.push(json!({
                "granter": g.granter,
                "grantee": g.grantee,
                "authorization": g.authorization.as_ref().map(describe_any),
                "expiration": exp,
            }));
        }
        Ok(resp.pagination.map(|p| p.next_key).unwrap_or_default())
    })?;
    Ok(json!({"granter": granter, "grants": grants}))
}

/// `kiln query tx HASH`: result, decoded messages and events.
pub fn tx_json(rpc: &RpcClient, hash: &str) -> Result<Value> {
    let res = rpc
        .tx(hash)?
        .ok_or_else(|| anyhow!("transaction {hash} not found (not included yet, or pruned)"))?;
    let mut out = tx_result_json(&res);
    let tx_b64 = json_str(&res["tx"]);
    let tx = base64::engine::general_purpose::STANDARD
        .decode(&tx_b64)
        .context("RPC `tx` returned a tx that is not base64")?;
    out["tx"] = decode_tx_json(&tx)?;
    let events: Vec<Value> = res["tx_result"]["events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .map(|e| {
                    json!({
                        "type": json_str(&e["type"]),
                        "attributes": e["attributes"].as_array().map(|attrs| attrs.iter().map(|a| json!({
                            "key": json_str(&a["key"]),
                            "value": json_str(&a["value"]),
                        })).collect::<Vec<_>>()).unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    out["events"] = Value::Array(events);
    Ok(out)
}

/// `kiln status`.
pub fn status_json(rpc: &RpcClient) -> Result<Value> {
    let st = rpc.status()?;
    let si = &st["sync_info"];
    let vi = &st["validator_info"];
    Ok(json!({
        "node": rpc.url(),
        "chain_id": json_str(&st["node_info"]["network"]),
        "moniker": json_str(&st["node_info"]["moniker"]),
        "node_version": json_str(&st["node_info"]["version"]),
        "latest_block_height": json_u64(&si["latest_block_height"]).unwrap_or(0),
        "latest_block_hash": json_str(&si["latest_block_hash"]),
        "latest_app_hash": json_str(&si["latest_app_hash"]),
        "latest_block_time": json_str(&si["latest_block_time"]),
        "catching_up": si["catching_up"].as_bool().unwrap_or(false),
        "validator": {
            "address": json_str(&vi["address"]),
            "pub_key": vi["pub_key"].clone(),
            "voting_power": json_str(&vi["voting_power"]),
        },
    }))
}
