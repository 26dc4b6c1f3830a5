//! JSON queries: `/kiln.sprint.v1.Query/Weights` (every host with weight or
//! still signing, with its share and consensus power at the queried height;
//! the path keeps its pre-split name so existing clients keep working) and
//! `/kiln.staking.v1.Query/Params`, and the collateral queries:
//!
//! | path | data | answer |
//! |---|---|---|
//! | `/kiln.staking.v1.Query/HostPool` | host (`kiln1…` or `kilnvaloper1…`) | its pool: backing, shares, commission, self-bond, jail (null when free) |
//! | `/kiln.staking.v1.Query/Delegations` | delegator `kiln1…` | its delegations: host, shares, worth |
//! | `/kiln.staking.v1.Query/Unbonding` | delegator `kiln1…` | its unbonding entries |
//! | `/kiln.staking.v1.Query/Pool` | — | bonded and unbonding totals, the last settled epoch |

use std::collections::BTreeSet;

use kiln_framework::query::json;
use kiln_framework::{Address, StateReadExt, TxError, TxResult, BASE_DENOM};
use kiln_state::StateRead;
use serde_json::json as j;

use crate::keys;
use crate::pools::{PoolsExt, UnbondingEntry};
use crate::state::StakingExt;

pub const WEIGHTS_PATH: &str = "/kiln.sprint.v1.Query/Weights";
pub const PARAMS_PATH: &str = "/kiln.staking.v1.Query/Params";
/// The newest 100 misbehaviour records, newest first.
pub const MISBEHAVIOR_PATH: &str = "/kiln.staking.v1.Query/Misbehavior";
pub const HOST_POOL_PATH: &str = "/kiln.staking.v1.Query/HostPool";
pub const DELEGATIONS_PATH: &str = "/kiln.staking.v1.Query/Delegations";
pub const UNBONDING_PATH: &str = "/kiln.staking.v1.Query/Unbonding";
pub const POOL_PATH: &str = "/kiln.staking.v1.Query/Pool";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeightRow {
    pub host: Address,
    pub weight: u64,
    /// Share of total weight in basis points.
    pub share_bps: u64,
    /// CometBFT voting power at the queried height: the effective weight,
    /// except in the two blocks after a settle (CometBFT applies validator
    /// updates at `H + 2`), when the previous power still signs.
    pub consensus_power: u64,
}

/// `height` is the height of `state` (consensus power depends on it).
pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
    height: u64,
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        HOST_POOL_PATH => host_pool(state, data),
        DELEGATIONS_PATH => delegations(state, data),
        UNBONDING_PATH => unbonding(state, data),
        POOL_PATH => pool_totals(state),
        WEIGHTS_PATH => weight_rows(state, height).and_then(|rows| json(&rows)),
        PARAMS_PATH => state.staking_params().and_then(|p| json(&p)),
        MISBEHAVIOR_PATH => crate::misbehavior::recent(state, 100).and_then(|r| json(&r)),
        _ => return None,
    };
    Some(result)
}

pub fn weight_rows<S: StateRead + ?Sized>(state: &S, height: u64) -> TxResult<Vec<WeightRow>> {
    let w = state.weights_in_force()?;
    let powers = state.consensus_powers(height)?;
    let total: u128 = w.values().map(|v| u128::from(*v)).sum();
    // Hosts with weight, and hosts that still sign with their old power.
    let mut hosts: BTreeSet<Address> = w.keys().copied().collect();
    hosts.extend(powers.keys().copied());
    Ok(hosts
        .into_iter()
        .map(|a| {
            let v = w.get(&a).copied().unwrap_or(0);
            WeightRow {
                host: a,
                weight: v,
                share_bps: (u128::from(v) * 10_000)
                    .checked_div(total)
                    .and_then(|b| u64::try_from(b).ok())
                    .unwrap_or(0),
                consensus_power: powers.get(&a).copied().unwrap_or(0),
            }
        })
        .collect())
}

fn text(data: &[u8]) -> TxResult<String> {
    String::from_utf8(data.to_vec())
        .map(|s| s.trim().to_string())
        .map_err(|_| TxError::invalid_request("the address must be UTF-8 text"))
}

/// A host named by its account or operator address.
fn host_arg(data: &[u8]) -> TxResult<Address> {
    let t = text(data)?;
    Address::parse(&t)
        .or_else(|_| Address::parse_valoper(&t))
        .map_err(|e| TxError::invalid_address(e.to_string()))
}

fn host_pool<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let host = host_arg(data)?;
    if kiln_hosts::HostsExt::host(state, &host)?.is_none() {
        return Err(TxError::key_not_found(format!(
            "{host} is not a registered host"
        )));
    }
    let pool = state.pool(&host)?;
    let mut delegators = 0u64;
    state.for_each_under(&keys::delegations_of_host(&host), |_, _| {
        delegators += 1;
        Ok(())
    })?;
    json(&j!({
        "host": host,
        "operator_address": host.to_valoper(),
        "backing": pool.tokens.to_string(),
        "shares": pool.shares.to_string(),
        "self_bond": state.delegation_tokens(&host, &host)?.to_string(),
        "delegators": delegators,
        "commission_bps": pool.commission_bps,
        "jailed": crate::jail::JailExt::jail_record(state, &host)?,
        "denom": BASE_DENOM,
    }))
}

fn delegator_arg(data: &[u8]) -> TxResult<Address> {
    let t = text(data)?;
    Address::parse(&t).map_err(|e| TxError::invalid_address(e.to_string()))
}

fn delegations<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let delegator = delegator_arg(data)?;
    let mut hosts = Vec::new();
    state.for_each_under(&keys::delegator_of(&delegator), |suffix, _| {
        if let Some(h) = Address::from_bytes(suffix) {
            hosts.push(h);
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    for host in hosts {
        out.push(j!({
            "host": host,
            "operator_address": host.to_valoper(),
            "shares": state.delegation_shares(&host, &delegator)?.to_string(),
            "balance": state.delegation_tokens(&host, &delegator)?.to_string(),
        }));
    }
    json(&j!({"delegator": delegator, "delegations": out}))
}

fn unbonding<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let delegator = delegator_arg(data)?;
    let mut found = Vec::new();
    state.for_each_under(&keys::unbonding_by_of(&delegator), |suffix, _| {
        if let (Some(host), Some(seq)) = (
            suffix.get(..20).and_then(Address::from_bytes),
            suffix
                .get(20..28)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes),
        ) {
            found.push((host, seq));
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    for (host, seq) in found {
        if let Some(e) =
            state.get_value::<UnbondingEntry>(&keys::unbonding(&host, &delegator, seq))?
        {
            out.push(j!({
                "host": host,
                "operator_address": host.to_valoper(),
                "initial": e.initial.to_string(),
                "balance": e.balance.to_string(),
                "completes_at_epoch": e.completes_at_epoch,
                "created_height": e.created_height,
            }));
        }
    }
    json(&j!({"delegator": delegator, "entries": out}))
}

fn pool_totals<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<u8>> {
    let balance = |name: &str| -> TxResult<u128> {
        kiln_bank::state::balance_readonly(state, &Address::module(name), BASE_DENOM)
    };
    json(&j!({
        "bonded": balance(crate::pools::BONDED_ACCOUNT)?.to_string(),
        "unbonding": balance(crate::pools::UNBONDING_ACCOUNT)?.to_string(),
        "settled_epoch": state.settled_epoch()?,
        "denom": BASE_DENOM,
    }))
}
