//! Transactions: message building, SIGN_MODE_DIRECT signing, simulation,
//! broadcast (`broadcast_tx_sync`) and waiting for inclusion.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use cosmrs::proto::cosmos::authz::v1beta1::{
    GenericAuthorization, Grant, MsgExec, MsgGrant, MsgRevoke,
};
use cosmrs::proto::cosmos::bank::v1beta1::MsgSend;
use cosmrs::proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmrs::proto::cosmos::tx::v1beta1::{SimulateRequest, SimulateResponse, Tx as ProtoTx};
use cosmrs::proto::Timestamp;
use cosmrs::tx::{Body, Fee, SignDoc, SignerInfo};
use cosmrs::Any;
use k256::ecdsa::SigningKey;
use prost::Message;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::amount::{display_coin, Coin, DecCoin};
use crate::keyring::{self, KeyInfo};
use crate::output::{self, OutputFormat};
use crate::rpc::{json_str, json_u64, RpcClient};

pub const MSG_SEND_URL: &str = "/cosmos.bank.v1beta1.MsgSend";
pub const MSG_GRANT_URL: &str = "/cosmos.authz.v1beta1.MsgGrant";
pub const MSG_REVOKE_URL: &str = "/cosmos.authz.v1beta1.MsgRevoke";
pub const MSG_EXEC_URL: &str = "/cosmos.authz.v1beta1.MsgExec";
pub const GENERIC_AUTHORIZATION_URL: &str = "/cosmos.authz.v1beta1.GenericAuthorization";
pub const SIMULATE_PATH: &str = "/cosmos.tx.v1beta1.Service/Simulate";

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

fn any_of<M: Message>(type_url: &str, m: &M) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: m.encode_to_vec(),
    }
}

fn proto_coins(coins: &[Coin]) -> Vec<ProtoCoin> {
    coins
        .iter()
        .map(|c| ProtoCoin {
            denom: c.denom.clone(),
            amount: c.amount.to_string(),
        })
        .collect()
}

/// Checks a `kiln1…` address, with a message naming the argument.
pub fn check_address(what: &str, addr: &str) -> Result<()> {
    keyring::parse_address(addr).map_err(|e| anyhow!("{what}: {e}"))?;
    Ok(())
}

/// `/cosmos.bank.v1beta1.MsgSend`.
pub fn msg_send(from: &str, to: &str, amount: &[Coin]) -> Any {
    any_of(
        MSG_SEND_URL,
        &MsgSend {
            from_address: from.into(),
            to_address: to.into(),
            amount: proto_coins(amount),
        },
    )
}

/// One `MsgGrant` with a `GenericAuthorization` per ML-ops type URL.
pub fn msgs_grant_ml_ops(granter: &str, grantee: &str, expiration: Option<Timestamp>) -> Vec<Any> {
    kiln_messages::ml_ops_type_urls()
        .iter()
        .map(|url| {
            let auth = any_of(
                GENERIC_AUTHORIZATION_URL,
                &GenericAuthorization {
                    msg: url.to_string(),
                },
            );
            any_of(
                MSG_GRANT_URL,
                &MsgGrant {
                    granter: granter.into(),
                    grantee: grantee.into(),
                    grant: Some(Grant {
                        authorization: Some(auth),
                        expiration,
                    }),
                },
            )
        })
        .collect()
}

/// One `MsgRevoke` per ML-ops type URL.
pub fn msgs_revoke_ml_ops(granter: &str, grantee: &str) -> Vec<Any> {
    kiln_messages::ml_ops_type_urls()
        .iter()
        .map(|url| {
            any_of(
                MSG_REVOKE_URL,
                &MsgRevoke {
                    granter: granter.into(),
                    grantee: grantee.into(),
                    msg_type_url: url.to_string(),
                },
            )
        })
        .collect()
}

/// `/cosmos.authz.v1beta1.MsgExec` wrapping `msgs`.
pub fn msg_exec(grantee: &str, msgs: Vec<Any>) -> Any {
    any_of(
        MSG_EXEC_URL,
        &MsgExec {
            grantee: grantee.into(),
            msgs,
        },
    )
}

/// Parses the messages of `kiln tx authz exec MSGS.json`: a JSON list (or an
/// object with a `messages` list, or a single message object) of
/// `{"@type":"/cosmos.bank.v1beta1.MsgSend","from_address":…,"to_address":…,"amount":[{"denom":…,"amount":…}]}`
/// or `{"@type": URL, "value_base64": "<protobuf bytes>"}`.
pub fn parse_exec_messages(json_text: &str) -> Result<Vec<Any>> {
    let v: Value = serde_json::from_str(json_text).context("messages file is not valid JSON")?;
    let list = match &v {
        Value::Array(a) => a.clone(),
        Value::Object(o) if o.contains_key("messages") => o["messages"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("`messages` must be a list"))?,
        Value::Object(_) => vec![v.clone()],
        _ => bail!("expected a JSON list of messages"),
    };
    if list.is_empty() {
        bail!("the messages list is empty");
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| parse_json_message(m).with_context(|| format!("message #{}", i + 1)))
        .collect()
}

fn parse_json_message(m: &Value) -> Result<Any> {
    let obj = m
        .as_object()
        .ok_or_else(|| anyhow!("a message must be a JSON object"))?;
    let type_url = obj
        .get("@type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| anyhow!("missing \"@type\" (e.g. \"{MSG_SEND_URL}\")"))?;
    if !type_url.starts_with('/') {
        bail!("\"@type\" must start with '/', got '{type_url}'");
    }
    if let Some(b64) = obj.get("value_base64") {
        let b64 = b64
            .as_str()
            .ok_or_else(|| anyhow!("\"value_base64\" must be a string"))?;
        let value = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("\"value_base64\" is not valid base64")?;
        return Ok(Any {
            type_url: type_url.into(),
            value,
        });
    }
    match type_url {
        MSG_SEND_URL => {
            let s = |k: &str| -> Result<String> {
                obj.get(k).and_then(|v| v.as_str()).map(String::from).ok_or_else(|| anyhow!("missing \"{k}\""))
            };
            let from = s("from_address")?;
            let to = s("to_address")?;
            check_address("from_address", &from)?;
            check_address("to_address", &to)?;
            let amount = obj
                .get("amount")
                .and_then(|a| a.as_array())
                .ok_or_else(|| anyhow!("missing \"amount\" list"))?;
            let mut coins = vec![];
            for c in amount {
                let denom = c["denom"].as_str().ok_or_else(|| anyhow!("coin without \"denom\""))?;
                let amt = match &c["amount"] {
                    Value::String(s) => s.parse::<u128>().ok(),
                    Value::Number(n) => n.as_u64().map(u128::from),
                    _ => None,
                }
                .ok_or_else(|| anyhow!("coin amount must be a non-negative integer"))?;
                if !crate::amount::validate_denom(denom) {
                    bail!("invalid denom '{denom}'");
                }
                coins.push(Coin { denom: denom.into(), amount: amt });
            }
            Ok(msg_send(&from, &to, &coins))
        }
        other => bail!(
            "no JSON form known for '{other}': give its protobuf encoding as {{\"@type\": \"{other}\", \"value_base64\": \"…\"}}"
        ),
    }
}

fn coins_json(coins: &[ProtoCoin]) -> Value {
    Value::Array(
        coins
            .iter()
            .map(|c| json!({"denom": c.denom, "amount": c.amount}))
            .collect(),
    )
}

fn timestamp_rfc3339(ts: &Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts.seconds)
        .ok()
        .and_then(|t| t.replace_nanosecond(ts.nanos.max(0) as u32).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{}s", ts.seconds))
}

/// Cosmos-style JSON of a message (known types decoded, others as base64).
pub fn describe_any(any: &Any) -> Value {
    let raw = || json!({"@type": any.type_url, "value_base64": base64::engine::general_purpose::STANDARD.encode(&any.value)});
    match any.type_url.as_str() {
        MSG_SEND_URL => match MsgSend::decode(any.value.as_slice()) {
            Ok(m) => {
                json!({"@type": any.type_url, "from_address": m.from_address, "to_address": m.to_address, "amount": coins_json(&m.amount)})
            }
            Err(_) => raw(),
        },
        MSG_GRANT_URL => match MsgGrant::decode(any.value.as_slice()) {
            Ok(m) => {
                let grant = m.grant.unwrap_or_default();
                let auth = grant
                    .authorization
                    .map(|a| describe_any(&a))
                    .unwrap_or(Value::Null);
                json!({"@type": any.type_url, "granter": m.granter, "grantee": m.grantee, "grant": {
                    "authorization": auth,
                    "expiration": grant.expiration.as_ref().map(timestamp_rfc3339),
                }})
            }
            Err(_) => raw(),
        },
        GENERIC_AUTHORIZATION_URL => match GenericAuthorization::decode(any.value.as_slice()) {
            Ok(m) => json!({"@type": any.type_url, "msg": m.msg}),
            Err(_) => raw(),
        },
        MSG_REVOKE_URL => match MsgRevoke::decode(any.value.as_slice()) {
            Ok(m) => {
                json!({"@type": any.type_url, "granter": m.granter, "grantee": m.grantee, "msg_type_url": m.msg_type_url})
            }
            Err(_) => raw(),
        },
        MSG_EXEC_URL => match MsgExec::decode(any.value.as_slice()) {
            Ok(m) => {
                json!({"@type": any.type_url, "grantee": m.grantee, "msgs": m.msgs.iter().map(describe_any).collect::<Vec<_>>()})
            }
            Err(_) => raw(),
        },
        _ => crate::host::describe(any).unwrap_or_else(raw),
    }
}

/// Parses `--expiration`: RFC 3339 (`2026-01-31T00:00:00Z`), relative
/// (`+30d`, `+12h`, `+90m`, `+3600s`, `+2w`) or `never`.
pub fn parse_expiration(s: &str, now_unix: i64) -> Result<Option<Timestamp>> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("never") || s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let ts = if let Some(rel) = s.strip_prefix('+') {
        let (num, unit) =
            rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num
            .parse()
            .map_err(|_| anyhow!("invalid relative expiration '{s}' (e.g. +30d)"))?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" | "" => 86_400,
            "w" => 7 * 86_400,
            _ => bail!("invalid unit in expiration '{s}': use s, m, h, d or w"),
        };
        let secs = n
            .checked_mul(mult)
            .and_then(|d| d.checked_add(now_unix))
            .ok_or_else(|| anyhow!("expiration '{s}' is too far away"))?;
        Timestamp {
            seconds: secs,
            nanos: 0,
        }
    } else {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| anyhow!("invalid expiration '{s}': {e} (use RFC 3339 like 2026-12-31T00:00:00Z, or +30d)"))?;
        Timestamp {
            seconds: t.unix_timestamp(),
            nanos: t.nanosecond() as i32,
        }
    };
    if ts.seconds <= now_unix {
        bail!("expiration '{s}' is in the past");
    }
    Ok(Some(ts))
}

// ---------------------------------------------------------------------------
// Building and signing
// ---------------------------------------------------------------------------

/// Account number, sequence and chain the signature binds to.
#[derive(Clone, Debug)]
pub struct SignerData {
    pub chain_id: String,
    pub account_number: u64,
    pub sequence: u64,
}

/// A signed transaction and the pieces it was made of.
#[derive(Clone, Debug)]
pub struct SignedTx {
    pub body_bytes: Vec<u8>,
    pub auth_info_bytes: Vec<u8>,
    pub sign_doc_bytes: Vec<u8>,
    /// 64-byte compact (r ‖ s), low-S.
    pub signature: Vec<u8>,
    /// `TxRaw` bytes, ready to broadcast.
    pub tx_bytes: Vec<u8>,
}

impl SignedTx {
    /// CometBFT tx hash (upper-case hex SHA-256 of the tx bytes).
    pub fn hash(&self) -> String {
        tx_hash(&self.tx_bytes)
    }
}

pub fn tx_hash(tx_bytes: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(tx_bytes))
}

/// Builds and signs a tx with SIGN_MODE_DIRECT over
/// `SignDoc{body_bytes, auth_info_bytes, chain_id, account_number}`.
pub fn build_signed_tx(
    key: &SigningKey,
    msgs: Vec<Any>,
    memo: &str,
    timeout_height: u64,
    fee_amount: &[Coin],
    gas_limit: u64,
    signer: &SignerData,
) -> Result<SignedTx> {
    let timeout = cosmrs::tendermint::block::Height::try_from(timeout_height)
        .map_err(|e| anyhow!("invalid timeout height {timeout_height}: {e}"))?;
    let body = Body::new(msgs, memo, timeout);
    let mut fee_coins = vec![];
    for c in fee_amount {
        fee_coins.push(cosmrs::Coin {
            denom: c
                .denom
                .parse()
                .map_err(|e| anyhow!("invalid fee denom '{}': {e}", c.denom))?,
            amount: c.amount,
        });
    }
    let fee = Fee {
        amount: fee_coins,
        gas_limit,
        payer: None,
        granter: None,
    };
    let pubkey = cosmrs::crypto::PublicKey::from(key.verifying_key());
    let auth_info = SignerInfo::single_direct(Some(pubkey), signer.sequence).auth_info(fee);
    let chain_id: cosmrs::tendermint::chain::Id = signer
        .chain_id
        .parse()
        .map_err(|e| anyhow!("invalid chain id '{}': {e}", signer.chain_id))?;
    let sign_doc = SignDoc::new(&body, &auth_info, &chain_id, signer.account_number)
        .map_err(|e| anyhow!("cannot encode sign doc: {e}"))?;
    let sign_doc_bytes = sign_doc
        .clone()
        .into_bytes()
        .map_err(|e| anyhow!("cannot encode sign doc: {e}"))?;
    let sig: k256::ecdsa::Signature = k256::ecdsa::signature::Signer::sign(key, &sign_doc_bytes);
    // k256 already produces low-S signatures; normalise anyway (SPEC §2 rejects high-S).
    let sig = sig.normalize_s().unwrap_or(sig);
    let signature = sig.to_bytes().to_vec();
    let raw = cosmrs::proto::cosmos::tx::v1beta1::TxRaw {
        body_bytes: sign_doc.body_bytes.clone(),
        auth_info_bytes: sign_doc.auth_info_bytes.clone(),
        signatures: vec![signature.clone()],
    };
    Ok(SignedTx {
        body_bytes: sign_doc.body_bytes,
        auth_info_bytes: sign_doc.auth_info_bytes,
        sign_doc_bytes,
        signature,
        tx_bytes: raw.encode_to_vec(),
    })
}

// ---------------------------------------------------------------------------
// Network flow
// ---------------------------------------------------------------------------

/// Options shared by every `kiln tx …` command.
#[derive(Clone, Debug)]
pub struct TxOptions {
    pub chain_id: Option<String>,
    /// Fixed gas limit (skips simulation).
    pub gas: Option<u64>,
    pub gas_adjustment: f64,
    pub gas_prices: DecCoin,
    /// Fixed fee (overrides gas × gas price).
    pub fees: Option<Vec<Coin>>,
    pub memo: String,
    pub timeout_height: u64,
    pub yes: bool,
    /// How long to wait for inclusion.
    pub wait_timeout: Duration,
    /// Simulate and show gas/fee, then stop.
    pub dry_run: bool,
    /// Print the unsigned tx and stop (no node, no passphrase).
    pub generate_only: bool,
    pub output: OutputFormat,
}

/// What a tx command needs from the user interface.
pub trait TxUi {
    /// Returns the signing key of the sender (asks for the passphrase if needed).
    fn signing_key(&mut self, key: &KeyInfo) -> Result<SigningKey>;
    /// Shows `summary` and asks for confirmation.
    fn confirm(&mut self, summary: &str) -> Result<bool>;
}

/// Account number and sequence of `address`, with a clear error when the
/// account does not exist yet.
pub fn fetch_account(rpc: &RpcClient, address: &str) -> Result<(u64, u64, Option<Any>)> {
    match crate::query::account(rpc, address, 0)? {
        Some(acc) => Ok((acc.account_number, acc.sequence, acc.pub_key)),
        None => bail!("account {address} not found on chain: it has never received funds"),
    }
}

/// Simulates `tx_bytes` and returns the gas used.
pub fn simulate(rpc: &RpcClient, tx_bytes: &[u8]) -> Result<u64> {
    #[allow(deprecated)]
    let req = SimulateRequest {
        tx: None,
        tx_bytes: tx_bytes.to_vec(),
    };
    let res = rpc.abci_query(SIMULATE_PATH, &req.encode_to_vec(), 0)?;
    if res.code != 0 {
        bail!(
            "simulation failed (code {}{}): {}",
            res.code,
            if res.codespace.is_empty() {
                String::new()
            } else {
                format!(", codespace {}", res.codespace)
            },
            res.log
        );
    }
    let sim = SimulateResponse::decode(res.value.as_slice())
        .context("cannot decode the SimulateResponse")?;
    let gas = sim.gas_info.map(|g| g.gas_used).unwrap_or(0);
    Ok(gas)
}

fn nonzero(coins: Vec<Coin>) -> Vec<Coin> {
    coins.into_iter().filter(|c| c.amount > 0).collect()
}

/// Simulates the tx (gas limit 0 = "unlimited" in simulation, as cosmjs does)
/// and returns `ceil(gas_used × gas_adjustment)`. Paying a fee costs gas too,
/// so unless `--fees` fixed the fee, a second simulation carries the fee that
/// the first estimate implies and the larger of both results is used.
pub fn estimate_gas(
    rpc: &RpcClient,
    key: &SigningKey,
    msgs: &[Any],
    opts: &TxOptions,
    signer: &SignerData,
) -> Result<u64> {
    if !(opts.gas_adjustment.is_finite() && opts.gas_adjustment > 0.0) {
        bail!("--gas-adjustment must be a positive number");
    }
    let adjust = |used: u64| ((used as f64) * opts.gas_adjustment).ceil() as u64;
    let first_fee = nonzero(opts.fees.clone().unwrap_or_default());
    let sim = build_signed_tx(
        key,
        msgs.to_vec(),
        &opts.memo,
        opts.timeout_height,
        &first_fee,
        0,
        signer,
    )?;
    let mut used = simulate(rpc, &sim.tx_bytes)?;
    if opts.fees.is_none() {
        let fee = nonzero(vec![opts.gas_prices.fee_for_gas(adjust(used))?]);
        if !fee.is_empty() {
            let sim = build_signed_tx(
                key,
                msgs.to_vec(),
                &opts.memo,
                opts.timeout_height,
                &fee,
                0,
                signer,
            )?;
            used = used.max(simulate(rpc, &sim.tx_bytes)?);
        }
    }
    Ok(adjust(used))
}

fn summary_text(
    from: &KeyInfo,
    msgs: &[Any],
    fee: &[Coin],
    gas: u64,
    opts: &TxOptions,
    chain_id: &str,
) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "chain:   {chain_id}\nsigner:  {} ({})\n",
        from.name, from.address
    ));
    s.push_str("messages:\n");
    let msgs_json = Value::Array(msgs.iter().map(describe_any).collect());
    for line in output::to_text(&msgs_json).lines() {
        s.push_str(&format!("  {line}\n"));
    }
    let fee_s = if fee.is_empty() {
        "0".to_string()
    } else {
        fee.iter().map(display_coin).collect::<Vec<_>>().join(", ")
    };
    s.push_str(&format!("fee:     {fee_s}\ngas:     {gas}\n"));
    if !opts.memo.is_empty() {
        s.push_str(&format!("memo:    {}\n", opts.memo));
    }
    if opts.timeout_height > 0 {
        s.push_str(&format!("timeout height: {}\n", opts.timeout_height));
    }
    s
}

fn unsigned_json(from: &KeyInfo, msgs: &[Any], fee: &[Coin], gas: u64, opts: &TxOptions) -> Value {
    json!({
        "body": {
            "messages": msgs.iter().map(describe_any).collect::<Vec<_>>(),
            "memo": opts.memo,
            "timeout_height": opts.timeout_height.to_string(),
        },
        "auth_info": {
            "signer": from.address,
            "fee": {"amount": fee.iter().map(|c| json!({"denom": c.denom, "amount": c.amount.to_string()})).collect::<Vec<_>>(), "gas_limit": gas.to_string()},
        },
    })
}

/// Builds, simulates, confirms, signs, broadcasts and waits for a tx from `from`.
pub fn run_tx(
    rpc: &RpcClient,
    ui: &mut dyn TxUi,
    from: &KeyInfo,
    msgs: Vec<Any>,
    opts: &TxOptions,
) -> Result<()> {
    if opts.generate_only {
        let gas = opts.gas.unwrap_or(200_000);
        let fee = match &opts.fees {
            Some(f) => f.clone(),
            None => vec![opts.gas_prices.fee_for_gas(gas)?],
        };
        output::print_json(&unsigned_json(from, &msgs, &fee, gas, opts));
        return Ok(());
    }
    let chain_id = match &opts.chain_id {
        Some(c) => c.clone(),
        None => rpc.chain_id()?,
    };
    let (account_number, sequence, chain_pubkey) = fetch_account(rpc, &from.address)?;
    if let Some(pk) = chain_pubkey {
        let expected = cosmrs::crypto::PublicKey::from_json(&from.pubkey_json().to_string())
            .ok()
            .and_then(|p| p.to_any().ok());
        if expected
            .as_ref()
            .map(|e| e.value != pk.value)
            .unwrap_or(false)
        {
            bail!(
                "the public key of account {} on chain differs from key '{}'",
                from.address,
                from.name
            );
        }
    }
    let key = ui.signing_key(from)?;
    let signer = SignerData {
        chain_id: chain_id.clone(),
        account_number,
        sequence,
    };

    let gas = match opts.gas {
        Some(g) => g,
        None => estimate_gas(rpc, &key, &msgs, opts, &signer)?,
    };
    let fee = match &opts.fees {
        Some(f) => f.clone(),
        None => vec![opts.gas_prices.fee_for_gas(gas)?],
    };
    let fee = nonzero(fee);

    if opts.dry_run {
        let v = json!({"dry_run": true, "chain_id": chain_id, "gas_estimate": gas, "fee": fee.iter().map(|c| c.to_string()).collect::<Vec<_>>(), "tx": unsigned_json(from, &msgs, &fee, gas, opts)});
        output::print(opts.output, &v);
        return Ok(());
    }

    if !opts.yes && !ui.confirm(&summary_text(from, &msgs, &fee, gas, opts, &chain_id))? {
        bail!("transaction not confirmed: nothing was broadcast");
    }

    let tx = build_signed_tx(
        &key,
        msgs,
        &opts.memo,
        opts.timeout_height,
        &fee,
        gas,
        &signer,
    )?;
    let hash = tx.hash();
    let res = rpc.broadcast_tx_sync(&tx.tx_bytes)?;
    if res.code != 0 {
        let v = json!({"txhash": hash, "stage": "check_tx", "code": res.code, "codespace": res.codespace, "raw_log": res.log});
        output::print(opts.output, &v);
        bail!(
            "transaction rejected by CheckTx with code {} ({}): {}",
            res.code,
            res.codespace,
            res.log
        );
    }
    let result = wait_for_tx(rpc, &hash, opts.wait_timeout, !opts.output.is_json())?;
    let v = tx_result_json(&result);
    output::print(opts.output, &v);
    let code = json_u64(&v["code"]).unwrap_or(0);
    if code != 0 {
        bail!(
            "transaction {hash} failed in block {} with code {code}: {}",
            json_str(&v["height"]),
            json_str(&v["raw_log"])
        );
    }
    Ok(())
}

/// Polls RPC `tx` until the tx is in a block or `timeout` passes.
pub fn wait_for_tx(rpc: &RpcClient, hash: &str, timeout: Duration, spinner: bool) -> Result<Value> {
    let pb = if spinner {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!(
            "waiting for tx {}… to be included",
            &hash[..hash.len().min(12)]
        ));
        pb.enable_steady_tick(Duration::from_millis(100));
        Some(pb)
    } else {
        None
    };
    let start = Instant::now();
    let r = loop {
        match rpc.tx(hash) {
            Ok(Some(v)) => break Ok(v),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if start.elapsed() >= timeout {
            break Err(anyhow!(
                "transaction {hash} was accepted into the mempool but not included within {}s; check later with `kiln query tx {hash}`",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    r
}

/// Summary JSON of an RPC `tx` result.
pub fn tx_result_json(res: &Value) -> Value {
    let r = &res["tx_result"];
    json!({
        "txhash": json_str(&res["hash"]).to_uppercase(),
        "height": json_str(&res["height"]),
        "code": json_u64(&r["code"]).unwrap_or(0),
        "codespace": json_str(&r["codespace"]),
        "raw_log": json_str(&r["log"]),
        "gas_wanted": json_str(&r["gas_wanted"]),
        "gas_used": json_str(&r["gas_used"]),
    })
}

/// Decodes a `Tx` (as returned base64 by RPC `tx`) into messages/memo/fee JSON.
pub fn decode_tx_json(tx_bytes: &[u8]) -> Result<Value> {
    let tx = ProtoTx::decode(tx_bytes).context("cannot decode the transaction")?;
    let body = tx.body.unwrap_or_default();
    let auth = tx.auth_info.unwrap_or_default();
    let fee = auth.fee.unwrap_or_default();
    Ok(json!({
        "body": {
            "messages": body.messages.iter().map(describe_any).collect::<Vec<_>>(),
            "memo": body.memo,
            "timeout_height": body.timeout_height.to_string(),
        },
        "auth_info": {
            "signer_infos": auth.signer_infos.iter().map(|s| json!({
                "public_key": s.public_key.as_ref().map(|pk| {
                    let key = cosmrs::proto::cosmos::crypto::secp256k1::PubKey::decode(pk.value.as_slice()).map(|k| base64::engine::general_purpose::STANDARD.encode(k.key)).unwrap_or_default();
                    json!({"@type": pk.type_url, "key": key})
                }),
                "sequence": s.sequence.to_string(),
            })).collect::<Vec<_>>(),
            "fee": {"amount": coins_json(&fee.amount), "gas_limit": fee.gas_limit.to_string(), "payer": fee.payer, "granter": fee.granter},
        },
        "signatures": tx.signatures.iter().map(|s| base64::engine::general_purpose::STANDARD.encode(s)).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::signature::Verifier;

    const MNEMONIC: &str =
        "special sign fit simple patrol salute grocery chicken wheat radar tonight ceiling";

    fn key() -> SigningKey {
        keyring::derive_signing_key(MNEMONIC).unwrap()
    }

    #[test]
    fn signed_tx_verifies_and_is_low_s() {
        let k = key();
        let from = keyring::address_from_mnemonic(MNEMONIC).unwrap();
        let to = keyring::bech32_encode("kiln", &[7u8; 20]);
        let signer = SignerData {
            chain_id: "kiln-devnet".into(),
            account_number: 7,
            sequence: 3,
        };
        let fee = vec![Coin {
            denom: "ukiln".into(),
            amount: 5000,
        }];
        let coins = vec![Coin {
            denom: "ukiln".into(),
            amount: 1_500_000,
        }];
        let tx = build_signed_tx(
            &k,
            vec![msg_send(&from, &to, &coins)],
            "hi",
            99,
            &fee,
            200_000,
            &signer,
        )
        .unwrap();

        // The SignDoc is exactly {body_bytes, auth_info_bytes, chain_id, account_number}.
        let sd = cosmrs::proto::cosmos::tx::v1beta1::SignDoc::decode(tx.sign_doc_bytes.as_slice())
            .unwrap();
        assert_eq!(sd.body_bytes, tx.body_bytes);
        assert_eq!(sd.auth_info_bytes, tx.auth_info_bytes);
        assert_eq!(sd.chain_id, "kiln-devnet");
        assert_eq!(sd.account_number, 7);

        // Signature verifies over the SignDoc bytes and is low-S.
        let sig = k256::ecdsa::Signature::from_slice(&tx.signature).unwrap();
        assert!(sig.normalize_s().is_none(), "signature must be low-S");
        k.verifying_key().verify(&tx.sign_doc_bytes, &sig).unwrap();
        // ...and not over anything else (e.g. another chain id).
        let other = build_signed_tx(
            &k,
            vec![msg_send(&from, &to, &coins)],
            "hi",
            99,
            &fee,
            200_000,
            &SignerData {
                chain_id: "other".into(),
                ..signer.clone()
            },
        )
        .unwrap();
        assert!(k
            .verifying_key()
            .verify(&other.sign_doc_bytes, &sig)
            .is_err());

        // TxRaw round trip and body/auth contents.
        let raw =
            cosmrs::proto::cosmos::tx::v1beta1::TxRaw::decode(tx.tx_bytes.as_slice()).unwrap();
        assert_eq!(raw.body_bytes, tx.body_bytes);
        assert_eq!(raw.signatures, vec![tx.signature.clone()]);
        let body =
            cosmrs::proto::cosmos::tx::v1beta1::TxBody::decode(raw.body_bytes.as_slice()).unwrap();
        assert_eq!(body.memo, "hi");
        assert_eq!(body.timeout_height, 99);
        assert_eq!(body.messages[0].type_url, MSG_SEND_URL);
        let send = MsgSend::decode(body.messages[0].value.as_slice()).unwrap();
        assert_eq!(send.from_address, from);
        assert_eq!(
            send.amount,
            vec![ProtoCoin {
                denom: "ukiln".into(),
                amount: "1500000".into()
            }]
        );
        let auth =
            cosmrs::proto::cosmos::tx::v1beta1::AuthInfo::decode(raw.auth_info_bytes.as_slice())
                .unwrap();
        assert_eq!(auth.signer_infos[0].sequence, 3);
        assert_eq!(
            auth.signer_infos[0].public_key.as_ref().unwrap().type_url,
            keyring::SECP256K1_PUBKEY_TYPE_URL
        );
        let pk = cosmrs::proto::cosmos::crypto::secp256k1::PubKey::decode(
            auth.signer_infos[0]
                .public_key
                .as_ref()
                .unwrap()
                .value
                .as_slice(),
        )
        .unwrap();
        assert_eq!(pk.key, keyring::compressed_pubkey(&k));
        let mode = auth.signer_infos[0].mode_info.clone().unwrap().sum.unwrap();
        match mode {
            cosmrs::proto::cosmos::tx::v1beta1::mode_info::Sum::Single(s) => assert_eq!(s.mode, 1), // DIRECT
            _ => panic!("expected single mode"),
        }
        let f = auth.fee.unwrap();
        assert_eq!(f.gas_limit, 200_000);
        assert_eq!(
            f.amount,
            vec![ProtoCoin {
                denom: "ukiln".into(),
                amount: "5000".into()
            }]
        );
        assert_eq!(tx.hash().len(), 64);

        let decoded = decode_tx_json(&tx.tx_bytes).unwrap();
        assert_eq!(
            decoded["body"]["messages"][0]["amount"][0]["amount"],
            "1500000"
        );
    }

    #[test]
    fn many_signatures_are_all_low_s() {
        let k = key();
        let signer = SignerData {
            chain_id: "kiln-devnet".into(),
            account_number: 0,
            sequence: 0,
        };
        for i in 0..64u64 {
            let tx = build_signed_tx(&k, vec![], &format!("m{i}"), 0, &[], i, &signer).unwrap();
            let sig = k256::ecdsa::Signature::from_slice(&tx.signature).unwrap();
            assert!(sig.normalize_s().is_none());
            k.verifying_key().verify(&tx.sign_doc_bytes, &sig).unwrap();
        }
    }

    #[test]
    fn grant_and_revoke_cover_exactly_the_ml_ops_urls() {
        let g = keyring::bech32_encode("kiln", &[1u8; 20]);
        let h = keyring::bech32_encode("kiln", &[2u8; 20]);
        let exp = Timestamp {
            seconds: 2_000_000_000,
            nanos: 0,
        };
        let grants = msgs_grant_ml_ops(&g, &h, Some(exp));
        assert_eq!(grants.len(), kiln_messages::ml_ops_type_urls().len());
        for (any, url) in grants.iter().zip(kiln_messages::ml_ops_type_urls()) {
            assert_eq!(any.type_url, MSG_GRANT_URL);
            let m = MsgGrant::decode(any.value.as_slice()).unwrap();
            assert_eq!(
                (m.granter.as_str(), m.grantee.as_str()),
                (g.as_str(), h.as_str())
            );
            let grant = m.grant.unwrap();
            assert_eq!(grant.expiration, Some(exp));
            let a = grant.authorization.unwrap();
            assert_eq!(a.type_url, GENERIC_AUTHORIZATION_URL);
            assert_eq!(
                GenericAuthorization::decode(a.value.as_slice())
                    .unwrap()
                    .msg,
                *url
            );
        }
        let revokes = msgs_revoke_ml_ops(&g, &h);
        let urls: Vec<String> = revokes
            .iter()
            .map(|a| MsgRevoke::decode(a.value.as_slice()).unwrap().msg_type_url)
            .collect();
        assert_eq!(urls, kiln_messages::ml_ops_type_urls());
        assert!(!urls.iter().any(|u| u.contains("bank")));
    }

    #[test]
    fn exec_messages_json() {
        let a = keyring::bech32_encode("kiln", &[1u8; 20]);
        let b = keyring::bech32_encode("kiln", &[2u8; 20]);
        let text = format!(
            r#"[{{"@type":"/cosmos.bank.v1beta1.MsgSend","from_address":"{a}","to_address":"{b}","amount":[{{"denom":"ukiln","amount":"5"}}]}},
               {{"@type":"/kiln.sprint.v1.MsgSprintCommit","value_base64":"CgE="}}]"#
        );
        let msgs = parse_exec_messages(&text).unwrap();
        assert_eq!(msgs.len(), 2);
        let send = MsgSend::decode(msgs[0].value.as_slice()).unwrap();
        assert_eq!(send.to_address, b);
        assert_eq!(msgs[1].type_url, "/kiln.sprint.v1.MsgSprintCommit");
        assert_eq!(msgs[1].value, vec![0x0a, 0x01]);
        let exec = msg_exec(&b, msgs);
        let d = describe_any(&exec);
        assert_eq!(d["msgs"][0]["amount"][0]["amount"], "5");
        assert_eq!(d["msgs"][1]["value_base64"], "CgE=");

        assert!(parse_exec_messages("[]").is_err());
        assert!(parse_exec_messages("nope").is_err());
        assert!(parse_exec_messages(r#"[{"@type":"/x.Y"}]"#)
            .unwrap_err()
            .to_string()
            .contains("message #1"));
        let bad_addr = format!(
            r#"[{{"@type":"/cosmos.bank.v1beta1.MsgSend","from_address":"cosmos1xyz","to_address":"{b}","amount":[]}}]"#
        );
        assert!(parse_exec_messages(&bad_addr).is_err());
    }

    #[test]
    fn expirations() {
        let now = 1_700_000_000;
        assert_eq!(
            parse_expiration("+30d", now).unwrap().unwrap().seconds,
            now + 30 * 86_400
        );
        assert_eq!(
            parse_expiration("+2h", now).unwrap().unwrap().seconds,
            now + 7200
        );
        assert_eq!(parse_expiration("never", now).unwrap(), None);
        let t = parse_expiration("2030-01-01T00:00:00Z", now)
            .unwrap()
            .unwrap();
        assert_eq!(t.seconds, 1_893_456_000);
        assert_eq!(timestamp_rfc3339(&t), "2030-01-01T00:00:00Z");
        assert!(parse_expiration("2020-01-01T00:00:00Z", now).is_err());
        assert!(parse_expiration("+3x", now).is_err());
        assert!(parse_expiration("tomorrow", now).is_err());
    }
}
