//! kiln-slashing: what misbehaviour costs (SPEC §7).
//!
//! Owned here: **when** a host is slashed and by how much, the **liveness**
//! record behind the downtime rule, and the **record** of every slash.
//! How a slash reaches the coins (pro rata over the pool, unbonding
//! entries, burned) and what a jail does to the validator set belong to
//! `kiln-staking` ([`kiln_staking::pools::slash_collateral`],
//! [`kiln_staking::jail`]).
//!
//! | infraction | found | slash | jail |
//! |---|---|---|---|
//! | INVALID (SPEC §5) | at the settle of the epoch it happened in | `invalid_bps` (20%) | — |
//! | downtime: inference miss rate above `downtime_miss_rate_bps` (5%), or the consensus key signed under `min_signed_bps` (50%) of the blocks it was expected to sign in the epoch | at the settle | `downtime_bps` (10%) | — |
//! | double sign (CometBFT's `DuplicateVote` or `LightClientAttack` evidence in FinalizeBlock) | in the block reporting it, once per host and misbehaviour height | `double_sign_bps` (5%) | `jail_epochs` settles |
//!
//! A settle slash reaches unbonding entries created since the epoch began; a
//! double-sign slash those created since the misbehaviour's height.
//!
//! **Liveness.** Each block's FinalizeBlock carries the previous block's
//! commit: one vote per validator of that block's set, signed or absent.
//! [`record_commit`] counts, per host, the blocks it was expected to sign
//! in the current epoch and the ones it signed (one small record per
//! validator; reset when the epoch changes).
//!
//! Keys (all under `slashing/`):
//!
//! | key | value |
//! |---|---|
//! | `slashing/params` | [`SlashingParams`] |
//! | `slashing/liveness/{host 20}` | [`Liveness`] |
//! | `slashing/record/{height 8}{host 20}{kind 1}` | [`SlashRecord`] |
//! | `slashing/double_sign/{host 20}{misbehaviour height 8}` | empty: evidence already acted on |
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;

use kiln_framework::query::json;
use kiln_framework::{
    stored_value, Address, Component, Event, ExecCtx, GenesisCtx, StateReadExt, StateWriteExt,
    TxError, TxResult, BASE_DENOM,
};
use kiln_staking::misbehavior::{consensus_address, MisbehaviorRecord};
use kiln_staking::pools::PoolsExt;
use kiln_staking::StakingExt;
use kiln_state::{StateRead, StateWrite};

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"slashing/";
pub const PARAMS_KEY: &[u8] = b"slashing/params";
pub const LIVENESS_PREFIX: &[u8] = b"slashing/liveness/";
pub const RECORD_PREFIX: &[u8] = b"slashing/record/";
pub const DOUBLE_SIGN_PREFIX: &[u8] = b"slashing/double_sign/";

pub const SLASHES_PATH: &str = "/kiln.slashing.v1.Query/Slashes";
pub const LIVENESS_PATH: &str = "/kiln.slashing.v1.Query/Liveness";
pub const PARAMS_PATH: &str = "/kiln.slashing.v1.Query/Params";

/// Most slash records a query returns.
pub const QUERY_LIMIT: usize = 100;

fn liveness_key(host: &Address) -> Vec<u8> {
    [LIVENESS_PREFIX, host.as_bytes()].concat()
}

fn record_key(height: u64, host: &Address, kind: Infraction) -> Vec<u8> {
    [
        RECORD_PREFIX,
        &height.to_be_bytes(),
        host.as_bytes(),
        &[kind as u8],
    ]
    .concat()
}

fn double_sign_key(host: &Address, misbehavior_height: u64) -> Vec<u8> {
    [
        DOUBLE_SIGN_PREFIX,
        host.as_bytes(),
        &misbehavior_height.to_be_bytes(),
    ]
    .concat()
}

/// SPEC §7's slashing parameters.
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
pub struct SlashingParams {
    /// Slash of an INVALID host, basis points of its collateral.
    pub invalid_bps: u32,
    /// Slash for downtime, basis points.
    pub downtime_bps: u32,
    /// Slash for a double sign, basis points.
    pub double_sign_bps: u32,
    /// Downtime: an inference miss rate above this (basis points).
    pub downtime_miss_rate_bps: u32,
    /// Downtime: signing fewer than this share of the epoch's expected
    /// blocks (basis points).
    pub min_signed_bps: u32,
    /// Settles a double signer stays jailed before `MsgUnjail` is accepted.
    pub jail_epochs: u64,
}

impl Default for SlashingParams {
    fn default() -> Self {
        SlashingParams {
            invalid_bps: 2_000,
            downtime_bps: 1_000,
            double_sign_bps: 500,
            downtime_miss_rate_bps: 500,
            min_signed_bps: 5_000,
            jail_epochs: 1,
        }
    }
}

impl SlashingParams {
    pub fn validate(&self) -> Result<(), String> {
        for (name, bps) in [
            ("invalid_bps", self.invalid_bps),
            ("downtime_bps", self.downtime_bps),
            ("double_sign_bps", self.double_sign_bps),
        ] {
            if bps >= 10_000 {
                return Err(format!(
                    "slashing.params.{name} must be below 10000 (a slash takes less than everything, so a pool's shares keep a value)"
                ));
            }
        }
        for (name, bps) in [
            ("downtime_miss_rate_bps", self.downtime_miss_rate_bps),
            ("min_signed_bps", self.min_signed_bps),
        ] {
            if bps > 10_000 {
                return Err(format!("slashing.params.{name} must be at most 10000"));
            }
        }
        Ok(())
    }
}

stored_value!(SlashingParams, "slashing params", 1);
kiln_framework::governed_params!(
    SlashingParams,
    "slashing",
    PARAMS_KEY,
    b"slashing/pending_params",
    |p| p.validate()
);

pub fn params<S: StateRead + ?Sized>(state: &S) -> TxResult<SlashingParams> {
    Ok(state.get_value(PARAMS_KEY)?.unwrap_or_default())
}

/// What a host was slashed for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum Infraction {
    Invalid = 1,
    Downtime = 2,
    DoubleSign = 3,
}

impl Infraction {
    pub fn as_str(self) -> &'static str {
        match self {
            Infraction::Invalid => "invalid",
            Infraction::Downtime => "downtime",
            Infraction::DoubleSign => "double_sign",
        }
    }
}

/// One slash, as recorded.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct SlashRecord {
    pub host: Address,
    pub infraction: Infraction,
    /// Why, in words (the miss rate, the signed share, the evidence).
    pub detail: String,
    pub fraction_bps: u32,
    /// The block that slashed.
    pub height: u64,
    /// Unbonding entries created from this height on were slashed too.
    pub infraction_height: u64,
    #[serde(with = "kiln_framework::serde_u128")]
    pub bonded_burned: u128,
    #[serde(with = "kiln_framework::serde_u128")]
    pub unbonding_burned: u128,
    pub jailed: bool,
}

stored_value!(SlashRecord, "slash record", 1);

/// A host's signing in one epoch.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct Liveness {
    pub epoch: u64,
    /// Blocks its key was in the signing set of.
    pub expected: u64,
    /// Of those, the ones it signed (`BlockIdFlag::Commit`).
    pub signed: u64,
}

stored_value!(Liveness, "liveness", 1);

/// One vote of FinalizeBlock's `decided_last_commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitVote {
    /// CometBFT's 20-byte validator address.
    pub validator_address: Vec<u8>,
    /// The validator signed the block (`BlockIdFlag::Commit`).
    pub signed: bool,
}

/// Most votes one block's commit is read for (CometBFT's validator sets
/// are far smaller; this bounds the work a malformed request can cause).
pub const MAX_VOTES_PER_BLOCK: usize = 10_000;

/// Counts the previous block's commit (`votes`) into each host's liveness
/// for `epoch`. Votes are matched to hosts through the validator set that
/// signed at `height − 1`; unknown addresses are skipped.
pub fn record_commit<S: StateWrite>(
    state: &mut S,
    height: u64,
    epoch: u64,
    votes: &[CommitVote],
) -> TxResult<()> {
    if votes.is_empty() || height < 2 {
        return Ok(());
    }
    let set = state.consensus_validators(height - 1)?;
    let owners: BTreeMap<[u8; 20], Address> = set
        .iter()
        .map(|(key, v)| (consensus_address(key), v.owner))
        .collect();
    for vote in votes.iter().take(MAX_VOTES_PER_BLOCK) {
        let Ok(address) = <[u8; 20]>::try_from(vote.validator_address.as_slice()) else {
            continue;
        };
        let Some(host) = owners.get(&address) else {
            continue;
        };
        let key = liveness_key(host);
        let mut live: Liveness = state.get_value(&key)?.unwrap_or_default();
        if live.epoch != epoch {
            live = Liveness {
                epoch,
                ..Default::default()
            };
        }
        live.expected = live.expected.saturating_add(1);
        if vote.signed {
            live.signed = live.signed.saturating_add(1);
        }
        state.put_value(key, &live)?;
    }
    Ok(())
}

/// Slashes `host` by `fraction_bps` and records it.
#[allow(clippy::too_many_arguments)]
fn slash<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    host: &Address,
    infraction: Infraction,
    fraction_bps: u32,
    height: u64,
    infraction_height: u64,
    detail: String,
    jailed: bool,
) -> TxResult<SlashRecord> {
    let slashed =
        kiln_staking::pools::slash_collateral(state, host, fraction_bps, infraction_height)?;
    let record = SlashRecord {
        host: *host,
        infraction,
        detail,
        fraction_bps,
        height,
        infraction_height,
        bonded_burned: slashed.bonded,
        unbonding_burned: slashed.unbonding,
        jailed,
    };
    state.put_value(record_key(height, host, infraction), &record)?;
    ctx.emit(
        Event::new("kiln.slashing.v1.EventSlash")
            .attr("host", host)
            .attr("infraction", infraction.as_str())
            .attr("fraction_bps", fraction_bps)
            .attr("bonded_burned", format!("{}{BASE_DENOM}", slashed.bonded))
            .attr(
                "unbonding_burned",
                format!("{}{BASE_DENOM}", slashed.unbonding),
            )
            .attr("detail", &record.detail)
            .attr("jailed", jailed),
    );
    Ok(record)
}

/// Acts on the evidence recorded in this block: each double sign by a
/// known host is slashed `double_sign_bps` and jailed for `jail_epochs`
/// settles, once per host and misbehaviour height.
pub fn handle_misbehavior<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    height: u64,
    records: &[MisbehaviorRecord],
) -> TxResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let p = params(state)?;
    for record in records {
        let Some(host) = record.host else { continue };
        if record.kind != "duplicate_vote" && record.kind != "light_client_attack" {
            continue;
        }
        let seen = double_sign_key(&host, record.misbehavior_height);
        if state.get_raw(&seen)?.is_some() {
            continue;
        }
        state.put_raw(seen, Vec::new());
        let until = state.settled_epoch()?.saturating_add(p.jail_epochs);
        kiln_staking::jail::jail(state, ctx, &host, height, until, "double sign")?;
        slash(
            state,
            ctx,
            &host,
            Infraction::DoubleSign,
            p.double_sign_bps,
            height,
            record.misbehavior_height,
            format!(
                "{} by validator {} at height {}",
                record.kind, record.validator_address, record.misbehavior_height
            ),
            true,
        )?;
    }
    Ok(())
}

/// What the settle knows of one host's epoch, for the settle-time rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpochConduct {
    pub invalid: bool,
    pub inferences_completed: u64,
    pub inferences_missed: u64,
}

/// The settle's slashing step for `epoch` (which began at `epoch_start`):
/// INVALID hosts, then downtime (inference misses or consensus signing).
/// Every host with a liveness record for the epoch is checked for signing,
/// every host in `conduct` for the rest.
pub fn settle<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    epoch: u64,
    epoch_start: u64,
    height: u64,
    conduct: &BTreeMap<Address, EpochConduct>,
) -> TxResult<()> {
    let p = params(state)?;
    let mut signing: BTreeMap<Address, Liveness> = BTreeMap::new();
    for (suffix, live) in state.prefix_values::<Liveness>(LIVENESS_PREFIX)? {
        if let Some(host) = Address::from_bytes(&suffix) {
            if live.epoch == epoch {
                signing.insert(host, live);
            }
        }
    }
    let mut hosts: Vec<Address> = conduct.keys().copied().collect();
    hosts.extend(signing.keys().copied());
    hosts.sort();
    hosts.dedup();
    for host in hosts {
        let c = conduct.get(&host).copied().unwrap_or_default();
        if c.invalid {
            slash(
                state,
                ctx,
                &host,
                Infraction::Invalid,
                p.invalid_bps,
                height,
                epoch_start,
                format!("INVALID in epoch {epoch}"),
                false,
            )?;
        }
        let served = u128::from(c.inferences_completed) + u128::from(c.inferences_missed);
        let missed_too_many = served > 0
            && u128::from(c.inferences_missed) * 10_000
                > u128::from(p.downtime_miss_rate_bps) * served;
        let live = signing.get(&host).copied();
        let signed_too_few = live.is_some_and(|l| {
            l.expected > 0
                && u128::from(l.signed) * 10_000
                    < u128::from(p.min_signed_bps) * u128::from(l.expected)
        });
        if missed_too_many || signed_too_few {
            let mut why = Vec::new();
            if missed_too_many {
                why.push(format!(
                    "missed {} of {served} inferences in epoch {epoch}",
                    c.inferences_missed
                ));
            }
            if let (true, Some(l)) = (signed_too_few, live) {
                why.push(format!(
                    "signed {} of {} blocks in epoch {epoch}",
                    l.signed, l.expected
                ));
            }
            slash(
                state,
                ctx,
                &host,
                Infraction::Downtime,
                p.downtime_bps,
                height,
                epoch_start,
                why.join("; "),
                false,
            )?;
        }
    }
    Ok(())
}

/// The newest slash records (of `host`, when given), newest first.
pub fn recent<S: StateRead + ?Sized>(
    state: &S,
    host: Option<&Address>,
    limit: usize,
) -> TxResult<Vec<SlashRecord>> {
    let mut all: Vec<SlashRecord> = state
        .prefix_values::<SlashRecord>(RECORD_PREFIX)?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| host.is_none_or(|h| r.host == *h))
        .collect();
    all.reverse();
    all.truncate(limit);
    Ok(all)
}

/// Genesis: the parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlashingGenesis {
    #[serde(default)]
    pub params: SlashingParams,
}

pub struct Slashing;

impl Component for Slashing {
    const NAME: &'static str = "slashing";
    type Genesis = SlashingGenesis;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &SlashingGenesis,
        _ctx: &GenesisCtx,
    ) -> TxResult<()> {
        genesis
            .params
            .validate()
            .map_err(TxError::invalid_request)?;
        state.put_value(PARAMS_KEY.to_vec(), &genesis.params)
    }
}

fn optional_address(data: &[u8]) -> TxResult<Option<Address>> {
    let t = String::from_utf8(data.to_vec())
        .map_err(|_| TxError::invalid_request("the address must be UTF-8 text"))?;
    let t = t.trim();
    if t.is_empty() {
        return Ok(None);
    }
    Address::parse(t)
        .or_else(|_| Address::parse_valoper(t))
        .map(Some)
        .map_err(|e| TxError::invalid_address(e.to_string()))
}

/// JSON queries: `Slashes` (the newest records; data: a host, or empty for
/// all), `Liveness` (a host's signing this epoch), `Params`.
pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        SLASHES_PATH => optional_address(data)
            .and_then(|h| recent(state, h.as_ref(), QUERY_LIMIT).and_then(|r| json(&r))),
        LIVENESS_PATH => optional_address(data).and_then(|h| {
            let h = h.ok_or_else(|| TxError::invalid_request("give a host address"))?;
            let live: Liveness = state.get_value(&liveness_key(&h))?.unwrap_or_default();
            json(&live)
        }),
        PARAMS_PATH => params(state).and_then(|p| json(&p)),
        _ => return None,
    };
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_refuse_a_whole_slash() {
        let mut p = SlashingParams::default();
        assert!(p.validate().is_ok());
        p.invalid_bps = 10_000;
        assert!(p.validate().unwrap_err().contains("invalid_bps"));
    }
}
