//! kiln-rewards: the network's coin issuance (SPEC §8).
//!
//! Owned here:
//! - **emission**: epoch `e` mints `E(e) = E0 · (1 − decay)^(e − 1)`
//!   ([`emission`]), in fixed point (×10³⁰, rounded to nearest at each
//!   step), never floats;
//! - the **community tax** (`community_tax_bps` of the emission) into the
//!   community pool account;
//! - the **split** at each settle ([`distribute`]): among the hosts the
//!   epoch accepted that are not INVALID, by effective weight, each share
//!   reduced by the fraction of validation duties the host skipped (the
//!   forfeited part and the rounding remainder go to the community pool);
//!   each host's share is then split by its pool
//!   ([`kiln_staking::pools::credit_host_rewards`]: commission and the
//!   host's own part paid at once, delegators' part by reward per share).
//!
//! An epoch with no eligible host mints nothing. Integer arithmetic only;
//! every minted ukiln is recorded (`bank/minted`) so supply = genesis +
//! minted − burned is checked every block in tests.
//!
//! Keys (all under `rewards/`): `rewards/params` ([`RewardsParams`]),
//! `rewards/epoch/{epoch 8}` ([`EpochRewards`]), `rewards/host/{host 20}`
//! (u128 BE: the host's lifetime rewards, commission and own part included),
//! `rewards/epoch_host/{epoch 8}{host 20}` (u128 BE: its reward that epoch).
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;

use kiln_bank::state::BankExt;
use kiln_framework::query::json;
use kiln_framework::{
    stored_value, Address, Coin, Coins, Component, Event, ExecCtx, GenesisCtx, StateReadExt,
    StateWriteExt, TxError, TxResult, BASE_DENOM,
};
use kiln_staking::pools::mul_div;
use kiln_state::{StateRead, StateWrite};

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"rewards/";
pub const PARAMS_KEY: &[u8] = b"rewards/params";
pub const EPOCH_PREFIX: &[u8] = b"rewards/epoch/";
pub const HOST_PREFIX: &[u8] = b"rewards/host/";

/// Module account the emission is minted into before it is paid out.
pub const EMISSION_ACCOUNT: &str = "rewards";
/// The community pool (governance spends it).
pub const COMMUNITY_POOL_ACCOUNT: &str = "community_pool";

pub const REWARDS_PATH: &str = "/kiln.rewards.v1.Query/Rewards";
pub const SUPPLY_PATH: &str = "/kiln.rewards.v1.Query/Supply";
pub const EPOCH_PATH: &str = "/kiln.rewards.v1.Query/Epoch";

pub fn epoch_key(epoch: u64) -> Vec<u8> {
    [EPOCH_PREFIX, &epoch.to_be_bytes()].concat()
}

pub const EPOCH_HOST_PREFIX: &[u8] = b"rewards/epoch_host/";

/// A host's reward in one epoch.
pub fn epoch_host_key(epoch: u64, host: &Address) -> Vec<u8> {
    [EPOCH_HOST_PREFIX, &epoch.to_be_bytes(), host.as_bytes()].concat()
}

/// ukiln `host` was rewarded in `epoch` (its whole share: commission, own
/// part and delegators' part).
pub fn epoch_reward<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
) -> TxResult<u128> {
    Ok(state.get_u128(&epoch_host_key(epoch, host))?.unwrap_or(0))
}

/// ukiln `host` was rewarded over its life.
pub fn lifetime_reward<S: StateRead + ?Sized>(state: &S, host: &Address) -> TxResult<u128> {
    Ok(state.get_u128(&host_key(host))?.unwrap_or(0))
}

pub fn host_key(host: &Address) -> Vec<u8> {
    [HOST_PREFIX, host.as_bytes()].concat()
}

/// SPEC §8's parameters.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct RewardsParams {
    /// `E0`, ukiln minted in epoch 1.
    #[serde(with = "kiln_framework::serde_u128")]
    pub initial_emission: u128,
    /// `decay` per epoch, in parts per billion (4.75e-4 = 475 000).
    pub decay_ppb: u64,
    /// Share of each emission paid to the community pool, basis points.
    pub community_tax_bps: u32,
}

impl Default for RewardsParams {
    fn default() -> Self {
        RewardsParams {
            initial_emission: 323_000 * 1_000_000,
            decay_ppb: 475_000,
            community_tax_bps: 200,
        }
    }
}

impl RewardsParams {
    pub fn validate(&self) -> Result<(), String> {
        if self.decay_ppb >= 1_000_000_000 {
            return Err("rewards.params.decay_ppb must be below 1e9 (a decay below 100%)".into());
        }
        if self.community_tax_bps > 10_000 {
            return Err("rewards.params.community_tax_bps must be at most 10000".into());
        }
        if self.initial_emission > u128::from(u64::MAX) {
            return Err("rewards.params.initial_emission is implausibly large".into());
        }
        Ok(())
    }
}

stored_value!(RewardsParams, "rewards params", 1);
kiln_framework::governed_params!(
    RewardsParams,
    "rewards",
    PARAMS_KEY,
    b"rewards/pending_params",
    |p| p.validate()
);

/// One epoch's issuance, as recorded.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct EpochRewards {
    pub minted: u128,
    /// Tax, forfeited duty shares and the split's remainder.
    pub community: u128,
    /// Paid to hosts and their delegators.
    pub distributed: u128,
    pub hosts: u64,
}

stored_value!(EpochRewards, "epoch rewards", 1);

/// Fixed-point one for [`emission`]: 10³⁰ (< 2¹⁰⁰, so products of two
/// fit [`mul_div`]'s 256-bit intermediate).
const ONE: u128 = 1_000_000_000_000_000_000_000_000_000_000;

/// `a · b` in fixed point, rounded to nearest: `q = ⌊ab⌋`, plus one when
/// the fraction is at least ½ (`⌊2ab⌋ > 2q`).
fn fmul(a: u128, b: u128) -> u128 {
    let q = mul_div(a, b, ONE, false);
    let twice = mul_div(a, b.saturating_mul(2), ONE, false);
    q + u128::from(twice > q.saturating_mul(2))
}

/// `E0 · (1 − decay)^(epoch − 1)` in ukiln, rounded down (0 for epoch 0).
pub fn emission(params: &RewardsParams, epoch: u64) -> u128 {
    if epoch == 0 {
        return 0;
    }
    let factor = ONE - ONE / 1_000_000_000 * u128::from(params.decay_ppb);
    let mut result = ONE;
    let mut base = factor;
    let mut n = epoch - 1;
    while n > 0 {
        if n & 1 == 1 {
            result = fmul(result, base);
        }
        base = fmul(base, base);
        n >>= 1;
    }
    mul_div(params.initial_emission, result, ONE, false)
}

pub fn params<S: StateRead + ?Sized>(state: &S) -> TxResult<RewardsParams> {
    Ok(state.get_value(PARAMS_KEY)?.unwrap_or_default())
}

/// A host eligible for the epoch's rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligible {
    pub effective_weight: u64,
    /// Validation duties of its last recomputed period, in millionths:
    /// its share is reduced by `skipped / assigned`.
    pub duties_assigned_micro: u64,
    pub duties_skipped_micro: u64,
}

fn coins(amount: u128) -> TxResult<Coins> {
    Coins::normalize(vec![Coin::new(BASE_DENOM, amount)])
}

/// The settle's rewards step for `epoch`: mints the emission, pays the
/// community tax, and credits each eligible host's share. Returns the
/// events.
pub fn distribute<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    epoch: u64,
    eligible: &BTreeMap<Address, Eligible>,
) -> TxResult<Vec<Event>> {
    let total_weight: u128 = eligible
        .values()
        .map(|e| u128::from(e.effective_weight))
        .sum();
    let p = params(state)?;
    let minted = emission(&p, epoch);
    if total_weight == 0 || minted == 0 {
        return Ok(vec![Event::new("kiln.rewards.v1.EventNoEmission")
            .attr("epoch", epoch)
            .attr("reason", "no eligible host with weight")]);
    }
    let emission_account = Address::module(EMISSION_ACCOUNT);
    let community = Address::module(COMMUNITY_POOL_ACCOUNT);
    state.mint_emission(&emission_account, &coins(minted)?)?;
    let tax = mul_div(minted, u128::from(p.community_tax_bps), 10_000, false);
    let to_hosts = minted - tax;
    let mut distributed: u128 = 0;
    let mut forfeited: u128 = 0;
    let mut events = Vec::new();
    for (host, e) in eligible {
        let share = mul_div(
            to_hosts,
            u128::from(e.effective_weight),
            total_weight,
            false,
        );
        let kept = if e.duties_assigned_micro == 0 {
            share
        } else {
            let done = e
                .duties_assigned_micro
                .saturating_sub(e.duties_skipped_micro.min(e.duties_assigned_micro));
            mul_div(
                share,
                u128::from(done),
                u128::from(e.duties_assigned_micro),
                false,
            )
        };
        forfeited += share - kept;
        if kept == 0 {
            continue;
        }
        let split =
            kiln_staking::pools::credit_host_rewards(state, ctx, &emission_account, host, kept)?;
        distributed += kept;
        let lifetime = state
            .get_u128(&host_key(host))?
            .unwrap_or(0)
            .saturating_add(kept);
        state.put_u128(host_key(host), lifetime);
        state.put_u128(epoch_host_key(epoch, host), kept);
        events.push(
            Event::new("kiln.rewards.v1.EventHostRewarded")
                .attr("epoch", epoch)
                .attr("host", host)
                .attr("share", share)
                .attr("reward", kept)
                .attr("commission", split.commission)
                .attr("own_part", split.own_part)
                .attr("delegators_part", split.delegators_part),
        );
    }
    // Tax, forfeited shares and the split's remainder: the community pool.
    let to_community = minted
        .checked_sub(distributed)
        .ok_or_else(|| TxError::internal("rewards: distributed more than minted"))?;
    if to_community > 0 {
        state.transfer(ctx, &emission_account, &community, &coins(to_community)?)?;
    }
    state.put_value(
        epoch_key(epoch),
        &EpochRewards {
            minted,
            community: to_community,
            distributed,
            hosts: events.len() as u64,
        },
    )?;
    events.push(
        Event::new("kiln.rewards.v1.EventEmission")
            .attr("epoch", epoch)
            .attr("minted", minted)
            .attr("community_tax", tax)
            .attr("forfeited", forfeited)
            .attr("community", to_community)
            .attr("distributed", distributed),
    );
    Ok(events)
}

/// `app_state.rewards`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardsGenesis {
    #[serde(default)]
    pub params: RewardsParams,
}

pub struct Rewards;

impl Component for Rewards {
    const NAME: &'static str = "rewards";
    type Genesis = RewardsGenesis;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &RewardsGenesis,
        _ctx: &GenesisCtx,
    ) -> TxResult<()> {
        genesis
            .params
            .validate()
            .map_err(TxError::invalid_request)?;
        state.put_value(PARAMS_KEY.to_vec(), &genesis.params)
    }
}

fn address_arg(data: &[u8]) -> TxResult<Address> {
    let t = String::from_utf8(data.to_vec())
        .map_err(|_| TxError::invalid_request("the address must be UTF-8 text"))?;
    Address::parse(t.trim()).map_err(|e| TxError::invalid_address(e.to_string()))
}

/// JSON queries: `Rewards` (an account's pending delegator rewards by host
/// and, for a host, its lifetime rewards), `Supply` (supply, minted,
/// burned, the community pool, undistributed rewards), `Epoch` (one
/// epoch's issuance; data: the epoch number).
pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        REWARDS_PATH => rewards_query(state, data),
        SUPPLY_PATH => supply_query(state),
        EPOCH_PATH => epoch_query(state, data),
        _ => return None,
    };
    Some(result)
}

fn rewards_query<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    use kiln_staking::pools::PoolsExt;
    let who = address_arg(data)?;
    let mut hosts = Vec::new();
    state.for_each_under(&kiln_staking::keys::delegator_of(&who), |suffix, _| {
        if let Some(h) = Address::from_bytes(suffix) {
            hosts.push(h);
        }
        Ok(())
    })?;
    let mut rows = Vec::new();
    let mut total: u128 = 0;
    for host in hosts {
        let pending = state.pending_rewards(&host, &who)?;
        total = total.saturating_add(pending);
        rows.push(serde_json::json!({
            "host": host,
            "operator_address": host.to_valoper(),
            "pending": pending.to_string(),
        }));
    }
    let earned = state.get_u128(&host_key(&who))?.unwrap_or(0);
    json(&serde_json::json!({
        "address": who,
        "pending": rows,
        "total_pending": total.to_string(),
        "host_lifetime_rewards": earned.to_string(),
        "denom": BASE_DENOM,
    }))
}

fn supply_query<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<u8>> {
    let of = |coins: Vec<Coin>| -> String {
        coins
            .into_iter()
            .find(|c| c.denom == BASE_DENOM)
            .map_or(0, |c| c.amount)
            .to_string()
    };
    let balance = |name: &str| -> TxResult<String> {
        Ok(
            kiln_bank::state::balance_readonly(state, &Address::module(name), BASE_DENOM)?
                .to_string(),
        )
    };
    let settled = <S as kiln_staking::pools::PoolsExt>::settled_epoch(state)?;
    let p = params(state)?;
    json(&serde_json::json!({
        "denom": BASE_DENOM,
        "supply": of(kiln_bank::state::total_supply_readonly(state)?),
        "minted": of(kiln_bank::state::total_minted_readonly(state)?),
        "burned": of(kiln_bank::state::total_burned_readonly(state)?),
        "community_pool": balance(COMMUNITY_POOL_ACCOUNT)?,
        "undistributed_delegator_rewards": balance(kiln_staking::pools::DISTRIBUTION_ACCOUNT)?,
        "bonded": balance(kiln_staking::pools::BONDED_ACCOUNT)?,
        "unbonding": balance(kiln_staking::pools::UNBONDING_ACCOUNT)?,
        "next_epoch_emission": emission(&p, settled.saturating_add(1)).to_string(),
    }))
}

fn epoch_query<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let t = String::from_utf8(data.to_vec())
        .map_err(|_| TxError::invalid_request("the epoch must be a number"))?;
    let epoch: u64 = t
        .trim()
        .parse()
        .map_err(|_| TxError::invalid_request(format!("{t:?} is not an epoch number")))?;
    match state.get_value::<EpochRewards>(&epoch_key(epoch))? {
        Some(r) => json(&serde_json::json!({
            "epoch": epoch,
            "minted": r.minted.to_string(),
            "community": r.community.to_string(),
            "distributed": r.distributed.to_string(),
            "hosts": r.hosts,
        })),
        None => Err(TxError::key_not_found(format!(
            "no rewards recorded for epoch {epoch}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent computation: one multiplication per epoch at 10³⁵
    /// precision, rounded to nearest (error ≤ n·10⁻³⁵ relative, far below
    /// one ukiln), against [`emission`]'s squaring at 10³⁰.
    fn reference_series(params: &RewardsParams, last: u64) -> Vec<u128> {
        const S: u128 = 100_000_000_000_000_000_000_000_000_000_000_000; // 1e35
        let f = S - S / 1_000_000_000 * u128::from(params.decay_ppb);
        let mut x = S;
        let mut out = vec![0, params.initial_emission];
        for _ in 2..=last {
            let q = mul_div(x, f, S, false);
            x = q + u128::from(mul_div(x, f * 2, S, false) > 2 * q);
            out.push(mul_div(params.initial_emission, x, S, false));
        }
        out
    }

    #[test]
    fn emission_is_within_one_ukiln_of_the_exact_value_over_ten_thousand_epochs() {
        let p = RewardsParams::default();
        assert_eq!(emission(&p, 0), 0);
        assert_eq!(emission(&p, 1), 323_000_000_000);
        let exact = reference_series(&p, 10_000);
        let mut worst = 0u128;
        for epoch in (1..=10_000u64)
            .step_by(7)
            .chain([2, 3, 1_459, 1_460, 10_000])
        {
            let ours = emission(&p, epoch);
            worst = worst.max(ours.abs_diff(exact[epoch as usize]));
        }
        assert!(worst <= 1, "worst difference {worst} ukiln");
        // Half-life ≈ 1 459 epochs (SPEC): E(1460) ≈ E0 / 2.
        let half = emission(&p, 1_460);
        assert!(half.abs_diff(161_500_000_000) < 200_000_000, "{half}");
        // Monotone.
        assert!(emission(&p, 100) > emission(&p, 101));
    }
}

/// `MsgCommunityPoolSpend` (Cosmos' type URL): governance pays
/// `amount` from the community pool to `recipient`.
pub mod pool_spend {
    use cosmos_sdk_proto::cosmos::distribution::v1beta1::MsgCommunityPoolSpend;
    use kiln_bank::state::BankExt;
    use kiln_framework::msg::address_field;
    use kiln_framework::params::require_gov_authority;
    use kiln_framework::{Address, Coins, Event, ExecCtx, MsgKind, TxError, TxResult};
    use kiln_state::StateWrite;
    use serde_json::json;

    use super::COMMUNITY_POOL_ACCOUNT;

    fn amount(msg: &MsgCommunityPoolSpend) -> TxResult<Coins> {
        let coins = Coins::from_proto(&msg.amount)?;
        if coins.is_empty() {
            return Err(TxError::invalid_coins("the spend amount is empty"));
        }
        Ok(coins)
    }

    /// Declaration of `MsgCommunityPoolSpend`.
    pub struct CommunityPoolSpend;

    impl MsgKind for CommunityPoolSpend {
        type Proto = MsgCommunityPoolSpend;
        const TYPE_URL: &'static str = "/cosmos.distribution.v1beta1.MsgCommunityPoolSpend";

        fn signer(msg: &MsgCommunityPoolSpend) -> TxResult<Address> {
            address_field(&msg.authority, "authority")
        }

        fn validate_basic(msg: &MsgCommunityPoolSpend) -> TxResult<()> {
            require_gov_authority(&msg.authority)?;
            address_field(&msg.recipient, "recipient")?;
            amount(msg).map(|_| ())
        }

        fn handle<S: StateWrite>(
            state: &mut S,
            ctx: &mut ExecCtx<'_>,
            msg: &MsgCommunityPoolSpend,
        ) -> TxResult<()> {
            require_gov_authority(&msg.authority)?;
            let recipient = address_field(&msg.recipient, "recipient")?;
            let coins = amount(msg)?;
            let pool = Address::module(COMMUNITY_POOL_ACCOUNT);
            state
                .transfer(ctx, &pool, &recipient, &coins)
                .map_err(|e| {
                    TxError::insufficient_funds(format!("the community pool cannot pay: {}", e.log))
                })?;
            ctx.emit(
                Event::new("kiln.distribution.v1.EventCommunityPoolSpend")
                    .attr("recipient", recipient)
                    .attr("amount", coins.to_string()),
            );
            Ok(())
        }

        fn describe(msg: &MsgCommunityPoolSpend) -> serde_json::Value {
            json!({
                "@type": Self::TYPE_URL,
                "authority": msg.authority,
                "recipient": msg.recipient,
                "amount": msg.amount.iter().map(|c| json!({"denom": c.denom, "amount": c.amount})).collect::<Vec<_>>(),
            })
        }
    }
}
