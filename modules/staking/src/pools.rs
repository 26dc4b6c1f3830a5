//! Collateral behind hosts (SPEC §7): each host's **pool** of bonded coins,
//! held in shares so a slash of the pool is one write (O(1) in delegators);
//! the host's own bond (`MsgBond`) and stakers' delegations (the Cosmos
//! `MsgDelegate`, `MsgUndelegate`, `MsgBeginRedelegate` with the host's
//! `kilnvaloper1…` operator address) are both shares of it.
//!
//! - **Shares.** The first coins into an empty pool get one share per
//!   ukiln; later ones get `amount × shares / tokens` (rounded down, so the
//!   pool never owes more than it holds). Leaving with `amount` burns
//!   `⌈amount × shares / tokens⌉` shares and pays `amount`; the last shares
//!   out take whatever the pool holds.
//! - **Unbonding.** Coins leaving a pool wait `unbonding_epochs` settles in
//!   the unbonding account, still slashable, then return to the delegator at
//!   the settle that matures them ([`complete_unbondings`]).
//! - **Redelegation** moves shares' worth of coins from one pool to another
//!   at once (protocol note: Kiln keeps no redelegation entries; the coins
//!   answer for the new host's faults from then on).
//! - **Commission** (0–100%) changes at most once per epoch, by at most
//!   `max_commission_change_bps`.
//!
//! - **Rewards** (SPEC §8; the amounts come from `kiln-rewards` at each
//!   settle, [`credit_host_rewards`]): commission and the host's own
//!   shares' part are paid to the host at once; the delegators' part raises
//!   the pool's cumulative reward per share (`reward_ratio`, ×10¹⁸, the
//!   Cosmos SDK's F1 idea), so a settle costs O(hosts), not O(delegators).
//!   A delegator is paid `shares × (ratio now − ratio at its last
//!   payment)` on `MsgWithdrawDelegatorReward` and automatically before any
//!   change of its delegation. Shares do not change when a pool is slashed,
//!   so the ratio needs no slash periods.
//!
//! The coins: bonded ones in module account [`BONDED_ACCOUNT`], unbonding
//! ones in [`UNBONDING_ACCOUNT`], delegators' unpaid rewards in
//! [`DISTRIBUTION_ACCOUNT`]; the invariants (checked every block in tests)
//! are `balance(bonded) = Σ pool tokens`, `balance(unbonding) = Σ entry
//! balances` and `balance(distribution) ≥ Σ pending rewards`.

use kiln_bank::state::BankExt;
use kiln_framework::{
    Address, Coin, Coins, Event, ExecCtx, StateReadExt, StateWriteExt, TxError, TxResult,
    BASE_DENOM,
};
use kiln_state::{StateRead, StateWrite};

use crate::keys;
use crate::state::StakingExt;

/// Module account holding every pool's bonded coins.
pub const BONDED_ACCOUNT: &str = "staking_bonded";
/// Module account holding coins on their way out of pools.
pub const UNBONDING_ACCOUNT: &str = "staking_unbonding";
/// Module account holding delegators' rewards until they are paid.
pub const DISTRIBUTION_ACCOUNT: &str = "distribution";
/// Scale of `HostPool::reward_ratio`.
pub const REWARD_RATIO_SCALE: u128 = 1_000_000_000_000_000_000;

/// The module's codespace for its own error codes.
pub const CODESPACE: &str = "staking";

/// Refusal codes of the staking messages (codespace `staking`).
pub mod codes {
    /// A malformed amount, rate or address.
    pub const BAD_FIELD: u32 = 2;
    /// The operator address is not a registered host.
    pub const UNKNOWN_HOST: u32 = 3;
    /// More than the delegation holds.
    pub const NOT_ENOUGH_DELEGATED: u32 = 4;
    /// No delegation from this account to this host.
    pub const NO_DELEGATION: u32 = 5;
    /// The commission was changed already this epoch, or by too much.
    pub const COMMISSION_CHANGE: u32 = 6;
    /// Redelegating to the same host.
    pub const SAME_HOST: u32 = 7;
    /// The host's self-bond would fall below the minimum while it has
    /// delegations.
    pub const BELOW_MIN_SELF_BOND: u32 = 8;
    /// `MsgUnjail` from a host that is not jailed.
    pub const NOT_JAILED: u32 = 9;
    /// `MsgUnjail` before the jail period ended.
    pub const STILL_JAILED: u32 = 10;
    /// The pool holds shares but no coins (slashed to nothing): it takes no
    /// new delegations.
    pub const POOL_EMPTIED: u32 = 11;
}

pub fn err(code: u32, log: impl Into<String>) -> TxError {
    TxError::module(CODESPACE, code, log)
}

/// A host's pool.
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
pub struct HostPool {
    /// ukiln bonded behind the host (its backing).
    pub tokens: u128,
    /// Shares issued; each delegation (the host's own included) holds some.
    pub shares: u128,
    /// Commission on its delegators' rewards, basis points.
    pub commission_bps: u32,
    /// The epoch whose settle last preceded the commission's last change.
    pub commission_changed_after: Option<u64>,
    /// Cumulative delegators' reward per share, ×[`REWARD_RATIO_SCALE`].
    pub reward_ratio: u128,
}

kiln_framework::stored_value!(HostPool, "host pool", 1);

/// Coins leaving a pool.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct UnbondingEntry {
    /// Paid back at the settle of this epoch.
    pub completes_at_epoch: u64,
    /// ukiln when it started.
    pub initial: u128,
    /// ukiln still owed (a slash lowers it).
    pub balance: u128,
    pub created_height: u64,
}

kiln_framework::stored_value!(UnbondingEntry, "unbonding entry", 1);

fn coins(amount: u128) -> TxResult<Coins> {
    Coins::normalize(vec![Coin::new(BASE_DENOM, amount)])
}

fn bonded() -> Address {
    Address::module(BONDED_ACCOUNT)
}

fn unbonding() -> Address {
    Address::module(UNBONDING_ACCOUNT)
}

/// Reads of pools, delegations and unbonding entries.
pub trait PoolsExt: StateRead {
    fn pool(&self, host: &Address) -> TxResult<HostPool> {
        Ok(self.get_value(&keys::pool(host))?.unwrap_or_default())
    }

    fn delegation_shares(&self, host: &Address, delegator: &Address) -> TxResult<u128> {
        Ok(self
            .get_raw(&keys::delegation(host, delegator))?
            .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
            .map_or(0, u128::from_be_bytes))
    }

    /// ukiln a delegation's shares are worth now (rounded down).
    fn delegation_tokens(&self, host: &Address, delegator: &Address) -> TxResult<u128> {
        let pool = self.pool(host)?;
        let shares = self.delegation_shares(host, delegator)?;
        Ok(tokens_of(&pool, shares))
    }

    /// The epoch of the last settle (0 before the first).
    fn settled_epoch(&self) -> TxResult<u64> {
        Ok(self.get_u64(keys::SETTLED_EPOCH)?.unwrap_or(0))
    }

    /// The pool's reward ratio when `delegator` was last paid.
    fn reward_checkpoint(&self, host: &Address, delegator: &Address) -> TxResult<u128> {
        Ok(self
            .get_raw(&keys::reward_checkpoint(host, delegator))?
            .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
            .map_or(0, u128::from_be_bytes))
    }

    /// ukiln of rewards `delegator` may withdraw from its delegation to
    /// `host` (the host's own shares are paid at each settle: 0).
    fn pending_rewards(&self, host: &Address, delegator: &Address) -> TxResult<u128> {
        if host == delegator {
            return Ok(0);
        }
        let shares = self.delegation_shares(host, delegator)?;
        if shares == 0 {
            return Ok(0);
        }
        let pool = self.pool(host)?;
        let since = pool
            .reward_ratio
            .saturating_sub(self.reward_checkpoint(host, delegator)?);
        Ok(mul_div(shares, since, REWARD_RATIO_SCALE, false))
    }
}

impl<S: StateRead + ?Sized> PoolsExt for S {}

/// `shares`' worth in ukiln (rounded down).
pub fn tokens_of(pool: &HostPool, shares: u128) -> u128 {
    if pool.shares == 0 {
        return 0;
    }
    if shares >= pool.shares {
        return pool.tokens;
    }
    mul_div(shares, pool.tokens, pool.shares, false)
}

/// `a × b / c`, rounded down or up, without overflow for any u128 inputs
/// whose result fits (saturates otherwise).
pub fn mul_div(a: u128, b: u128, c: u128, round_up: bool) -> u128 {
    if c == 0 {
        return 0;
    }
    // Split a = q·c + r: a·b/c = q·b + r·b/c, with r < c.
    let (q, r) = (a / c, a % c);
    let whole = q.saturating_mul(b);
    let (hi, lo) = widening_mul(r, b);
    let (part, rem) = div_wide(hi, lo, c);
    let up = u128::from(round_up && rem > 0);
    whole.saturating_add(part).saturating_add(up)
}

/// The 256-bit product of two u128 as (high, low).
fn widening_mul(a: u128, b: u128) -> (u128, u128) {
    let mask = u128::from(u64::MAX);
    let (a_hi, a_lo) = (a >> 64, a & mask);
    let (b_hi, b_lo) = (b >> 64, b & mask);
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    let mid = (lo_lo >> 64) + (hi_lo & mask) + (lo_hi & mask);
    let lo = (lo_lo & mask) | (mid << 64);
    let hi = hi_hi + (hi_lo >> 64) + (lo_hi >> 64) + (mid >> 64);
    (hi, lo)
}

/// (hi·2^128 + lo) / d for hi < d: (quotient, remainder), bit by bit.
fn div_wide(hi: u128, lo: u128, d: u128) -> (u128, u128) {
    if hi == 0 {
        return (lo / d, lo % d);
    }
    let mut rem = hi % d;
    let mut quotient = 0u128;
    for i in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((lo >> i) & 1);
        quotient <<= 1;
        if carry == 1 || rem >= d {
            rem = rem.wrapping_sub(d);
            quotient |= 1;
        }
    }
    (quotient, rem)
}

fn put_shares<S: StateWrite>(state: &mut S, host: &Address, delegator: &Address, shares: u128) {
    if shares == 0 {
        state.delete_raw(keys::delegation(host, delegator));
        state.delete_raw(keys::delegator_index(delegator, host));
        state.delete_raw(keys::reward_checkpoint(host, delegator));
    } else {
        state.put_raw(
            keys::delegation(host, delegator),
            shares.to_be_bytes().to_vec(),
        );
        state.put_raw(keys::delegator_index(delegator, host), Vec::new());
    }
}

/// Pays `delegator` its pending rewards from its delegation to `host` and
/// moves its checkpoint to the pool's ratio; the amount paid. Every change
/// of a delegation calls this first.
pub fn withdraw_rewards<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    delegator: &Address,
    host: &Address,
) -> TxResult<u128> {
    let owed = state.pending_rewards(host, delegator)?;
    if owed > 0 {
        state.transfer(
            ctx,
            &Address::module(DISTRIBUTION_ACCOUNT),
            delegator,
            &coins(owed)?,
        )?;
    }
    let ratio = state.pool(host)?.reward_ratio;
    state.put_raw(
        keys::reward_checkpoint(host, delegator),
        ratio.to_be_bytes().to_vec(),
    );
    ctx.emit(
        Event::new("withdraw_rewards")
            .attr("validator", host.to_valoper())
            .attr("delegator", delegator)
            .attr("amount", format!("{owed}{BASE_DENOM}")),
    );
    Ok(owed)
}

/// What a host's reward became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostReward {
    pub commission: u128,
    /// The host's own shares' part (paid with the commission).
    pub own_part: u128,
    /// Credited to the delegators' reward ratio.
    pub delegators_part: u128,
}

/// Credits `amount` ukiln (held by `from`) as `host`'s reward for the
/// epoch: commission and its own shares' part to the host's account now,
/// the rest to its delegators' reward ratio (moved to the distribution
/// account).
pub fn credit_host_rewards<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    from: &Address,
    host: &Address,
    amount: u128,
) -> TxResult<HostReward> {
    let mut pool = state.pool(host)?;
    let commission = mul_div(
        amount,
        u128::from(pool.commission_bps.min(10_000)),
        10_000,
        false,
    );
    let rest = amount - commission;
    let own_shares = state.delegation_shares(host, host)?;
    let others = pool.shares.saturating_sub(own_shares);
    let (own_part, mut delegators_part) = if others == 0 || pool.shares == 0 {
        (rest, 0)
    } else {
        let own = mul_div(rest, own_shares, pool.shares, false);
        (own, rest - own)
    };
    let increment = if delegators_part > 0 {
        mul_div(delegators_part, REWARD_RATIO_SCALE, others, false)
    } else {
        0
    };
    let mut to_host = commission + own_part;
    if increment == 0 {
        // Too little to move the ratio: it goes to the host.
        to_host += delegators_part;
        delegators_part = 0;
    } else {
        pool.reward_ratio = pool
            .reward_ratio
            .checked_add(increment)
            .ok_or_else(|| TxError::internal("reward ratio overflow"))?;
        state.put_value(keys::pool(host), &pool)?;
        state.transfer(
            ctx,
            from,
            &Address::module(DISTRIBUTION_ACCOUNT),
            &coins(delegators_part)?,
        )?;
    }
    if to_host > 0 {
        state.transfer(ctx, from, host, &coins(to_host)?)?;
    }
    Ok(HostReward {
        commission,
        own_part: to_host - commission,
        delegators_part,
    })
}

fn require_host<S: StateRead>(state: &S, host: &Address) -> TxResult<()> {
    if kiln_hosts::HostsExt::host(state, host)?.is_none() {
        return Err(err(
            codes::UNKNOWN_HOST,
            format!("{} is not a registered host", host.to_valoper()),
        ));
    }
    Ok(())
}

fn positive(amount: u128, what: &str) -> TxResult<()> {
    if amount == 0 {
        return Err(err(codes::BAD_FIELD, format!("{what} must be positive")));
    }
    Ok(())
}

/// Adds `amount` ukiln from `delegator` to `host`'s pool; the shares issued.
pub fn delegate<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    delegator: &Address,
    host: &Address,
    amount: u128,
) -> TxResult<u128> {
    positive(amount, "the amount")?;
    require_host(state, host)?;
    withdraw_rewards(state, ctx, delegator, host)?;
    state.transfer(ctx, delegator, &bonded(), &coins(amount)?)?;
    let issued = add_to_pool(state, host, delegator, amount)?;
    ctx.emit(
        Event::new("delegate")
            .attr("validator", host.to_valoper())
            .attr("delegator", delegator)
            .attr("amount", format!("{amount}{BASE_DENOM}"))
            .attr("new_shares", issued),
    );
    Ok(issued)
}

/// Puts `amount` ukiln (already in the bonded account) into `host`'s pool
/// as new shares for `delegator`; the shares issued.
fn add_to_pool<S: StateWrite>(
    state: &mut S,
    host: &Address,
    delegator: &Address,
    amount: u128,
) -> TxResult<u128> {
    let mut pool = state.pool(host)?;
    if pool.shares > 0 && pool.tokens == 0 {
        return Err(err(
            codes::POOL_EMPTIED,
            format!(
                "{}'s pool was slashed to nothing; it takes no delegations",
                host.to_valoper()
            ),
        ));
    }
    let issued = if pool.shares == 0 {
        amount
    } else {
        mul_div(amount, pool.shares, pool.tokens, false)
    };
    if issued == 0 {
        return Err(err(
            codes::BAD_FIELD,
            format!(
                "{amount}ukiln buys no share of {}'s pool",
                host.to_valoper()
            ),
        ));
    }
    pool.tokens = pool
        .tokens
        .checked_add(amount)
        .ok_or_else(|| TxError::internal("pool tokens overflow"))?;
    pool.shares = pool
        .shares
        .checked_add(issued)
        .ok_or_else(|| TxError::internal("pool shares overflow"))?;
    state.put_value(keys::pool(host), &pool)?;
    let held = state.delegation_shares(host, delegator)?;
    put_shares(state, host, delegator, held.saturating_add(issued));
    Ok(issued)
}

/// Takes `amount` ukiln of `delegator`'s delegation out of `host`'s pool
/// (the coins stay in the bonded account; the caller moves them).
fn withdraw<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    delegator: &Address,
    host: &Address,
    amount: u128,
) -> TxResult<u128> {
    positive(amount, "the amount")?;
    let held = state.delegation_shares(host, delegator)?;
    if held == 0 {
        return Err(err(
            codes::NO_DELEGATION,
            format!("{delegator} has no delegation to {}", host.to_valoper()),
        ));
    }
    withdraw_rewards(state, ctx, delegator, host)?;
    let mut pool = state.pool(host)?;
    let worth = tokens_of(&pool, held);
    if amount > worth {
        return Err(err(
            codes::NOT_ENOUGH_DELEGATED,
            format!(
                "{delegator}'s delegation to {} is worth {worth}{BASE_DENOM}, less than {amount}{BASE_DENOM}",
                host.to_valoper()
            ),
        ));
    }
    let (burned, paid) = if amount == worth {
        // All of it: every share, and (for the last delegator) every coin.
        let paid = if held == pool.shares {
            pool.tokens
        } else {
            worth
        };
        (held, paid)
    } else {
        (
            mul_div(amount, pool.shares, pool.tokens, true).min(held),
            amount,
        )
    };
    pool.shares -= burned;
    pool.tokens -= paid;
    if pool.shares == 0 {
        pool.tokens = 0;
    }
    state.put_value(keys::pool(host), &pool)?;
    put_shares(state, host, delegator, held - burned);
    Ok(paid)
}

/// Starts unbonding `amount` ukiln of a delegation; the entry's maturity epoch.
pub fn undelegate<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    delegator: &Address,
    host: &Address,
    amount: u128,
) -> TxResult<u64> {
    let paid = withdraw(state, ctx, delegator, host, amount)?;
    check_min_self_bond(state, host)?;
    state.transfer(ctx, &bonded(), &unbonding(), &coins(paid)?)?;
    let params = state.staking_params()?;
    let completes = state
        .settled_epoch()?
        .saturating_add(params.unbonding_epochs)
        .saturating_add(1);
    let seq = state.get_u64(keys::UNBONDING_SEQ)?.unwrap_or(0);
    state.put_u64(keys::UNBONDING_SEQ.to_vec(), seq.saturating_add(1));
    state.put_value(
        keys::unbonding(host, delegator, seq),
        &UnbondingEntry {
            completes_at_epoch: completes,
            initial: paid,
            balance: paid,
            created_height: ctx.block.height,
        },
    )?;
    state.put_raw(
        keys::unbonding_queue(completes, host, delegator, seq),
        Vec::new(),
    );
    state.put_raw(keys::unbonding_by(delegator, host, seq), Vec::new());
    ctx.emit(
        Event::new("unbond")
            .attr("validator", host.to_valoper())
            .attr("delegator", delegator)
            .attr("amount", format!("{paid}{BASE_DENOM}"))
            .attr("completion_epoch", completes),
    );
    Ok(completes)
}

/// Moves `amount` ukiln of a delegation from `src` to `dst` at once.
pub fn redelegate<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    delegator: &Address,
    src: &Address,
    dst: &Address,
    amount: u128,
) -> TxResult<()> {
    if src == dst {
        return Err(err(codes::SAME_HOST, "redelegation to the same host"));
    }
    require_host(state, dst)?;
    let paid = withdraw(state, ctx, delegator, src, amount)?;
    check_min_self_bond(state, src)?;
    withdraw_rewards(state, ctx, delegator, dst)?;
    // The coins stay in the bonded account: out of one pool, into the other.
    add_to_pool(state, dst, delegator, paid)?;
    ctx.emit(
        Event::new("redelegate")
            .attr("source_validator", src.to_valoper())
            .attr("destination_validator", dst.to_valoper())
            .attr("delegator", delegator)
            .attr("amount", format!("{paid}{BASE_DENOM}")),
    );
    Ok(())
}

/// A host with delegators keeps at least `min_self_bond` of its own.
fn check_min_self_bond<S: StateWrite>(state: &S, host: &Address) -> TxResult<()> {
    let min = state.staking_params()?.min_self_bond;
    if min == 0 {
        return Ok(());
    }
    let own = state.delegation_tokens(host, host)?;
    let pool = state.pool(host)?;
    let others = pool.tokens.saturating_sub(own);
    if own < min && others > 0 {
        return Err(err(
            codes::BELOW_MIN_SELF_BOND,
            format!(
                "{} would keep {own}{BASE_DENOM} of its own behind {others}{BASE_DENOM} of delegations; the minimum self-bond is {min}{BASE_DENOM}",
                host.to_valoper()
            ),
        ));
    }
    Ok(())
}

/// Sets `host`'s commission: once per epoch, by at most the param.
pub fn set_commission<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    host: &Address,
    commission_bps: u32,
) -> TxResult<()> {
    if commission_bps > 10_000 {
        return Err(err(
            codes::BAD_FIELD,
            format!("commission must be 0..=10000 basis points, got {commission_bps}"),
        ));
    }
    require_host(state, host)?;
    let params = state.staking_params()?;
    let settled = state.settled_epoch()?;
    let mut pool = state.pool(host)?;
    if pool.commission_changed_after == Some(settled) {
        return Err(err(
            codes::COMMISSION_CHANGE,
            format!(
                "{}'s commission already changed this epoch; change it again after the next settle",
                host.to_valoper()
            ),
        ));
    }
    let step = commission_bps.abs_diff(pool.commission_bps);
    if step > params.max_commission_change_bps {
        return Err(err(
            codes::COMMISSION_CHANGE,
            format!(
                "the commission moves by at most {} basis points per epoch ({} → {commission_bps} asked)",
                params.max_commission_change_bps, pool.commission_bps
            ),
        ));
    }
    pool.commission_bps = commission_bps;
    pool.commission_changed_after = Some(settled);
    state.put_value(keys::pool(host), &pool)?;
    ctx.emit(
        Event::new("kiln.staking.v1.EventCommissionSet")
            .attr("host", host)
            .attr("commission_bps", commission_bps),
    );
    Ok(())
}

/// At the settle of `epoch`: entries maturing by then are paid out.
pub fn complete_unbondings<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    epoch: u64,
) -> TxResult<()> {
    state.put_u64(keys::SETTLED_EPOCH.to_vec(), epoch);
    let mut due = Vec::new();
    state.for_each_under(keys::UNBONDING_QUEUE_PREFIX, |suffix, _| {
        let at = suffix
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(u64::MAX, u64::from_be_bytes);
        if at <= epoch {
            due.push(suffix.to_vec());
        }
        Ok(())
    })?;
    for suffix in due {
        state.delete_raw([keys::UNBONDING_QUEUE_PREFIX, &suffix].concat());
        let (Some(host), Some(delegator), Some(seq)) = (
            suffix.get(8..28).and_then(Address::from_bytes),
            suffix.get(28..48).and_then(Address::from_bytes),
            suffix
                .get(48..56)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes),
        ) else {
            continue;
        };
        let key = keys::unbonding(&host, &delegator, seq);
        let Some(entry) = state.get_value::<UnbondingEntry>(&key)? else {
            continue;
        };
        state.delete_raw(key);
        state.delete_raw(keys::unbonding_by(&delegator, &host, seq));
        if entry.balance > 0 {
            state.transfer(ctx, &unbonding(), &delegator, &coins(entry.balance)?)?;
        }
        ctx.emit(
            Event::new("complete_unbonding")
                .attr("validator", host.to_valoper())
                .attr("delegator", delegator)
                .attr("amount", format!("{}{BASE_DENOM}", entry.balance)),
        );
    }
    Ok(())
}

/// What a slash took, in ukiln (all of it burned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slashed {
    /// From the pool: the host's own bond and its delegations, pro rata
    /// (one write: shares are untouched, each is worth less).
    pub bonded: u128,
    /// From unbonding entries out of the pool that started at or after
    /// `since_height` (coins that were backing the host when it misbehaved).
    pub unbonding: u128,
}

impl Slashed {
    pub fn total(&self) -> u128 {
        self.bonded.saturating_add(self.unbonding)
    }
}

/// Slashes `fraction_bps` (below 10 000) of `host`'s collateral and burns
/// it: the pool's tokens, and each unbonding entry out of the pool created
/// at or after `since_height` (by its initial amount, at most what it still
/// holds, as the Cosmos SDK does). Rounds down, so a slash never takes
/// more than the fraction.
pub fn slash_collateral<S: StateWrite>(
    state: &mut S,
    host: &Address,
    fraction_bps: u32,
    since_height: u64,
) -> TxResult<Slashed> {
    let bps = u128::from(fraction_bps.min(9_999));
    let mut slashed = Slashed::default();
    let mut pool = state.pool(host)?;
    let cut = mul_div(pool.tokens, bps, 10_000, false);
    if cut > 0 {
        pool.tokens = pool
            .tokens
            .checked_sub(cut)
            .ok_or_else(|| TxError::internal("slash above the pool's tokens"))?;
        state.put_value(keys::pool(host), &pool)?;
        state.burn(&bonded(), &coins(cut)?)?;
        slashed.bonded = cut;
    }
    let entries: Vec<(Vec<u8>, UnbondingEntry)> =
        state.prefix_values(&keys::unbonding_of_host(host))?;
    for (suffix, mut entry) in entries {
        if entry.created_height < since_height || entry.balance == 0 {
            continue;
        }
        let cut = mul_div(entry.initial, bps, 10_000, false).min(entry.balance);
        if cut == 0 {
            continue;
        }
        entry.balance -= cut;
        state.put_value(
            [keys::unbonding_of_host(host).as_slice(), &suffix].concat(),
            &entry,
        )?;
        slashed.unbonding = slashed
            .unbonding
            .checked_add(cut)
            .ok_or_else(|| TxError::internal("slashed total overflows"))?;
    }
    if slashed.unbonding > 0 {
        state.burn(&unbonding(), &coins(slashed.unbonding)?)?;
    }
    Ok(slashed)
}

/// Genesis: `delegator` bonds `amount` behind `host` from its genesis
/// balance (no events).
pub fn genesis_bond<S: StateWrite>(
    state: &mut S,
    delegator: &Address,
    host: &Address,
    amount: u128,
) -> TxResult<()> {
    positive(amount, "a genesis bond")?;
    require_host(state, host)?;
    let c = coins(amount)?;
    state.sub_coins(delegator, &c).map_err(|e| {
        TxError::invalid_request(format!(
            "genesis bond of {amount}{BASE_DENOM} by {delegator}: {}",
            e.log
        ))
    })?;
    kiln_bank::state::AuthWriteExt::ensure_account(state, &bonded())?;
    state.add_coins(&bonded(), &c)?;
    add_to_pool(state, host, delegator, amount)?;
    let ratio = state.pool(host)?.reward_ratio;
    state.put_raw(
        keys::reward_checkpoint(host, delegator),
        ratio.to_be_bytes().to_vec(),
    );
    Ok(())
}

/// SPEC §7: `free_share × raw + min((1 − free_share) × raw, backing /
/// collateral_per_weight)`, in integers (rounded down).
pub fn backed_weight(
    raw: u64,
    backing: u128,
    free_share_bps: u32,
    collateral_per_weight: u128,
) -> u64 {
    let free = u128::from(raw) * u128::from(free_share_bps.min(10_000)) / 10_000;
    let rest = u128::from(raw) - free;
    // No collateral price (0): the whole weight counts.
    let backed = backing
        .checked_div(collateral_per_weight)
        .map_or(rest, |w| rest.min(w));
    u64::try_from(free + backed).unwrap_or(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_div_is_exact_on_wide_products() {
        assert_eq!(mul_div(10, 3, 4, false), 7);
        assert_eq!(mul_div(10, 3, 4, true), 8);
        assert_eq!(mul_div(u128::MAX, u128::MAX, u128::MAX, false), u128::MAX);
        let big = 1u128 << 100;
        assert_eq!(mul_div(big, big, big, false), big);
        assert_eq!(mul_div(big + 1, big - 1, big, false), big - 1);
        assert_eq!(mul_div(big + 1, big - 1, big, true), big);
        assert_eq!(mul_div(5, 7, 0, false), 0);
    }

    #[test]
    fn shares_round_for_the_pool() {
        let pool = HostPool {
            tokens: 1_000,
            shares: 3_000,
            ..Default::default()
        };
        assert_eq!(tokens_of(&pool, 1), 0);
        assert_eq!(tokens_of(&pool, 3), 1);
        assert_eq!(tokens_of(&pool, 3_000), 1_000);
        assert_eq!(tokens_of(&pool, 5_000), 1_000);
    }

    #[test]
    fn backing_covers_the_weight_above_the_free_share() {
        // free 20%: 100 raw → 20 free + up to 80 backed at 10 per weight.
        assert_eq!(backed_weight(100, 0, 2_000, 10), 20);
        assert_eq!(backed_weight(100, 500, 2_000, 10), 70);
        assert_eq!(backed_weight(100, 800, 2_000, 10), 100);
        assert_eq!(backed_weight(100, 1_000_000, 2_000, 10), 100);
        assert_eq!(backed_weight(0, 1_000_000, 2_000, 10), 0);
        assert_eq!(backed_weight(7, 0, 2_000, 10), 1);
    }
}
