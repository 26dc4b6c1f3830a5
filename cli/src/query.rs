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
pub const STAGES: [&str; 8] = [
    "sprint",
    "commit_grace",
    "challenge",
    "open",
    "vote_commit",
    "vote_reveal",
    "settle",
    "inference",
];

/// Runs a JSON query; `Ok(None)` when the chain answers "not found".
fn json_query_opt(rpc: &RpcClient, path: &str, data: &[u8], height: u64) -> Result<Option<Value>> {
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

fn json_query(rpc: &RpcClient, path: &str, data: &[u8], height: u64) -> Result<Value> {
    json_query_opt(rpc, path, data, height)?
        .ok_or_else(|| anyhow!("query {path}: the node returned nothing"))
}

/// `kiln query epoch`.
pub fn epoch_json(rpc: &RpcClient, height: u64) -> Result<Value> {
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

/// The stage after `stage` (and whether it begins a new epoch).
pub fn next_stage(stage: &str) -> Option<(&'static str, bool)> {
    let i = STAGES.iter().position(|s| *s == stage)?;
    Some(match STAGES.get(i + 1) {
        Some(n) => (n, false),
        None => (STAGES[0], true),
    })
}

/// `epoch 3, stage open (blocks 14–16), 2 blocks to vote_commit`.
pub fn epoch_text(v: &Value) -> String {
    let n = |f: &str| json_u64(&v[f]).unwrap_or(0);
    let stage = json_str(&v["stage"]);
    let (start, next) = (n("stage_start"), n("next_stage_height"));
    let range = if next > start + 1 {
        format!("blocks {start}–{}", next - 1)
    } else {
        format!("block {start}")
    };
    let left = n("blocks_to_next_stage");
    let to = match next_stage(&stage) {
        Some((s, false)) => s.to_string(),
        Some((s, true)) => format!("{s} of epoch {}", n("epoch") + 1),
        None => format!("the next stage (height {next})"),
    };
    format!(
        "epoch {}, stage {stage} ({range}), {left} block{} to {to}\n",
        n("epoch"),
        if left == 1 { "" } else { "s" }
    )
}

/// `kiln query hosts`.
pub fn hosts_json(rpc: &RpcClient, height: u64) -> Result<Value> {
    let v = json_query_opt(rpc, HOSTS_PATH, &[], height)?.unwrap_or(json!([]));
    if !v.is_array() {
        bail!("the answer to {HOSTS_PATH} is not a list: {v}");
    }
    Ok(v)
}

/// `kiln query host ADDR`.
pub fn host_json(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    json_query_opt(rpc, HOST_PATH, address.as_bytes(), height)?.ok_or_else(|| {
        anyhow!("{address} is not a registered host (register with `kiln tx host register`)")
    })
}

/// Like [`host_json`], `Ok(None)` when `address` is not a host.
pub fn host_opt(rpc: &RpcClient, address: &str, height: u64) -> Result<Option<Value>> {
    json_query_opt(rpc, HOST_PATH, address.as_bytes(), height)
}

/// `kiln query reputation ADDR`.
pub fn reputation_json(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    json_query(rpc, REPUTATION_PATH, address.as_bytes(), height)
}

/// `kiln query sprint-result EPOCH ADDR`.
pub fn sprint_result_json(rpc: &RpcClient, epoch: u64, host: &str, height: u64) -> Result<Value> {
    let data = json!({"epoch": epoch, "host": host}).to_string();
    let mut v = json_query_opt(rpc, RESULT_PATH, data.as_bytes(), height)?.ok_or_else(|| {
        anyhow!("no settled sprint result for {host} in epoch {epoch} (not settled yet, or the host did not commit)")
    })?;
    if let Value::Object(m) = &mut v {
        let mut out = serde_json::Map::new();
        out.insert("epoch".into(), json!(epoch));
        out.insert("host".into(), json!(host));
        out.extend(std::mem::take(m));
        v = Value::Object(out);
    }
    Ok(v)
}

/// `kiln query weights`: the sprint module's rows, each with the host's
/// consensus key and the CometBFT voting power of the validator with that key
/// (RPC `validators`; `null` when no validator has it).
pub fn weights_json(rpc: &RpcClient, height: u64) -> Result<Value> {
    let rows = json_query_opt(rpc, WEIGHTS_PATH, &[], height)?.unwrap_or(json!([]));
    let rows = rows
        .as_array()
        .cloned()
        .ok_or_else(|| anyhow!("the answer to {WEIGHTS_PATH} is not a list: {rows}"))?;
    let hosts = hosts_json(rpc, height)?;
    // host address -> consensus key (hex, lower case)
    let key_of = |addr: &str| -> Option<String> {
        hosts.as_array()?.iter().find_map(|h| {
            (json_str(&h["owner"]) == addr).then(|| json_str(&h["consensus_pubkey"]).to_lowercase())
        })
    };
    let validators = rpc.validators(height).context("RPC `validators`")?;
    // consensus key (hex) -> (voting power, validator address)
    let mut powers: Vec<(String, u64, String)> = validators
        .iter()
        .filter_map(|v| {
            let b64 = v["pub_key"]["value"].as_str()?;
            let key = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            Some((
                hex::encode(key),
                json_u64(&v["voting_power"]).unwrap_or(0),
                json_str(&v["address"]),
            ))
        })
        .collect();
    let mut total_weight: u64 = 0;
    let mut out = vec![];
    for r in &rows {
        let host = json_str(&r["host"]);
        let key = key_of(&host);
        let val = key
            .as_ref()
            .and_then(|k| powers.iter().position(|(pk, _, _)| pk == k))
            .map(|i| powers.remove(i));
        total_weight = total_weight.saturating_add(json_u64(&r["weight"]).unwrap_or(0));
        out.push(json!({
            "host": host,
            "weight": json_u64(&r["weight"]).unwrap_or(0),
            "share_bps": json_u64(&r["share_bps"]).unwrap_or(0),
            "consensus_power": json_u64(&r["consensus_power"]).unwrap_or(0),
            "consensus_pubkey": key,
            "cometbft_voting_power": val.as_ref().map(|(_, p, _)| *p),
            "validator_address": val.as_ref().map(|(_, _, a)| a.clone()),
        }));
    }
    // Validators no weight row matched; name the host when the key is registered.
    let host_of = |key: &str| -> Option<String> {
        hosts.as_array()?.iter().find_map(|h| {
            (json_str(&h["consensus_pubkey"]).to_lowercase() == key).then(|| json_str(&h["owner"]))
        })
    };
    let other: Vec<Value> = powers
        .into_iter()
        .map(|(pk, p, a)| json!({"address": a, "consensus_pubkey": pk, "voting_power": p, "host": host_of(&pk)}))
        .collect();
    Ok(json!({
        "weights": out,
        "total_weight": total_weight,
        "other_validators": other,
    }))
}

/// Table of [`weights_json`]: share in %, CometBFT power next to the weight.
pub fn weights_text(v: &Value) -> String {
    let rows = v["weights"].as_array().cloned().unwrap_or_default();
    let mut s = String::new();
    if rows.is_empty() {
        s.push_str("no host has weight yet\n");
    } else {
        s.push_str(&format!(
            "{:<44} {:>14} {:>8} {:>14} {:>14}\n",
            "HOST", "WEIGHT", "SHARE", "POWER", "COMETBFT_POWER"
        ));
        for r in &rows {
            let bps = json_u64(&r["share_bps"]).unwrap_or(0);
            let comet = match json_u64(&r["cometbft_voting_power"]) {
                Some(p) => p.to_string(),
                None => "-".to_string(),
            };
            s.push_str(&format!(
                "{:<44} {:>14} {:>7}% {:>14} {:>14}\n",
                json_str(&r["host"]),
                json_u64(&r["weight"]).unwrap_or(0),
                format!("{}.{:02}", bps / 100, bps % 100),
                json_u64(&r["consensus_power"]).unwrap_or(0),
                comet
            ));
        }
    }
    for o in v["other_validators"].as_array().into_iter().flatten() {
        let who = match o["host"].as_str() {
            Some(h) => format!("the consensus key of host {h}, which has no weight yet"),
            None => "not the consensus key of any host".to_string(),
        };
        s.push_str(&format!(
            "validator {} has CometBFT voting power {} (key {}: {who})\n",
            json_str(&o["address"]),
            json_u64(&o["voting_power"]).unwrap_or(0),
            json_str(&o["consensus_pubkey"]),
        ));
    }
    s
}

/// `kiln1…: reputation 66/100 (2 good epochs)`.
pub fn reputation_text(v: &Value) -> String {
    let good = json_u64(&v["good_epochs"]).unwrap_or(0);
    format!(
        "{}: reputation {}/100 ({good} good epoch{})\n",
        json_str(&v["address"]),
        json_u64(&v["reputation"]).unwrap_or(0),
        if good == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod kiln_tests {
    use super::*;

    #[test]
    fn epoch_line() {
        let v = json!({"height": 14, "epoch": 3, "start_height": 9, "stage": "open", "stage_start": 14, "next_stage_height": 17, "blocks_to_next_stage": 3});
        assert_eq!(
            epoch_text(&v),
            "epoch 3, stage open (blocks 14–16), 3 blocks to vote_commit\n"
        );
        let v = json!({"height": 20, "epoch": 3, "start_height": 9, "stage": "inference", "stage_start": 20, "next_stage_height": 21, "blocks_to_next_stage": 1});
        assert_eq!(
            epoch_text(&v),
            "epoch 3, stage inference (block 20), 1 block to sprint of epoch 4\n"
        );
    }

    #[test]
    fn weights_table() {
        let v = json!({"weights": [{"host": "kiln1a", "weight": 300, "share_bps": 2500, "consensus_power": 300, "cometbft_voting_power": 300},
                                   {"host": "kiln1b", "weight": 900, "share_bps": 7500, "consensus_power": 900, "cometbft_voting_power": null}],
                        "other_validators": []});
        let t = weights_text(&v);
        assert!(t.contains("25.00%"), "{t}");
        assert!(t.contains("75.00%"), "{t}");
        let line_b = t.lines().find(|l| l.starts_with("kiln1b")).unwrap();
        assert!(line_b.trim_end().ends_with('-'), "{t}");
    }
}
