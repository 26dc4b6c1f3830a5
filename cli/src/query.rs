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
