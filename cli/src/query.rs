//! `kiln query …` and `kiln status`: kiln-client's typed queries, shaped
//! into the JSON and text the CLI prints.

use anyhow::{anyhow, Context, Result};
use base64::Engine as _;
use kiln_client::msgs::describe_any;
use kiln_client::proto::cosmos::crypto::secp256k1::PubKey;
use kiln_client::query;
use kiln_client::rpc::{json_str, json_u64, RpcClient};
use kiln_client::tx::{decode_tx_json, tx_result_json};
use prost::Message;
use serde_json::{json, Value};

pub use kiln_client::query::{
    EPOCH_PATH, HOSTS_PATH, HOST_PATH, REPUTATION_PATH, RESULT_PATH, STAGES, WEIGHTS_PATH,
};

pub fn account_json(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    let acc = query::account(rpc, address, height)?.ok_or_else(|| {
        anyhow!("account {address} not found on chain: it has never received funds")
    })?;
    Ok(json!({
        "address": acc.address,
        "account_number": acc.account_number.to_string(),
        "sequence": acc.sequence.to_string(),
        "pub_key": acc.pub_key.as_ref().map(|pk| {
            let key = PubKey::decode(pk.value.as_slice())
                .map(|k| base64::engine::general_purpose::STANDARD.encode(k.key))
                .unwrap_or_default();
            json!({"@type": pk.type_url, "key": key})
        }),
    }))
}

pub fn balances_json(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    let coins: Vec<Value> = query::all_balances(rpc, address, height)?
        .into_iter()
        .map(|c| json!({"denom": c.denom, "amount": c.amount}))
        .collect();
    Ok(json!({"address": address, "balances": coins}))
}

pub fn balance_json(rpc: &RpcClient, address: &str, denom: &str, height: u64) -> Result<Value> {
    let c = query::balance(rpc, address, denom, height)?;
    Ok(json!({"address": address, "denom": denom, "amount": c.amount}))
}

pub fn granter_grants_json(rpc: &RpcClient, granter: &str, height: u64) -> Result<Value> {
    let grants: Vec<Value> = query::granter_grants(rpc, granter, height)?
        .into_iter()
        .map(|g| {
            let exp = g.expiration.map(|t| {
                time::OffsetDateTime::from_unix_timestamp(t.seconds)
                    .ok()
                    .and_then(|d| {
                        d.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| t.seconds.to_string())
            });
            json!({
                "granter": g.granter,
                "grantee": g.grantee,
                "authorization": g.authorization.as_ref().map(describe_any),
                "expiration": exp,
            })
        })
        .collect();
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

/// `kiln query epoch`.
pub fn epoch_json(rpc: &RpcClient, height: u64) -> Result<Value> {
    query::epoch(rpc, height)
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
    query::hosts(rpc, height)
}

/// `kiln query host ADDR`.
pub fn host_json(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    query::host(rpc, address, height)?.ok_or_else(|| {
        anyhow!("{address} is not a registered host (register with `kiln tx host register`)")
    })
}

/// Like [`host_json`], `Ok(None)` when `address` is not a host.
pub fn host_opt(rpc: &RpcClient, address: &str, height: u64) -> Result<Option<Value>> {
    query::host(rpc, address, height)
}

/// `kiln query reputation ADDR`.
pub fn reputation_json(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    query::reputation(rpc, address, height)
}

/// `kiln query sprint-result EPOCH ADDR`.
pub fn sprint_result_json(rpc: &RpcClient, epoch: u64, host: &str, height: u64) -> Result<Value> {
    let mut v = query::sprint_result(rpc, epoch, host, height)?.ok_or_else(|| {
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
    let rows = query::weights(rpc, height)?;
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

/// A price in pkiln per token as ukiln per 1 000 tokens (pkiln / 1 000),
/// exact in decimal.
pub fn ukiln_per_1k_tokens(pkiln: u64) -> String {
    let (whole, frac) = (pkiln / 1_000, pkiln % 1_000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_string()
    }
}

/// Table of `kiln query models`.
pub fn models_text(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "no models registered\n".into();
    }
    let mut out = format!(
        "{:<20} {:>22} {:>10}  {:<16} {:<16}\n",
        "MODEL", "UKILN/1K TOKENS", "THRESHOLD", "GGUF SHA256", "TOKENIZER"
    );
    for m in rows {
        let short = |k: &str| {
            m[k].as_str()
                .unwrap_or("")
                .chars()
                .take(16)
                .collect::<String>()
        };
        out.push_str(&format!(
            "{:<20} {:>22} {:>10}  {:<16} {:<16}\n",
            m["id"].as_str().unwrap_or("?"),
            ukiln_per_1k_tokens(m["price_pkiln"].as_u64().unwrap_or(0)),
            {
                let t = m["validation_threshold_micro"].as_u64().unwrap_or(0);
                format!("{}.{:06}", t / 1_000_000, t % 1_000_000)
            },
            short("gguf_sha256"),
            short("tokenizer_sha256"),
        ));
    }
    out
}

/// Table of `kiln query prices`.
pub fn prices_text(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "no models registered\n".into();
    }
    let mut out = format!(
        "{:<20} {:>16} {:>22} {:>16}\n",
        "MODEL", "PKILN/TOKEN", "UKILN/1K TOKENS", "FLOOR PKILN"
    );
    for r in rows {
        let price = r["price_pkiln"].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "{:<20} {:>16} {:>22} {:>16}\n",
            r["model"].as_str().unwrap_or("?"),
            price,
            ukiln_per_1k_tokens(price),
            r["price_floor_pkiln"].as_u64().unwrap_or(0),
        ));
    }
    out
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

/// `7 KILN` / `0.5 KILN` of a ukiln amount given as JSON text or number.
fn kiln_of(v: &Value) -> String {
    let u: u128 = json_str(v).parse().unwrap_or(0);
    format!("{} KILN", kiln_client::amount::format_kiln(u))
}

/// The last segment of a type URL: `MsgUpdateParams (staking)`.
fn short_type(url: &str) -> String {
    let name = url.rsplit('.').next().unwrap_or(url);
    let module = url.trim_start_matches('/').split('.').nth(1).unwrap_or("");
    if name == "MsgUpdateParams" && !module.is_empty() {
        format!("{name}({module})")
    } else {
        name.to_string()
    }
}

fn message_types(p: &Value) -> String {
    let types: Vec<String> = p["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| short_type(&json_str(&m["@type"])))
        .collect();
    if types.is_empty() {
        "(text)".into()
    } else {
        types.join(",")
    }
}

/// When a proposal's current period ends: `deposit until 120`, `voting until 140`.
fn period_end(p: &Value) -> String {
    match json_str(&p["status"]).as_str() {
        "deposit_period" => format!(
            "deposit until {}",
            json_u64(&p["deposit_end_height"]).unwrap_or(0)
        ),
        "voting_period" => format!(
            "voting until {}",
            json_u64(&p["voting_end_height"]).unwrap_or(0)
        ),
        _ => match json_u64(&p["voting_end_height"]) {
            Some(h) => format!("ended at {h}"),
            None => format!(
                "ended at {}",
                json_u64(&p["deposit_end_height"]).unwrap_or(0)
            ),
        },
    }
}

/// Table of `kiln query gov proposals`.
pub fn gov_proposals_text(v: &Value, status: Option<&str>) -> String {
    let rows = v.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return match status {
            Some(s) => format!("no proposals with status {s}\n"),
            None => "no proposals\n".into(),
        };
    }
    let mut out = format!(
        "{:>4}  {:<14} {:<20} {:>12}  {:<32} {}\n",
        "ID", "STATUS", "PERIOD", "DEPOSIT", "TITLE", "MESSAGES"
    );
    for p in &rows {
        let title: String = json_str(&p["title"]).chars().take(32).collect();
        out.push_str(&format!(
            "{:>4}  {:<14} {:<20} {:>12}  {:<32} {}\n",
            json_u64(&p["id"]).unwrap_or(0),
            json_str(&p["status"]),
            period_end(p),
            kiln_of(&p["total_deposit"]),
            title,
            message_types(p),
        ));
    }
    out
}

fn tally_line(t: &Value) -> String {
    format!(
        "yes {}, no {}, abstain {}, no_with_veto {} (of total weight {})",
        json_str(&t["yes"]),
        json_str(&t["no"]),
        json_str(&t["abstain"]),
        json_str(&t["no_with_veto"]),
        json_str(&t["total_weight"]),
    )
}

/// `kiln query gov proposal ID`.
pub fn gov_proposal_text(p: &Value) -> String {
    let mut out = format!(
        "proposal {}: {}\n",
        json_u64(&p["id"]).unwrap_or(0),
        json_str(&p["title"])
    );
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<13}{v}\n"));
    line(
        &mut out,
        "status:",
        format!("{} ({})", json_str(&p["status"]), period_end(p)),
    );
    line(&mut out, "proposer:", json_str(&p["proposer"]));
    line(
        &mut out,
        "submitted:",
        format!("height {}", json_u64(&p["submit_height"]).unwrap_or(0)),
    );
    if let Some(start) = json_u64(&p["voting_start_height"]) {
        line(
            &mut out,
            "voting:",
            format!(
                "heights {start}–{}",
                json_u64(&p["voting_end_height"]).unwrap_or(0)
            ),
        );
    }
    let depositors = p["deposits"].as_array().map(|d| d.len()).unwrap_or(0);
    let open = matches!(
        json_str(&p["status"]).as_str(),
        "deposit_period" | "voting_period"
    );
    let whose = if p["deposits_burned"].as_bool() == Some(true) {
        "burned".to_string()
    } else if !open {
        "refunded".to_string()
    } else {
        format!(
            "from {depositors} depositor{}",
            if depositors == 1 { "" } else { "s" }
        )
    };
    line(
        &mut out,
        "deposit:",
        format!(
            "{} ({}ukiln), {whose}",
            kiln_of(&p["total_deposit"]),
            json_str(&p["total_deposit"]),
        ),
    );
    if !p["final_tally"].is_null() {
        line(&mut out, "final tally:", tally_line(&p["final_tally"]));
    }
    let reason = json_str(&p["reason"]);
    if !reason.is_empty() {
        line(&mut out, "reason:", reason);
    }
    let summary = json_str(&p["summary"]);
    if !summary.is_empty() {
        line(&mut out, "summary:", summary);
    }
    let metadata = json_str(&p["metadata"]);
    if !metadata.is_empty() {
        line(&mut out, "metadata:", metadata);
    }
    match p["messages"].as_array() {
        Some(m) if !m.is_empty() => {
            out.push_str("messages:\n");
            for l in crate::output::to_text(&p["messages"]).lines() {
                out.push_str(&format!("  {l}\n"));
            }
        }
        _ => out.push_str("messages:    none (a text proposal)\n"),
    }
    out
}

/// A vote's options: `yes`, or `yes=0.6,no=0.4`.
fn vote_options(v: &Value) -> String {
    let parts: Vec<(String, u128)> = v["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            (
                json_str(&o["option"]),
                json_str(&o["weight"]).parse().unwrap_or(0),
            )
        })
        .collect();
    match parts.as_slice() {
        [(name, w)] if *w == kiln_client::gov::WEIGHT_ONE => name.clone(),
        _ => parts
            .iter()
            .map(|(n, w)| format!("{n}={}", kiln_client::gov::format_weight(*w)))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Table of `kiln query gov votes ID`.
pub fn gov_votes_text(id: u64, v: &Value) -> String {
    let rows = v.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return format!("no votes on proposal {id}\n");
    }
    let mut out = format!("{:<44} {:<32} {:>8}\n", "VOTER", "OPTION", "HEIGHT");
    for r in &rows {
        out.push_str(&format!(
            "{:<44} {:<32} {:>8}\n",
            json_str(&r["voter"]),
            vote_options(r),
            json_u64(&r["height"]).unwrap_or(0),
        ));
    }
    out
}

/// `x.xx%` of `part / whole`.
fn percent(part: u128, whole: u128) -> String {
    if whole == 0 {
        return "-".into();
    }
    let bps = part.saturating_mul(10_000) / whole;
    format!("{}.{:02}%", bps / 100, bps % 100)
}

/// `kiln query gov tally ID`.
pub fn gov_tally_text(v: &Value) -> String {
    let t = &v["tally"];
    let n = |k: &str| -> u128 { json_str(&t[k]).parse().unwrap_or(0) };
    let voted = n("yes") + n("no") + n("abstain") + n("no_with_veto");
    let total = n("total_weight");
    let mut out = format!(
        "proposal {} ({}): {} tally\n",
        json_u64(&v["proposal_id"]).unwrap_or(0),
        json_str(&v["status"]),
        if v["final"].as_bool() == Some(true) {
            "final"
        } else {
            "current"
        }
    );
    for k in ["yes", "no", "abstain", "no_with_veto"] {
        out.push_str(&format!(
            "  {k:<13} {:>20}  {:>7} of the votes\n",
            n(k),
            percent(n(k), voted)
        ));
    }
    out.push_str(&format!(
        "  {:<13} {:>20}  {:>7} of the total weight {total}\n",
        "voted",
        voted,
        percent(voted, total)
    ));
    out.push_str(&format!(
        "{}: {}\n",
        if v["final"].as_bool() == Some(true) {
            "outcome"
        } else {
            "if voting ended now"
        },
        json_str(&v["would_be"])
    ));
    out
}

/// `kiln query gov upgrade`.
pub fn gov_upgrade_text(v: &Value) -> String {
    let mut out = match v["plan"].as_object() {
        None => "no upgrade planned\n".to_string(),
        Some(p) => {
            let info = json_str(&p["info"]);
            format!(
                "upgrade {:?} planned at height {}{}\n",
                json_str(&p["name"]),
                json_u64(&p["height"]).unwrap_or(0),
                if info.is_empty() {
                    String::new()
                } else {
                    format!(" (info: {info})")
                }
            )
        }
    };
    let applied = v["applied"].as_array().cloned().unwrap_or_default();
    if applied.is_empty() {
        out.push_str("no upgrade applied yet\n");
    }
    for a in &applied {
        out.push_str(&format!(
            "applied: {:?} at height {}\n",
            json_str(&a["name"]),
            json_u64(&a["height"]).unwrap_or(0)
        ));
    }
    out
}

/// `kiln query params MODULE`.
pub fn module_params_text(v: &Value) -> String {
    let module = json_str(&v["module"]);
    let mut out = format!(
        "{module} params in force (a proposal changes them with {}: kiln tx gov draft --kind params --module {module}):\n",
        json_str(&v["msg_type_url"])
    );
    for l in crate::output::to_text(&v["params"]).lines() {
        out.push_str(&format!("  {l}\n"));
    }
    if v["pending"].is_null() {
        out.push_str("no change scheduled\n");
    } else {
        out.push_str("scheduled for the next epoch start (passed by governance):\n");
        for l in crate::output::to_text(&v["pending"]).lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
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
    fn price_tables() {
        assert_eq!(ukiln_per_1k_tokens(100_000), "100");
        assert_eq!(ukiln_per_1k_tokens(98_010), "98.01");
        assert_eq!(ukiln_per_1k_tokens(7), "0.007");
        let rows = vec![
            json!({"model": "smollm2-135m", "price_pkiln": 98_010, "price_floor_pkiln": 50_000}),
        ];
        let t = prices_text(&rows);
        assert!(
            t.contains("smollm2-135m") && t.contains("98.01") && t.contains("50000"),
            "{t}"
        );
        assert_eq!(prices_text(&[]), "no models registered\n");
    }

    #[test]
    fn gov_tables() {
        let p = json!({"id": 3, "title": "Update the gov params", "status": "voting_period",
            "proposer": "kiln1p", "submit_height": 10, "deposit_end_height": 30,
            "voting_start_height": 10, "voting_end_height": 30, "total_deposit": "10000000",
            "final_tally": null, "reason": "", "summary": "s", "metadata": "", "deposits_burned": false,
            "deposits": [{"depositor": "kiln1p", "amount": "10000000"}],
            "messages": [{"@type": "/kiln.gov.v1.MsgUpdateParams", "authority": "kiln1g", "params": {"quorum_bps": 1}}]});
        let t = gov_proposals_text(&json!([p.clone()]), None);
        assert!(
            t.contains("voting until 30")
                && t.contains("10 KILN")
                && t.contains("MsgUpdateParams(gov)"),
            "{t}"
        );
        assert_eq!(gov_proposals_text(&json!([]), None), "no proposals\n");
        let t = gov_proposal_text(&p);
        assert!(
            t.contains("proposal 3: Update the gov params") && t.contains("quorum_bps: 1"),
            "{t}"
        );
        let votes = json!([{"voter": "kiln1v", "height": 12, "options": [{"option": "yes", "weight": "1000000000000000000"}]},
                           {"voter": "kiln1w", "height": 13, "options": [{"option": "yes", "weight": "600000000000000000"}, {"option": "no", "weight": "400000000000000000"}]}]);
        let t = gov_votes_text(3, &votes);
        assert!(t.lines().nth(1).unwrap().contains(" yes "), "{t}");
        assert!(t.contains("yes=0.6,no=0.4"), "{t}");
        let tally = json!({"proposal_id": 3, "status": "voting_period", "final": false, "would_be": "pass",
            "tally": {"yes": "300", "no": "100", "abstain": "0", "no_with_veto": "0", "total_weight": "1000"}});
        let t = gov_tally_text(&tally);
        assert!(
            t.contains("75.00% of the votes")
                && t.contains("40.00% of the total weight 1000")
                && t.contains("if voting ended now: pass"),
            "{t}"
        );
        let t = gov_upgrade_text(
            &json!({"plan": {"name": "v2", "height": 200, "info": ""}, "applied": []}),
        );
        assert_eq!(
            t,
            "upgrade \"v2\" planned at height 200\nno upgrade applied yet\n"
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
