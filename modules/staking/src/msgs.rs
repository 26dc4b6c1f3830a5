//! Staking messages, each declared once ([`MsgKind`]). None is an ML-ops
//! message: coins move only by the account key.
//!
//! - `kiln.staking.v1`: `MsgBond`, `MsgUnbond` (a host's own collateral) and
//!   `MsgSetCommission`, `MsgUnjail` (hand-written prost types; field numbers are the
//!   wire contract);
//! - `cosmos.staking.v1beta1`: `MsgDelegate`, `MsgUndelegate`,
//!   `MsgBeginRedelegate`, with the host's `kilnvaloper1…` address, so
//!   cosmjs's `delegateTokens` and `undelegateTokens` work unchanged;
//! - `cosmos.distribution.v1beta1.MsgWithdrawDelegatorReward` (cosmjs's
//!   `withdrawRewards`): the delegation's accrued rewards.

use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::distribution::v1beta1::MsgWithdrawDelegatorReward;
use cosmos_sdk_proto::cosmos::staking::v1beta1::{MsgBeginRedelegate, MsgDelegate, MsgUndelegate};
use kiln_framework::msg::address_field;
use kiln_framework::{Address, ExecCtx, MsgKind, TxResult, BASE_DENOM};
use kiln_state::StateWrite;
use serde_json::json;

use crate::pools::{self, codes, err};

/// A host bonds `amount` ukiln of its own behind itself.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgBond {
    #[prost(string, tag = "1")]
    pub host: String,
    /// ukiln, decimal.
    #[prost(string, tag = "2")]
    pub amount: String,
}
kiln_framework::proto_name!(MsgBond, "kiln.staking.v1");

/// A host starts unbonding `amount` ukiln of its own bond.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgUnbond {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(string, tag = "2")]
    pub amount: String,
}
kiln_framework::proto_name!(MsgUnbond, "kiln.staking.v1");

/// A host sets its commission on delegators' rewards.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSetCommission {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(uint32, tag = "2")]
    pub commission_bps: u32,
}
kiln_framework::proto_name!(MsgSetCommission, "kiln.staking.v1");

/// A jailed host asks to leave jail (after its jail period).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgUnjail {
    #[prost(string, tag = "1")]
    pub host: String,
}
kiln_framework::proto_name!(MsgUnjail, "kiln.staking.v1");

/// A positive decimal ukiln amount.
pub fn parse_amount(text: &str) -> TxResult<u128> {
    let amount = kiln_framework::coin::parse_amount(text)
        .map_err(|e| err(codes::BAD_FIELD, format!("{e} ({BASE_DENOM})")))?;
    if amount == 0 {
        return Err(err(codes::BAD_FIELD, "the amount must be positive"));
    }
    Ok(amount)
}

/// A Cosmos coin of the base denom.
fn proto_amount(coin: &Option<ProtoCoin>) -> TxResult<u128> {
    let coin = coin
        .as_ref()
        .ok_or_else(|| err(codes::BAD_FIELD, "the amount is missing"))?;
    if coin.denom != BASE_DENOM {
        return Err(err(
            codes::BAD_FIELD,
            format!("only {BASE_DENOM} is bonded, got {:?}", coin.denom),
        ));
    }
    parse_amount(&coin.amount)
}

fn valoper(text: &str, field: &str) -> TxResult<Address> {
    Address::parse_valoper(text).map_err(|e| err(codes::BAD_FIELD, format!("{field}: {e}")))
}

fn coin_json(c: &Option<ProtoCoin>) -> serde_json::Value {
    c.as_ref().map_or(
        serde_json::Value::Null,
        |c| json!({"denom": c.denom, "amount": c.amount}),
    )
}

/// Declaration of `MsgBond`.
pub struct Bond;

impl MsgKind for Bond {
    type Proto = MsgBond;
    const TYPE_URL: &'static str = "/kiln.staking.v1.MsgBond";

    fn signer(msg: &MsgBond) -> TxResult<Address> {
        address_field(&msg.host, "host")
    }

    fn validate_basic(msg: &MsgBond) -> TxResult<()> {
        parse_amount(&msg.amount).map(|_| ())
    }

    fn handle<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>, msg: &MsgBond) -> TxResult<()> {
        let host = address_field(&msg.host, "host")?;
        pools::delegate(state, ctx, &host, &host, parse_amount(&msg.amount)?).map(|_| ())
    }

    fn describe(msg: &MsgBond) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "host": msg.host, "amount": msg.amount})
    }
}

/// Declaration of `MsgUnbond`.
pub struct Unbond;

impl MsgKind for Unbond {
    type Proto = MsgUnbond;
    const TYPE_URL: &'static str = "/kiln.staking.v1.MsgUnbond";

    fn signer(msg: &MsgUnbond) -> TxResult<Address> {
        address_field(&msg.host, "host")
    }

    fn validate_basic(msg: &MsgUnbond) -> TxResult<()> {
        parse_amount(&msg.amount).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgUnbond,
    ) -> TxResult<()> {
        let host = address_field(&msg.host, "host")?;
        pools::undelegate(state, ctx, &host, &host, parse_amount(&msg.amount)?).map(|_| ())
    }

    fn describe(msg: &MsgUnbond) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "host": msg.host, "amount": msg.amount})
    }
}

/// Declaration of `MsgSetCommission`.
pub struct SetCommission;

impl MsgKind for SetCommission {
    type Proto = MsgSetCommission;
    const TYPE_URL: &'static str = "/kiln.staking.v1.MsgSetCommission";

    fn signer(msg: &MsgSetCommission) -> TxResult<Address> {
        address_field(&msg.host, "host")
    }

    fn validate_basic(msg: &MsgSetCommission) -> TxResult<()> {
        if msg.commission_bps > 10_000 {
            return Err(err(
                codes::BAD_FIELD,
                format!(
                    "commission must be 0..=10000 basis points, got {}",
                    msg.commission_bps
                ),
            ));
        }
        Ok(())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgSetCommission,
    ) -> TxResult<()> {
        let host = address_field(&msg.host, "host")?;
        pools::set_commission(state, ctx, &host, msg.commission_bps)
    }

    fn describe(msg: &MsgSetCommission) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "host": msg.host, "commission_bps": msg.commission_bps})
    }
}

/// Declaration of the Cosmos `MsgDelegate`.
pub struct Delegate;

impl MsgKind for Delegate {
    type Proto = MsgDelegate;
    const TYPE_URL: &'static str = "/cosmos.staking.v1beta1.MsgDelegate";

    fn signer(msg: &MsgDelegate) -> TxResult<Address> {
        address_field(&msg.delegator_address, "delegator_address")
    }

    fn validate_basic(msg: &MsgDelegate) -> TxResult<()> {
        valoper(&msg.validator_address, "validator_address")?;
        proto_amount(&msg.amount).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgDelegate,
    ) -> TxResult<()> {
        let delegator = address_field(&msg.delegator_address, "delegator_address")?;
        let host = valoper(&msg.validator_address, "validator_address")?;
        pools::delegate(state, ctx, &delegator, &host, proto_amount(&msg.amount)?).map(|_| ())
    }

    fn describe(msg: &MsgDelegate) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "delegator_address": msg.delegator_address,
            "validator_address": msg.validator_address, "amount": coin_json(&msg.amount)})
    }
}

/// Declaration of the Cosmos `MsgUndelegate`.
pub struct Undelegate;

impl MsgKind for Undelegate {
    type Proto = MsgUndelegate;
    const TYPE_URL: &'static str = "/cosmos.staking.v1beta1.MsgUndelegate";

    fn signer(msg: &MsgUndelegate) -> TxResult<Address> {
        address_field(&msg.delegator_address, "delegator_address")
    }

    fn validate_basic(msg: &MsgUndelegate) -> TxResult<()> {
        valoper(&msg.validator_address, "validator_address")?;
        proto_amount(&msg.amount).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgUndelegate,
    ) -> TxResult<()> {
        let delegator = address_field(&msg.delegator_address, "delegator_address")?;
        let host = valoper(&msg.validator_address, "validator_address")?;
        pools::undelegate(state, ctx, &delegator, &host, proto_amount(&msg.amount)?).map(|_| ())
    }

    fn describe(msg: &MsgUndelegate) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "delegator_address": msg.delegator_address,
            "validator_address": msg.validator_address, "amount": coin_json(&msg.amount)})
    }
}

/// Declaration of the Cosmos `MsgBeginRedelegate`.
pub struct BeginRedelegate;

impl MsgKind for BeginRedelegate {
    type Proto = MsgBeginRedelegate;
    const TYPE_URL: &'static str = "/cosmos.staking.v1beta1.MsgBeginRedelegate";

    fn signer(msg: &MsgBeginRedelegate) -> TxResult<Address> {
        address_field(&msg.delegator_address, "delegator_address")
    }

    fn validate_basic(msg: &MsgBeginRedelegate) -> TxResult<()> {
        valoper(&msg.validator_src_address, "validator_src_address")?;
        valoper(&msg.validator_dst_address, "validator_dst_address")?;
        proto_amount(&msg.amount).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgBeginRedelegate,
    ) -> TxResult<()> {
        let delegator = address_field(&msg.delegator_address, "delegator_address")?;
        let src = valoper(&msg.validator_src_address, "validator_src_address")?;
        let dst = valoper(&msg.validator_dst_address, "validator_dst_address")?;
        pools::redelegate(
            state,
            ctx,
            &delegator,
            &src,
            &dst,
            proto_amount(&msg.amount)?,
        )
    }

    fn describe(msg: &MsgBeginRedelegate) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "delegator_address": msg.delegator_address,
            "validator_src_address": msg.validator_src_address,
            "validator_dst_address": msg.validator_dst_address, "amount": coin_json(&msg.amount)})
    }
}

/// Declaration of the Cosmos `MsgWithdrawDelegatorReward`.
pub struct WithdrawDelegatorReward;

impl MsgKind for WithdrawDelegatorReward {
    type Proto = MsgWithdrawDelegatorReward;
    const TYPE_URL: &'static str = "/cosmos.distribution.v1beta1.MsgWithdrawDelegatorReward";

    fn signer(msg: &MsgWithdrawDelegatorReward) -> TxResult<Address> {
        address_field(&msg.delegator_address, "delegator_address")
    }

    fn validate_basic(msg: &MsgWithdrawDelegatorReward) -> TxResult<()> {
        valoper(&msg.validator_address, "validator_address").map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgWithdrawDelegatorReward,
    ) -> TxResult<()> {
        use crate::pools::PoolsExt;
        let delegator = address_field(&msg.delegator_address, "delegator_address")?;
        let host = valoper(&msg.validator_address, "validator_address")?;
        if state.delegation_shares(&host, &delegator)? == 0 {
            return Err(err(
                codes::NO_DELEGATION,
                format!("{delegator} has no delegation to {}", host.to_valoper()),
            ));
        }
        pools::withdraw_rewards(state, ctx, &delegator, &host).map(|_| ())
    }

    fn describe(msg: &MsgWithdrawDelegatorReward) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "delegator_address": msg.delegator_address,
            "validator_address": msg.validator_address})
    }
}

/// Declaration of `MsgUnjail`.
pub struct Unjail;

impl MsgKind for Unjail {
    type Proto = MsgUnjail;
    const TYPE_URL: &'static str = "/kiln.staking.v1.MsgUnjail";

    fn signer(msg: &MsgUnjail) -> TxResult<Address> {
        address_field(&msg.host, "host")
    }

    fn validate_basic(msg: &MsgUnjail) -> TxResult<()> {
        address_field(&msg.host, "host").map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgUnjail,
    ) -> TxResult<()> {
        let host = address_field(&msg.host, "host")?;
        crate::jail::unjail(state, ctx, &host)
    }

    fn describe(msg: &MsgUnjail) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "host": msg.host})
    }
}
