//! kiln-gov: governance by compute weight (SPEC §9).
//!
//! Owned here: **proposals** (Cosmos gov v1 messages, so cosmjs and wallets
//! can submit, deposit and vote), their **deposits** (held by the
//! governance module account), **votes** (plain and weighted), the
//! **tally** at the end of the voting period by each voter's effective
//! weight in force, and **software-upgrade plans** ([`upgrade`]).
//!
//! Not owned here: executing a passed proposal's messages. They are
//! ordinary messages signed by the governance authority
//! ([`kiln_framework::params::gov_authority`]); the app routes them through
//! the one message list (`kiln-messages`) in one overlay, so they apply
//! atomically — one failing message fails the proposal, with its reason
//! recorded ([`end_block`] takes the executor as an argument).
//!
//! Life of a proposal:
//!
//! | status | until | then |
//! |---|---|---|
//! | `deposit_period` | deposits reach `min_deposit` → voting starts; or `max_deposit_period_blocks` pass → `rejected`, deposits refunded | |
//! | `voting_period` | `voting_period_blocks` after voting started | tally |
//! | `passed` | quorum (`quorum_bps` of the total weight in force voted), veto below `veto_threshold_bps` of the votes, yes above `threshold_bps` of the non-abstain votes; messages executed | deposits refunded |
//! | `rejected` | quorum missed or yes not enough (refunded), or vetoed (deposits **burned**) | |
//! | `failed` | passed, but a message failed: nothing of it applied, `failed_reason` says why | deposits refunded |
//!
//! Voters are hosts: a vote counts with the voter's effective weight in
//! force at the tally (0 once it has none). Accounts that are not
//! registered hosts are refused when they vote. A host's ML operational key
//! can never vote (the vote messages are not ML-ops messages).
//!
//! Keys (all under `gov/`):
//!
//! | key | value |
//! |---|---|
//! | `gov/params` | [`GovParams`] |
//! | `gov/pending_params` | [`GovParams`] scheduled by a proposal (next epoch start) |
//! | `gov/next_id` | u64 BE: the next proposal id (ids start at 1) |
//! | `gov/proposal/{id 8}` | [`Proposal`] |
//! | `gov/deposit/{id 8}{depositor 20}` | u128 BE: ukiln deposited |
//! | `gov/vote/{id 8}{voter 20}` | [`Vote`] |
//! | `gov/queue/deposit/{deposit end 8}{id 8}` | empty: in the deposit period |
//! | `gov/queue/voting/{voting end 8}{id 8}` | empty: in the voting period |
//! | `gov/upgrade/plan` | [`upgrade::UpgradePlan`] |
//! | `gov/upgrade/done/{name}` | u64 BE: the height the upgrade was applied at |
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod msgs;
pub mod upgrade;

use cosmos_sdk_proto::Any;
use kiln_bank::state::BankExt;
use kiln_framework::params::gov_authority;
use kiln_framework::query::json;
use kiln_framework::{
    stored_value, Address, Coin, Coins, Component, Event, ExecCtx, GenesisCtx, StateReadExt,
    StateWriteExt, TxError, TxResult, BASE_DENOM,
};
use kiln_staking::StakingExt;
use kiln_state::{StateRead, StateWrite};

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"gov/";
pub const PARAMS_KEY: &[u8] = b"gov/params";
pub const NEXT_ID_KEY: &[u8] = b"gov/next_id";
pub const PROPOSAL_PREFIX: &[u8] = b"gov/proposal/";
pub const DEPOSIT_PREFIX: &[u8] = b"gov/deposit/";
pub const VOTE_PREFIX: &[u8] = b"gov/vote/";
pub const DEPOSIT_QUEUE_PREFIX: &[u8] = b"gov/queue/deposit/";
pub const VOTING_QUEUE_PREFIX: &[u8] = b"gov/queue/voting/";

pub const PROPOSALS_PATH: &str = "/kiln.gov.v1.Query/Proposals";
pub const PROPOSAL_PATH: &str = "/kiln.gov.v1.Query/Proposal";
pub const VOTES_PATH: &str = "/kiln.gov.v1.Query/Votes";
pub const TALLY_PATH: &str = "/kiln.gov.v1.Query/Tally";
pub const PARAMS_PATH: &str = "/kiln.gov.v1.Query/Params";
pub const UPGRADE_PATH: &str = "/kiln.gov.v1.Query/Upgrade";

/// Error codes of the `gov` codespace.
pub mod codes {
    pub const BAD_FIELD: u32 = 2;
    pub const UNKNOWN_PROPOSAL: u32 = 3;
    pub const INACTIVE_PROPOSAL: u32 = 4;
    pub const NOT_A_HOST: u32 = 5;
    pub const BAD_MESSAGE: u32 = 6;
    pub const BAD_UPGRADE: u32 = 7;
}

pub fn err(code: u32, log: impl Into<String>) -> TxError {
    TxError::module("gov", code, log)
}

/// Fixed-point scale of vote weights (Cosmos' 18-decimal `Dec`).
pub const WEIGHT_ONE: u128 = 1_000_000_000_000_000_000;

/// The governance module account: deposits are held here, and passed
/// proposals act as it.
pub fn module_account() -> Address {
    gov_authority()
}

fn proposal_key(id: u64) -> Vec<u8> {
    [PROPOSAL_PREFIX, &id.to_be_bytes()].concat()
}
fn deposit_key(id: u64, depositor: &Address) -> Vec<u8> {
    [DEPOSIT_PREFIX, &id.to_be_bytes(), depositor.as_bytes()].concat()
}
fn vote_key(id: u64, voter: &Address) -> Vec<u8> {
    [VOTE_PREFIX, &id.to_be_bytes(), voter.as_bytes()].concat()
}
fn queue_key(prefix: &[u8], end: u64, id: u64) -> Vec<u8> {
    [prefix, &end.to_be_bytes(), &id.to_be_bytes()].concat()
}

/// SPEC §9's governance parameters.
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
pub struct GovParams {
    /// ukiln of deposits a proposal needs before it is voted on.
    #[serde(with = "kiln_framework::serde_u128")]
    pub min_deposit: u128,
    /// Blocks a proposal may wait for its deposit.
    pub max_deposit_period_blocks: u64,
    /// Blocks of voting.
    pub voting_period_blocks: u64,
    /// Share of the total weight in force that must vote, basis points.
    pub quorum_bps: u32,
    /// Yes must be above this share of the non-abstain votes, basis points.
    pub threshold_bps: u32,
    /// No-with-veto at or above this share of the votes vetoes (deposits burned).
    pub veto_threshold_bps: u32,
    /// Most messages one proposal carries.
    pub max_messages: u32,
    /// Longest title, summary and metadata (bytes).
    pub max_title_len: u32,
    pub max_summary_len: u32,
    pub max_metadata_len: u32,
}

impl Default for GovParams {
    /// Mainnet-like: 48 h of 6-second blocks for deposits and votes.
    fn default() -> Self {
        GovParams {
            min_deposit: 1_000_000_000,
            max_deposit_period_blocks: 28_800,
            voting_period_blocks: 28_800,
            quorum_bps: 3_340,
            threshold_bps: 5_000,
            veto_threshold_bps: 3_340,
            max_messages: 16,
            max_title_len: 140,
            max_summary_len: 10_000,
            max_metadata_len: 10_000,
        }
    }
}

impl GovParams {
    /// The devnet's: 20 blocks to deposit and 20 to vote (SPEC §9's
    /// bracketed value), a 10 KILN deposit.
    pub fn devnet() -> Self {
        GovParams {
            min_deposit: 10_000_000,
            max_deposit_period_blocks: 20,
            voting_period_blocks: 20,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.min_deposit == 0 {
            return Err(
                "gov.params.min_deposit must be positive (it keeps spam proposals out)".into(),
            );
        }
        if self.max_deposit_period_blocks == 0 || self.voting_period_blocks == 0 {
            return Err(
                "gov.params.max_deposit_period_blocks and voting_period_blocks must be positive"
                    .into(),
            );
        }
        for (name, bps) in [
            ("quorum_bps", self.quorum_bps),
            ("threshold_bps", self.threshold_bps),
            ("veto_threshold_bps", self.veto_threshold_bps),
        ] {
            if bps == 0 || bps > 10_000 {
                return Err(format!("gov.params.{name} must be in 1..=10000"));
            }
        }
        if self.max_messages == 0 {
            return Err("gov.params.max_messages must be positive".into());
        }
        if self.max_title_len == 0 {
            return Err("gov.params.max_title_len must be positive".into());
        }
        Ok(())
    }
}

stored_value!(GovParams, "gov params", 1);
kiln_framework::governed_params!(GovParams, "gov", PARAMS_KEY, b"gov/pending_params", |p| p
    .validate());

pub fn params<S: StateRead + ?Sized>(state: &S) -> TxResult<GovParams> {
    Ok(state.get_value(PARAMS_KEY)?.unwrap_or_default())
}

/// Where a proposal is in its life (Cosmos' `ProposalStatus` numbering).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum ProposalStatus {
    DepositPeriod = 1,
    VotingPeriod = 2,
    Passed = 3,
    Rejected = 4,
    Failed = 5,
}

impl ProposalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::DepositPeriod => "deposit_period",
            ProposalStatus::VotingPeriod => "voting_period",
            ProposalStatus::Passed => "passed",
            ProposalStatus::Rejected => "rejected",
            ProposalStatus::Failed => "failed",
        }
    }

    /// Parses a status filter (`voting_period`, `voting`, `passed`, ...).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "deposit_period" | "deposit" => Some(ProposalStatus::DepositPeriod),
            "voting_period" | "voting" => Some(ProposalStatus::VotingPeriod),
            "passed" => Some(ProposalStatus::Passed),
            "rejected" => Some(ProposalStatus::Rejected),
            "failed" => Some(ProposalStatus::Failed),
            _ => None,
        }
    }
}

/// A message a proposal carries, as submitted.
#[derive(Debug, Clone, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct StoredAny {
    pub type_url: String,
    pub value: Vec<u8>,
}

impl StoredAny {
    pub fn to_any(&self) -> Any {
        Any {
            type_url: self.type_url.clone(),
            value: self.value.clone(),
        }
    }
}

impl serde::Serialize for StoredAny {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Any", 2)?;
        st.serialize_field("@type", &self.type_url)?;
        st.serialize_field(
            "value_base64",
            &base64::engine::general_purpose::STANDARD.encode(&self.value),
        )?;
        st.end()
    }
}

/// The votes of one tally, in weight units.
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
pub struct Tally {
    #[serde(with = "kiln_framework::serde_u128")]
    pub yes: u128,
    #[serde(with = "kiln_framework::serde_u128")]
    pub abstain: u128,
    #[serde(with = "kiln_framework::serde_u128")]
    pub no: u128,
    #[serde(with = "kiln_framework::serde_u128")]
    pub no_with_veto: u128,
    /// The total effective weight in force (the quorum's base).
    #[serde(with = "kiln_framework::serde_u128")]
    pub total_weight: u128,
}

impl Tally {
    pub fn voted(&self) -> u128 {
        self.yes
            .saturating_add(self.abstain)
            .saturating_add(self.no)
            .saturating_add(self.no_with_veto)
    }
}

/// What a tally decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    NoQuorum,
    Vetoed,
    Rejected,
}

/// SPEC §9's rule: quorum, then veto, then yes over the non-abstain votes
/// (integer comparisons; no rounding).
pub fn decide(tally: &Tally, p: &GovParams) -> Verdict {
    let voted = tally.voted();
    let bps = |x: u128, b: u32| x.saturating_mul(u128::from(b));
    if tally.total_weight == 0
        || voted.saturating_mul(10_000) < bps(tally.total_weight, p.quorum_bps)
    {
        return Verdict::NoQuorum;
    }
    if tally.no_with_veto.saturating_mul(10_000) >= bps(voted, p.veto_threshold_bps) {
        return Verdict::Vetoed;
    }
    let non_abstain = voted.saturating_sub(tally.abstain);
    if non_abstain > 0 && tally.yes.saturating_mul(10_000) > bps(non_abstain, p.threshold_bps) {
        return Verdict::Pass;
    }
    Verdict::Rejected
}

/// A proposal.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct Proposal {
    pub id: u64,
    pub proposer: Address,
    pub title: String,
    pub summary: String,
    pub metadata: String,
    pub messages: Vec<StoredAny>,
    pub status: ProposalStatus,
    pub submit_height: u64,
    pub deposit_end_height: u64,
    pub voting_start_height: Option<u64>,
    pub voting_end_height: Option<u64>,
    #[serde(with = "kiln_framework::serde_u128")]
    pub total_deposit: u128,
    /// The tally at the end of voting.
    pub final_tally: Option<Tally>,
    /// Why it was rejected or failed (empty while open and when passed).
    pub reason: String,
    /// Whether its deposits were burned (vetoed).
    pub deposits_burned: bool,
}

stored_value!(Proposal, "proposal", 1);

/// Cosmos' vote options.
pub mod option {
    pub const YES: i32 = 1;
    pub const ABSTAIN: i32 = 2;
    pub const NO: i32 = 3;
    pub const NO_WITH_VETO: i32 = 4;

    pub fn name(option: i32) -> &'static str {
        match option {
            YES => "yes",
            ABSTAIN => "abstain",
            NO => "no",
            NO_WITH_VETO => "no_with_veto",
            _ => "unspecified",
        }
    }

    /// `yes`, `no`, `abstain`, `no_with_veto` (or `veto`), or the Cosmos enum names.
    pub fn parse(text: &str) -> Option<i32> {
        match text.trim().to_ascii_lowercase().as_str() {
            "yes" | "vote_option_yes" | "1" => Some(YES),
            "abstain" | "vote_option_abstain" | "2" => Some(ABSTAIN),
            "no" | "vote_option_no" | "3" => Some(NO),
            "no_with_veto" | "nowithveto" | "veto" | "vote_option_no_with_veto" | "4" => {
                Some(NO_WITH_VETO)
            }
            _ => None,
        }
    }
}

/// One weighted part of a vote.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct VotePart {
    #[serde(serialize_with = "serialize_option")]
    pub option: i32,
    /// Share of the voter's weight, in units of 10⁻¹⁸.
    #[serde(with = "kiln_framework::serde_u128")]
    pub weight: u128,
}

fn serialize_option<S: serde::Serializer>(o: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(option::name(*o))
}

/// A voter's vote (the last one it sent counts).
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct Vote {
    pub proposal_id: u64,
    pub voter: Address,
    pub options: Vec<VotePart>,
    pub metadata: String,
    pub height: u64,
}

stored_value!(Vote, "vote", 1);

/// Parses a Cosmos `Dec` vote weight: a decimal (`0.5`) or its 18-decimal
/// atomics (`500000000000000000`, what cosmjs sends).
pub fn parse_weight(text: &str) -> Result<u128, String> {
    let text = text.trim();
    let bad = || format!("vote weight {text:?} is not a decimal in (0, 1]");
    if text.is_empty() {
        return Err(bad());
    }
    let value = match text.split_once('.') {
        None => text.parse::<u128>().map_err(|_| bad())?,
        Some((whole, frac)) => {
            if frac.len() > 18
                || !whole.chars().all(|c| c.is_ascii_digit())
                || !frac.chars().all(|c| c.is_ascii_digit())
                || (whole.is_empty() && frac.is_empty())
            {
                return Err(bad());
            }
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| bad())?
            };
            let mut frac_units: u128 = if frac.is_empty() {
                0
            } else {
                frac.parse().map_err(|_| bad())?
            };
            for _ in frac.len()..18 {
                frac_units = frac_units.saturating_mul(10);
            }
            whole
                .checked_mul(WEIGHT_ONE)
                .and_then(|w| w.checked_add(frac_units))
                .ok_or_else(bad)?
        }
    };
    if value == 0 || value > WEIGHT_ONE {
        return Err(bad());
    }
    Ok(value)
}

/// Checks a vote's options: known options, each at most once, weights
/// summing to exactly 1.
pub fn check_vote_parts(parts: &[VotePart]) -> TxResult<()> {
    if parts.is_empty() || parts.len() > 4 {
        return Err(err(codes::BAD_FIELD, "a vote has one to four options"));
    }
    let mut seen = Vec::new();
    let mut sum: u128 = 0;
    for part in parts {
        if !(option::YES..=option::NO_WITH_VETO).contains(&part.option) {
            return Err(err(
                codes::BAD_FIELD,
                format!(
                    "unknown vote option {} (yes, abstain, no, no_with_veto)",
                    part.option
                ),
            ));
        }
        if seen.contains(&part.option) {
            return Err(err(
                codes::BAD_FIELD,
                format!("option {} appears twice", option::name(part.option)),
            ));
        }
        seen.push(part.option);
        sum = sum.saturating_add(part.weight);
    }
    if sum != WEIGHT_ONE {
        return Err(err(codes::BAD_FIELD, "the options' weights must sum to 1"));
    }
    Ok(())
}

pub fn proposal<S: StateRead + ?Sized>(state: &S, id: u64) -> TxResult<Option<Proposal>> {
    state.get_value(&proposal_key(id))
}

fn must_proposal<S: StateRead + ?Sized>(state: &S, id: u64) -> TxResult<Proposal> {
    proposal(state, id)?.ok_or_else(|| err(codes::UNKNOWN_PROPOSAL, format!("no proposal {id}")))
}

/// Every proposal, newest first, optionally of one status.
pub fn proposals<S: StateRead + ?Sized>(
    state: &S,
    status: Option<ProposalStatus>,
    limit: usize,
) -> TxResult<Vec<Proposal>> {
    let mut all: Vec<Proposal> = state
        .prefix_values::<Proposal>(PROPOSAL_PREFIX)?
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| status.is_none_or(|s| p.status == s))
        .collect();
    all.reverse();
    all.truncate(limit);
    Ok(all)
}

pub fn votes<S: StateRead + ?Sized>(state: &S, id: u64) -> TxResult<Vec<Vote>> {
    Ok(state
        .prefix_values::<Vote>(&[VOTE_PREFIX, &id.to_be_bytes()].concat())?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// Deposits of a proposal: depositor → ukiln.
pub fn deposits<S: StateRead + ?Sized>(state: &S, id: u64) -> TxResult<Vec<(Address, u128)>> {
    let prefix = [DEPOSIT_PREFIX, &id.to_be_bytes()].concat();
    let mut out = Vec::new();
    for (key, _) in state.prefix_raw(&prefix)? {
        let depositor = key
            .get(prefix.len()..)
            .and_then(Address::from_bytes)
            .ok_or_else(|| TxError::internal("corrupt deposit key"))?;
        let amount = state.get_u128(&key)?.unwrap_or(0);
        out.push((depositor, amount));
    }
    Ok(out)
}

/// The tally of proposal `id`'s votes with the weights in force now.
pub fn tally<S: StateRead + ?Sized>(state: &S, id: u64) -> TxResult<Tally> {
    let weights = state.weights_in_force()?;
    let mut t = Tally {
        total_weight: weights.values().map(|w| u128::from(*w)).sum(),
        ..Default::default()
    };
    for vote in votes(state, id)? {
        let power = u128::from(weights.get(&vote.voter).copied().unwrap_or(0));
        for part in &vote.options {
            // power < 2⁶⁴ and weight ≤ 10¹⁸: the product fits in u128.
            let share = power.saturating_mul(part.weight) / WEIGHT_ONE;
            let slot = match part.option {
                option::YES => &mut t.yes,
                option::ABSTAIN => &mut t.abstain,
                option::NO => &mut t.no,
                _ => &mut t.no_with_veto,
            };
            *slot = slot.saturating_add(share);
        }
    }
    Ok(t)
}

fn ukiln(amount: u128) -> TxResult<Coins> {
    Coins::normalize(vec![Coin::new(BASE_DENOM, amount)])
}

/// The ukiln of a deposit (only ukiln is accepted).
pub fn deposit_amount(coins: &[cosmos_sdk_proto::cosmos::base::v1beta1::Coin]) -> TxResult<u128> {
    let coins = Coins::from_proto(coins)?;
    if let Some(other) = coins.iter().find(|c| c.denom != BASE_DENOM) {
        return Err(err(
            codes::BAD_FIELD,
            format!("deposits are in {BASE_DENOM}, got {}", other.denom),
        ));
    }
    Ok(coins.amount_of(BASE_DENOM))
}

/// Moves `amount` ukiln from `depositor` into proposal `p`'s deposits and
/// starts its voting period once `min_deposit` is reached.
fn add_deposit<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    p: &mut Proposal,
    depositor: &Address,
    amount: u128,
) -> TxResult<()> {
    if amount > 0 {
        state.transfer(ctx, depositor, &module_account(), &ukiln(amount)?)?;
        let key = deposit_key(p.id, depositor);
        let before = state.get_u128(&key)?.unwrap_or(0);
        let after = before
            .checked_add(amount)
            .ok_or_else(|| TxError::internal("deposit overflows"))?;
        state.put_u128(key, after);
        p.total_deposit = p
            .total_deposit
            .checked_add(amount)
            .ok_or_else(|| TxError::internal("deposit overflows"))?;
        ctx.emit(
            Event::new("kiln.gov.v1.EventDeposit")
                .attr("proposal_id", p.id)
                .attr("depositor", depositor)
                .attr("amount", format!("{amount}{BASE_DENOM}"))
                .attr("total_deposit", format!("{}{BASE_DENOM}", p.total_deposit)),
        );
    }
    let gp = params(state)?;
    if p.status == ProposalStatus::DepositPeriod && p.total_deposit >= gp.min_deposit {
        let height = ctx.block.height;
        let end = height.saturating_add(gp.voting_period_blocks);
        state.delete_raw(queue_key(DEPOSIT_QUEUE_PREFIX, p.deposit_end_height, p.id));
        state.put_raw(queue_key(VOTING_QUEUE_PREFIX, end, p.id), Vec::new());
        p.status = ProposalStatus::VotingPeriod;
        p.voting_start_height = Some(height);
        p.voting_end_height = Some(end);
        ctx.emit(
            Event::new("kiln.gov.v1.EventVotingStarted")
                .attr("proposal_id", p.id)
                .attr("voting_end_height", end),
        );
    }
    Ok(())
}

/// What a submitted proposal holds, after its messages were checked by
/// the caller (decoded, known, signed by the governance authority).
pub struct Submission {
    pub proposer: Address,
    pub title: String,
    pub summary: String,
    pub metadata: String,
    pub messages: Vec<StoredAny>,
    pub initial_deposit: u128,
}

/// Stateless checks of a submission's text fields against the params.
pub fn check_texts(p: &GovParams, title: &str, summary: &str, metadata: &str) -> TxResult<()> {
    if title.trim().is_empty() {
        return Err(err(codes::BAD_FIELD, "a proposal needs a title"));
    }
    for (name, text, max) in [
        ("title", title, p.max_title_len),
        ("summary", summary, p.max_summary_len),
        ("metadata", metadata, p.max_metadata_len),
    ] {
        if text.len() > max as usize {
            return Err(err(
                codes::BAD_FIELD,
                format!("the {name} is {} bytes; at most {max}", text.len()),
            ));
        }
    }
    Ok(())
}

/// Records a new proposal and its initial deposit; returns its id.
pub fn submit<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>, s: Submission) -> TxResult<u64> {
    let gp = params(state)?;
    check_texts(&gp, &s.title, &s.summary, &s.metadata)?;
    if s.messages.len() > gp.max_messages as usize {
        return Err(err(
            codes::BAD_FIELD,
            format!(
                "{} messages; a proposal carries at most {}",
                s.messages.len(),
                gp.max_messages
            ),
        ));
    }
    let id = state.get_u64(NEXT_ID_KEY)?.unwrap_or(1);
    state.put_u64(NEXT_ID_KEY.to_vec(), id.saturating_add(1));
    let height = ctx.block.height;
    let deposit_end = height.saturating_add(gp.max_deposit_period_blocks);
    let mut p = Proposal {
        id,
        proposer: s.proposer,
        title: s.title,
        summary: s.summary,
        metadata: s.metadata,
        messages: s.messages,
        status: ProposalStatus::DepositPeriod,
        submit_height: height,
        deposit_end_height: deposit_end,
        voting_start_height: None,
        voting_end_height: None,
        total_deposit: 0,
        final_tally: None,
        reason: String::new(),
        deposits_burned: false,
    };
    state.put_raw(queue_key(DEPOSIT_QUEUE_PREFIX, deposit_end, id), Vec::new());
    ctx.emit(
        Event::new("kiln.gov.v1.EventProposalSubmitted")
            .attr("proposal_id", id)
            .attr("proposer", s.proposer)
            .attr(
                "messages",
                p.messages
                    .iter()
                    .map(|m| m.type_url.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .attr("deposit_end_height", deposit_end),
    );
    add_deposit(state, ctx, &mut p, &s.proposer, s.initial_deposit)?;
    state.put_value(proposal_key(id), &p)?;
    Ok(id)
}

/// `MsgDeposit`.
pub fn deposit<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    id: u64,
    depositor: &Address,
    amount: u128,
) -> TxResult<()> {
    let mut p = must_proposal(state, id)?;
    if !matches!(
        p.status,
        ProposalStatus::DepositPeriod | ProposalStatus::VotingPeriod
    ) {
        return Err(err(
            codes::INACTIVE_PROPOSAL,
            format!(
                "proposal {id} is {}; deposits are closed",
                p.status.as_str()
            ),
        ));
    }
    if amount == 0 {
        return Err(err(codes::BAD_FIELD, "the deposit must be positive"));
    }
    add_deposit(state, ctx, &mut p, depositor, amount)?;
    state.put_value(proposal_key(id), &p)
}

/// `MsgVote` / `MsgVoteWeighted`: a registered host's vote on a proposal in
/// its voting period (a later vote replaces an earlier one).
pub fn vote<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    id: u64,
    voter: &Address,
    parts: Vec<VotePart>,
    metadata: String,
) -> TxResult<()> {
    check_vote_parts(&parts)?;
    let p = must_proposal(state, id)?;
    if p.status != ProposalStatus::VotingPeriod {
        return Err(err(
            codes::INACTIVE_PROPOSAL,
            format!(
                "proposal {id} is {}; it is not being voted on",
                p.status.as_str()
            ),
        ));
    }
    if kiln_hosts::state::HostsExt::host(state, voter)?.is_none() {
        return Err(err(
            codes::NOT_A_HOST,
            format!("{voter} is not a registered host: voting power is a host's effective weight (SPEC §9)"),
        ));
    }
    let gp = params(state)?;
    if metadata.len() > gp.max_metadata_len as usize {
        return Err(err(codes::BAD_FIELD, "the vote's metadata is too long"));
    }
    let summary = parts
        .iter()
        .map(|part| {
            format!(
                "{}={}",
                option::name(part.option),
                format_weight(part.weight)
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    state.put_value(
        vote_key(id, voter),
        &Vote {
            proposal_id: id,
            voter: *voter,
            options: parts,
            metadata,
            height: ctx.block.height,
        },
    )?;
    ctx.emit(
        Event::new("kiln.gov.v1.EventVote")
            .attr("proposal_id", id)
            .attr("voter", voter)
            .attr("option", summary),
    );
    Ok(())
}

/// `0.5` for half a vote.
pub fn format_weight(weight: u128) -> String {
    let whole = weight / WEIGHT_ONE;
    let frac = weight % WEIGHT_ONE;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:018}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Pays every deposit of `id` back, or burns them all.
fn settle_deposits<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    id: u64,
    burn: bool,
) -> TxResult<()> {
    let all = deposits(state, id)?;
    let mut total: u128 = 0;
    for (depositor, amount) in &all {
        state.delete_raw(deposit_key(id, depositor));
        if *amount == 0 {
            continue;
        }
        total = total.saturating_add(*amount);
        if !burn {
            state.transfer(ctx, &module_account(), depositor, &ukiln(*amount)?)?;
        }
    }
    if burn && total > 0 {
        state.burn(&module_account(), &ukiln(total)?)?;
    }
    ctx.emit(
        Event::new(if burn {
            "kiln.gov.v1.EventDepositsBurned"
        } else {
            "kiln.gov.v1.EventDepositsRefunded"
        })
        .attr("proposal_id", id)
        .attr("amount", format!("{total}{BASE_DENOM}")),
    );
    Ok(())
}

/// Ends the deposit and voting periods due at `height`. A passed
/// proposal's messages go to `execute` (the app: every message in one
/// overlay, all or nothing); its error text becomes the proposal's
/// `reason` and status `failed`.
pub fn end_block<S, F>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    height: u64,
    mut execute: F,
) -> TxResult<()>
where
    S: StateWrite,
    F: FnMut(&mut S, &mut ExecCtx<'_>, &[Any]) -> Result<(), String>,
{
    let due = |state: &S, prefix: &[u8]| -> TxResult<Vec<(Vec<u8>, u64)>> {
        let mut out = Vec::new();
        for (key, _) in state.prefix_raw(prefix)? {
            let rest = key.get(prefix.len()..).unwrap_or_default();
            let (Some(end), Some(id)) = (
                rest.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()),
                rest.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()),
            ) else {
                return Err(TxError::internal("corrupt governance queue key"));
            };
            if u64::from_be_bytes(end) > height {
                break;
            }
            out.push((key, u64::from_be_bytes(id)));
        }
        Ok(out)
    };
    // Deposit periods that ended without the minimum deposit.
    for (key, id) in due(state, DEPOSIT_QUEUE_PREFIX)? {
        state.delete_raw(key);
        let mut p = must_proposal(state, id)?;
        if p.status != ProposalStatus::DepositPeriod {
            continue;
        }
        let min = params(state)?.min_deposit;
        p.status = ProposalStatus::Rejected;
        p.reason = format!(
            "the deposit period ended with {}{BASE_DENOM} of the {min}{BASE_DENOM} needed",
            p.total_deposit
        );
        settle_deposits(state, ctx, id, false)?;
        ctx.emit(
            Event::new("kiln.gov.v1.EventProposalRejected")
                .attr("proposal_id", id)
                .attr("reason", &p.reason),
        );
        state.put_value(proposal_key(id), &p)?;
    }
    // Voting periods that ended: tally, then execute or not.
    for (key, id) in due(state, VOTING_QUEUE_PREFIX)? {
        state.delete_raw(key);
        let mut p = must_proposal(state, id)?;
        if p.status != ProposalStatus::VotingPeriod {
            continue;
        }
        let gp = params(state)?;
        let t = tally(state, id)?;
        p.final_tally = Some(t);
        let verdict = decide(&t, &gp);
        match verdict {
            Verdict::Pass => {
                settle_deposits(state, ctx, id, false)?;
                let messages: Vec<Any> = p.messages.iter().map(StoredAny::to_any).collect();
                match execute(state, ctx, &messages) {
                    Ok(()) => {
                        p.status = ProposalStatus::Passed;
                        ctx.emit(
                            Event::new("kiln.gov.v1.EventProposalPassed")
                                .attr("proposal_id", id)
                                .attr("yes", t.yes)
                                .attr("no", t.no)
                                .attr("abstain", t.abstain)
                                .attr("no_with_veto", t.no_with_veto),
                        );
                    }
                    Err(reason) => {
                        p.status = ProposalStatus::Failed;
                        p.reason = reason;
                        ctx.emit(
                            Event::new("kiln.gov.v1.EventProposalFailed")
                                .attr("proposal_id", id)
                                .attr("reason", &p.reason),
                        );
                    }
                }
            }
            Verdict::NoQuorum | Verdict::Vetoed | Verdict::Rejected => {
                let burn = verdict == Verdict::Vetoed;
                p.status = ProposalStatus::Rejected;
                p.deposits_burned = burn;
                p.reason = match verdict {
                    Verdict::NoQuorum => format!(
                        "no quorum: weight {} of {} voted; {} bps needed",
                        t.voted(),
                        t.total_weight,
                        gp.quorum_bps
                    ),
                    Verdict::Vetoed => format!(
                        "vetoed: no_with_veto {} of {} voted (threshold {} bps); deposits burned",
                        t.no_with_veto,
                        t.voted(),
                        gp.veto_threshold_bps
                    ),
                    _ => format!(
                        "yes {} of {} non-abstain votes is not above {} bps",
                        t.yes,
                        t.voted().saturating_sub(t.abstain),
                        gp.threshold_bps
                    ),
                };
                settle_deposits(state, ctx, id, burn)?;
                ctx.emit(
                    Event::new("kiln.gov.v1.EventProposalRejected")
                        .attr("proposal_id", id)
                        .attr("reason", &p.reason),
                );
            }
        }
        state.put_value(proposal_key(id), &p)?;
    }
    Ok(())
}

/// Genesis: the parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovGenesis {
    #[serde(default)]
    pub params: GovParams,
}

pub struct Gov;

impl Component for Gov {
    const NAME: &'static str = "gov";
    type Genesis = GovGenesis;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &GovGenesis,
        _ctx: &GenesisCtx,
    ) -> TxResult<()> {
        genesis
            .params
            .validate()
            .map_err(TxError::invalid_request)?;
        state.put_value(PARAMS_KEY.to_vec(), &genesis.params)
    }
}

fn id_arg(data: &[u8]) -> TxResult<u64> {
    let text = std::str::from_utf8(data)
        .map_err(|_| TxError::invalid_request("the proposal id must be UTF-8 text"))?;
    text.trim()
        .parse()
        .map_err(|_| TxError::invalid_request(format!("{:?} is not a proposal id", text.trim())))
}

/// Most proposals the `Proposals` query returns.
pub const QUERY_LIMIT: usize = 100;

/// JSON queries other than `Proposal(s)` (the app answers those, adding
/// each message's readable form): `Votes` (data: id), `Tally` (data: id;
/// the final tally once voting ended, else the current one), `Params`,
/// `Upgrade` (the pending plan and the applied upgrades).
pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let answer = match path {
        VOTES_PATH => (|| json(&votes(state, id_arg(data)?)?))(),
        TALLY_PATH => (|| {
            let id = id_arg(data)?;
            let p = must_proposal(state, id)?;
            let gp = params(state)?;
            let t = match p.final_tally {
                Some(t) => t,
                None => tally(state, id)?,
            };
            let verdict = match decide(&t, &gp) {
                Verdict::Pass => "pass",
                Verdict::NoQuorum => "no_quorum",
                Verdict::Vetoed => "vetoed",
                Verdict::Rejected => "rejected",
            };
            json(&serde_json::json!({
                "proposal_id": id,
                "status": p.status.as_str(),
                "final": p.final_tally.is_some(),
                "tally": t,
                "would_be": verdict,
            }))
        })(),
        PARAMS_PATH => (|| {
            json(&serde_json::json!({
                "params": params(state)?,
                "pending": kiln_framework::params::pending::<GovParams, S>(state)?,
                "authority": module_account(),
            }))
        })(),
        UPGRADE_PATH => (|| {
            json(&serde_json::json!({
                "plan": upgrade::plan(state)?,
                "applied": upgrade::applied(state)?
                    .into_iter()
                    .map(|(name, height)| serde_json::json!({"name": name, "height": height}))
                    .collect::<Vec<_>>(),
            }))
        })(),
        _ => return None,
    };
    Some(answer)
}

/// Parses the `Proposals` query's data: empty, or a status filter.
pub fn status_filter(data: &[u8]) -> TxResult<Option<ProposalStatus>> {
    let text = std::str::from_utf8(data)
        .map_err(|_| TxError::invalid_request("the status filter must be UTF-8 text"))?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    ProposalStatus::parse(text).map(Some).ok_or_else(|| {
        TxError::invalid_request(format!(
            "unknown status {text:?} (deposit_period, voting_period, passed, rejected, failed)"
        ))
    })
}

/// Parses the `Proposal` query's data.
pub fn proposal_arg<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Proposal> {
    must_proposal(state, id_arg(data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(yes: u128, abstain: u128, no: u128, veto: u128, total: u128) -> Tally {
        Tally {
            yes,
            abstain,
            no,
            no_with_veto: veto,
            total_weight: total,
        }
    }

    #[test]
    fn the_tally_rule_follows_the_spec() {
        let p = GovParams::default();
        // 33.4% quorum: 334 of 1000 voted is enough, 333 is not.
        assert_eq!(decide(&t(334, 0, 0, 0, 1000), &p), Verdict::Pass);
        assert_eq!(decide(&t(333, 0, 0, 0, 1000), &p), Verdict::NoQuorum);
        // Veto at 33.4% of the votes burns.
        assert_eq!(decide(&t(666, 0, 0, 334, 1000), &p), Verdict::Vetoed);
        assert_eq!(decide(&t(667, 0, 0, 333, 1000), &p), Verdict::Pass);
        // Yes must be above half of the non-abstain votes.
        assert_eq!(decide(&t(300, 400, 300, 0, 1000), &p), Verdict::Rejected);
        assert_eq!(decide(&t(301, 400, 299, 0, 1000), &p), Verdict::Pass);
        // All abstain: nothing to pass.
        assert_eq!(decide(&t(0, 1000, 0, 0, 1000), &p), Verdict::Rejected);
        // No weight at all: no quorum.
        assert_eq!(decide(&t(0, 0, 0, 0, 0), &p), Verdict::NoQuorum);
    }

    #[test]
    fn weights_parse_as_decimals_or_atomics() {
        assert_eq!(parse_weight("0.5").unwrap(), WEIGHT_ONE / 2);
        assert_eq!(parse_weight("500000000000000000").unwrap(), WEIGHT_ONE / 2);
        assert_eq!(parse_weight("1").unwrap(), 1);
        assert_eq!(parse_weight("1.0").unwrap(), WEIGHT_ONE);
        assert_eq!(parse_weight(".25").unwrap(), WEIGHT_ONE / 4);
        for bad in [
            "",
            "0",
            "0.0",
            "1.5",
            "-0.5",
            "0.1234567890123456789",
            "x",
            ".",
        ] {
            assert!(parse_weight(bad).is_err(), "{bad}");
        }
        assert_eq!(format_weight(WEIGHT_ONE / 4), "0.25");
        assert_eq!(format_weight(WEIGHT_ONE), "1");
    }

    #[test]
    fn vote_parts_must_sum_to_one_without_repeats() {
        let part = |option, weight| VotePart { option, weight };
        assert!(check_vote_parts(&[part(option::YES, WEIGHT_ONE)]).is_ok());
        assert!(check_vote_parts(&[
            part(option::YES, WEIGHT_ONE / 2),
            part(option::NO, WEIGHT_ONE / 2)
        ])
        .is_ok());
        assert!(check_vote_parts(&[part(option::YES, WEIGHT_ONE / 2)]).is_err());
        assert!(check_vote_parts(&[
            part(option::YES, WEIGHT_ONE / 2),
            part(option::YES, WEIGHT_ONE / 2)
        ])
        .is_err());
        assert!(check_vote_parts(&[part(0, WEIGHT_ONE)]).is_err());
        assert!(check_vote_parts(&[part(5, WEIGHT_ONE)]).is_err());
        assert!(check_vote_parts(&[]).is_err());
    }

    #[test]
    fn params_refuse_nonsense() {
        assert!(GovParams::default().validate().is_ok());
        assert!(GovParams::devnet().validate().is_ok());
        let p = GovParams {
            quorum_bps: 10_001,
            ..Default::default()
        };
        assert!(p.validate().is_err());
        let p = GovParams {
            voting_period_blocks: 0,
            ..Default::default()
        };
        assert!(p.validate().is_err());
        let p = GovParams {
            min_deposit: 0,
            ..Default::default()
        };
        assert!(p.validate().is_err());
    }
}
