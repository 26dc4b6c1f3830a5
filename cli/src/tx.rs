//! `kiln tx …`: the interactive flow around kiln-client's tx building and
//! signing — options, simulation, the confirmation, broadcast and the
//! spinner while waiting for inclusion.

use std::time::Duration;

use anyhow::{bail, Result};
use k256::ecdsa::SigningKey;
use kiln_client::amount::{display_coin, Coin, DecCoin};
use kiln_client::keyring::KeyInfo;
use kiln_client::msgs::describe_any;
use kiln_client::rpc::{json_str, json_u64, RpcClient};
use kiln_client::tx::{
    build_signed_tx, estimate_gas, fetch_account, nonzero, tx_result_json, FeeSettings, SignerData,
};
use kiln_client::Any;
use serde_json::{json, Value};

use crate::output::{self, OutputFormat};

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

impl TxOptions {
    /// How the fee is chosen, for [`estimate_gas`].
    pub fn fee_settings(&self) -> FeeSettings {
        FeeSettings {
            gas_adjustment: self.gas_adjustment,
            gas_prices: self.gas_prices.clone(),
            fees: self.fees.clone(),
        }
    }
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
    run_tx_with(rpc, ui, from, msgs, opts, &|_| vec![]).map(|_| ())
}

/// Fields a command adds to the printed result of its tx, read from the
/// node's `tx` result (events included), e.g. a new proposal's id.
pub type Annotate<'a> = &'a dyn Fn(&Value) -> Vec<(&'static str, Value)>;

/// Like [`run_tx`]; `annotate` adds fields to the printed result. Returns
/// the node's `tx` result once included (`None` for `--dry-run` and
/// `--generate-only`).
pub fn run_tx_with(
    rpc: &RpcClient,
    ui: &mut dyn TxUi,
    from: &KeyInfo,
    msgs: Vec<Any>,
    opts: &TxOptions,
    annotate: Annotate<'_>,
) -> Result<Option<Value>> {
    if opts.generate_only {
        let gas = opts.gas.unwrap_or(200_000);
        let fee = match &opts.fees {
            Some(f) => f.clone(),
            None => vec![opts.gas_prices.fee_for_gas(gas)?],
        };
        output::print_json(&unsigned_json(from, &msgs, &fee, gas, opts));
        return Ok(None);
    }
    let chain_id = match &opts.chain_id {
        Some(c) => c.clone(),
        None => rpc.chain_id()?,
    };
    let (account_number, sequence, chain_pubkey) = fetch_account(rpc, &from.address)?;
    if let Some(pk) = chain_pubkey {
        let expected = kiln_client::sign::pubkey_any(&from.pubkey);
        if expected.value != pk.value {
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
        None => estimate_gas(
            rpc,
            &key,
            &msgs,
            &opts.memo,
            opts.timeout_height,
            &opts.fee_settings(),
            &signer,
        )?,
    };
    let fee = match &opts.fees {
        Some(f) => f.clone(),
        None => vec![opts.gas_prices.fee_for_gas(gas)?],
    };
    let fee = nonzero(fee);

    if opts.dry_run {
        let v = json!({"dry_run": true, "chain_id": chain_id, "gas_estimate": gas, "fee": fee.iter().map(|c| c.to_string()).collect::<Vec<_>>(), "tx": unsigned_json(from, &msgs, &fee, gas, opts)});
        output::print(opts.output, &v);
        return Ok(None);
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
    let mut v = tx_result_json(&result);
    let code = json_u64(&v["code"]).unwrap_or(0);
    if code == 0 {
        for (k, val) in annotate(&result) {
            v[k] = val;
        }
    }
    output::print(opts.output, &v);
    if code != 0 {
        bail!(
            "transaction {hash} failed in block {} with code {code}: {}",
            json_str(&v["height"]),
            json_str(&v["raw_log"])
        );
    }
    Ok(Some(result))
}

/// Waits for inclusion ([`kiln_client::tx::wait_for_tx`]) with a spinner on
/// stderr when `spinner`.
pub fn wait_for_tx(rpc: &RpcClient, hash: &str, timeout: Duration, spinner: bool) -> Result<Value> {
    let pb = spinner.then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!(
            "waiting for tx {}… to be included",
            &hash[..hash.len().min(12)]
        ));
        pb.enable_steady_tick(Duration::from_millis(100));
        pb
    });
    let r = kiln_client::tx::wait_for_tx(rpc, hash, timeout);
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    r
}
