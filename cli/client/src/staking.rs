//! Staking for the CLI: builders of the bond, delegation and commission
//! messages (`kiln tx staking …`) and the collateral queries (`kiln query
//! staking …`). Hosts are named by account (`kiln1…`) or operator address
//! (`kilnvaloper1…`), or by a key name the caller resolved.

use anyhow::{anyhow, bail, Result};
use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::staking::v1beta1::{MsgBeginRedelegate, MsgDelegate, MsgUndelegate};
use cosmos_sdk_proto::Any;
pub use kiln_framework::Address;
use kiln_framework::{MsgKind, BASE_DENOM};
use kiln_staking::msgs::{
    BeginRedelegate, Bond, Delegate, MsgBond, MsgSetCommission, MsgUnbond, MsgUnjail,
    SetCommission, Unbond, Undelegate, Unjail,
};
use serde_json::Value;

use crate::amount::Coin;
use crate::msgs::any_of;
use crate::rpc::RpcClient;

/// A host from `kiln1…` or `kilnvaloper1…`.
pub fn host_address(text: &str) -> Result<Address> {
    Address::parse(text)
        .or_else(|_| Address::parse_valoper(text))
        .map_err(|_| anyhow!("{text:?} is neither a kiln1… nor a kilnvaloper1… address"))
}

/// The ukiln of a parsed coin (`1000ukiln`, `1.5kiln`).
pub fn ukiln(coin: &Coin) -> Result<u128> {
    if coin.denom != BASE_DENOM {
        bail!("only {BASE_DENOM} is bonded, got {}", coin.denom);
    }
    Ok(coin.amount)
}

fn proto(amount: u128) -> Option<ProtoCoin> {
    Some(ProtoCoin {
        denom: BASE_DENOM.into(),
        amount: amount.to_string(),
    })
}

pub fn msg_bond(host: &Address, amount: u128) -> Any {
    any_of(
        Bond::TYPE_URL,
        &MsgBond {
            host: host.to_bech32(),
            amount: amount.to_string(),
        },
    )
}

pub fn msg_unbond(host: &Address, amount: u128) -> Any {
    any_of(
        Unbond::TYPE_URL,
        &MsgUnbond {
            host: host.to_bech32(),
            amount: amount.to_string(),
        },
    )
}

/// `rate` as `5%`, `2.5%` or basis points (`250`).
pub fn parse_commission(rate: &str) -> Result<u32> {
    let bps = if let Some(percent) = rate.strip_suffix('%') {
        let (whole, frac) = percent.split_once('.').unwrap_or((percent, ""));
        if frac.len() > 2 || whole.is_empty() {
            bail!(
                "commission {rate:?}: give a percentage with at most 2 decimals, e.g. 5% or 2.5%"
            );
        }
        let whole: u32 = whole
            .parse()
            .map_err(|_| anyhow!("commission {rate:?} is not a percentage"))?;
        let frac: u32 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<2}")
                .parse()
                .map_err(|_| anyhow!("commission {rate:?} is not a percentage"))?
        };
        whole.saturating_mul(100).saturating_add(frac)
    } else {
        rate.parse()
            .map_err(|_| anyhow!("commission {rate:?}: give 5% or basis points (500)"))?
    };
    if bps > 10_000 {
        bail!("commission {rate:?} is above 100%");
    }
    Ok(bps)
}

pub fn msg_set_commission(host: &Address, commission_bps: u32) -> Any {
    any_of(
        SetCommission::TYPE_URL,
        &MsgSetCommission {
            host: host.to_bech32(),
            commission_bps,
        },
    )
}

pub fn msg_unjail(host: &Address) -> Any {
    any_of(
        Unjail::TYPE_URL,
        &MsgUnjail {
            host: host.to_bech32(),
        },
    )
}

pub fn msg_delegate(delegator: &Address, host: &Address, amount: u128) -> Any {
    any_of(
        Delegate::TYPE_URL,
        &MsgDelegate {
            delegator_address: delegator.to_bech32(),
            validator_address: host.to_valoper(),
            amount: proto(amount),
        },
    )
}

pub fn msg_undelegate(delegator: &Address, host: &Address, amount: u128) -> Any {
    any_of(
        Undelegate::TYPE_URL,
        &MsgUndelegate {
            delegator_address: delegator.to_bech32(),
            validator_address: host.to_valoper(),
            amount: proto(amount),
        },
    )
}

pub fn msg_redelegate(delegator: &Address, src: &Address, dst: &Address, amount: u128) -> Any {
    any_of(
        BeginRedelegate::TYPE_URL,
        &MsgBeginRedelegate {
            delegator_address: delegator.to_bech32(),
            validator_src_address: src.to_valoper(),
            validator_dst_address: dst.to_valoper(),
            amount: proto(amount),
        },
    )
}

/// A host's pool: backing, shares, self-bond, delegators, commission.
pub fn host_pool(rpc: &RpcClient, host: &Address, height: u64) -> Result<Value> {
    crate::query::json_query(
        rpc,
        kiln_staking::query::HOST_POOL_PATH,
        host.to_bech32().as_bytes(),
        height,
    )
}

pub fn delegations(rpc: &RpcClient, delegator: &str, height: u64) -> Result<Value> {
    crate::query::json_query(
        rpc,
        kiln_staking::query::DELEGATIONS_PATH,
        delegator.as_bytes(),
        height,
    )
}

pub fn unbonding(rpc: &RpcClient, delegator: &str, height: u64) -> Result<Value> {
    crate::query::json_query(
        rpc,
        kiln_staking::query::UNBONDING_PATH,
        delegator.as_bytes(),
        height,
    )
}

pub fn pool(rpc: &RpcClient, height: u64) -> Result<Value> {
    crate::query::json_query(rpc, kiln_staking::query::POOL_PATH, b"", height)
}

/// `/cosmos.distribution.v1beta1.MsgWithdrawDelegatorReward`.
pub fn msg_withdraw_rewards(delegator: &Address, host: &Address) -> Any {
    any_of(
        kiln_staking::msgs::WithdrawDelegatorReward::TYPE_URL,
        &cosmos_sdk_proto::cosmos::distribution::v1beta1::MsgWithdrawDelegatorReward {
            delegator_address: delegator.to_bech32(),
            validator_address: host.to_valoper(),
        },
    )
}

/// An account's pending delegator rewards (and a host's lifetime rewards).
pub fn rewards(rpc: &RpcClient, address: &str, height: u64) -> Result<Value> {
    crate::query::json_query(rpc, kiln_rewards::REWARDS_PATH, address.as_bytes(), height)
}

/// Supply, minted, burned, the community pool and the staking accounts.
pub fn supply(rpc: &RpcClient, height: u64) -> Result<Value> {
    crate::query::json_query(rpc, kiln_rewards::SUPPLY_PATH, b"", height)
}

/// Path of the app's leaderboard query (`kiln_app::query::LEADERBOARD_PATH`;
/// the client does not link the app).
pub const LEADERBOARD_PATH: &str = "/kiln.app.v1.Query/Leaderboard";

/// One settled epoch's board: per host weight, power, reward, inferences
/// served, reputation, jail (`epoch`: None for the last settled one).
pub fn leaderboard(rpc: &RpcClient, epoch: Option<u64>, height: u64) -> Result<Value> {
    let data = epoch.map(|e| e.to_string()).unwrap_or_default();
    crate::query::json_query(rpc, LEADERBOARD_PATH, data.as_bytes(), height)
}

/// The newest slashes (of `host`, when given), newest first.
pub fn slashes(rpc: &RpcClient, host: Option<&Address>, height: u64) -> Result<Value> {
    let data = host.map(|h| h.to_bech32()).unwrap_or_default();
    crate::query::json_query(rpc, kiln_slashing::SLASHES_PATH, data.as_bytes(), height)
}

/// A host's consensus signing in the current epoch.
pub fn liveness(rpc: &RpcClient, host: &Address, height: u64) -> Result<Value> {
    crate::query::json_query(
        rpc,
        kiln_slashing::LIVENESS_PATH,
        host.to_bech32().as_bytes(),
        height,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commission_reads_percent_or_basis_points() {
        assert_eq!(parse_commission("5%").unwrap(), 500);
        assert_eq!(parse_commission("2.5%").unwrap(), 250);
        assert_eq!(parse_commission("0.25%").unwrap(), 25);
        assert_eq!(parse_commission("100%").unwrap(), 10_000);
        assert_eq!(parse_commission("250").unwrap(), 250);
        for bad in ["101%", "10001", "x", "1.234%", "%", "-1%"] {
            assert!(parse_commission(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_by_either_address() {
        let a = Address([4; 20]);
        assert_eq!(host_address(&a.to_bech32()).unwrap(), a);
        assert_eq!(host_address(&a.to_valoper()).unwrap(), a);
        assert!(host_address("cosmos1xyz").is_err());
    }
}
