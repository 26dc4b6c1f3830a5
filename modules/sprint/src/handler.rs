//! Execution of sprint messages. Stateless checks already ran
//! (`MsgKind::validate_basic`); stage rules come from the epochs module, the
//! host registry from `kiln-hosts`, weights in force from `kiln-staking`.
//! Every refusal says which stage or check failed.

use kiln_bank::state::BankExt;
use kiln_epochs::{EpochExt, Stage};
use kiln_framework::msg::address_field;
use kiln_framework::{
    Address, Coin, Coins, Event, ExecCtx, StateReadExt, StateWriteExt, TxError, TxResult,
    BASE_DENOM,
};
use kiln_hosts::mlnodes::{self, HOST_LANE};
use kiln_hosts::HostsExt;
use kiln_sprint_protocol::{challenge, leaf, merkle, vote};
use kiln_staking::StakingExt;
use kiln_state::StateWrite;

use crate::beacon;
use crate::keys;
use crate::msgs::*;
use crate::state::{self, Commitment, Opened, OpenedLeaves, WeightTable};

pub const CODESPACE: &str = "sprint";

/// Error codes of the `sprint` codespace (the README's error table lists
/// them; the worker matches on these, never on text).
pub mod codes {
    /// The sender (host or voter) is not a registered host.
    pub const NOT_A_HOST: u32 = 4;
    /// The message names another epoch than the chain's current one.
    pub const WRONG_EPOCH: u32 = 5;
    /// The message is not accepted in the current stage.
    pub const WRONG_STAGE: u32 = 6;
    /// A commitment root that is not 32 bytes.
    pub const BAD_ROOT: u32 = 7;
    /// A commitment count of 0 or above 2^32 − 1.
    pub const BAD_COUNT: u32 = 8;
    /// An opening without a commitment in that epoch.
    pub const NO_COMMITMENT: u32 = 9;
    /// Leaves already opened for the epoch.
    pub const ALREADY_OPENED: u32 = 10;
    /// Not the challenged number of leaves.
    pub const WRONG_LEAF_COUNT: u32 = 11;
    /// A leaf index that is not the challenged index.
    pub const WRONG_LEAF_INDEX: u32 = 12;
    /// A Merkle proof that does not verify (or malformed proof elements).
    pub const BAD_PROOF: u32 = 13;
    /// A leaf whose distance is not below `r_target`.
    pub const NOT_A_SHARE: u32 = 14;
    /// Opened leaves whose nonces do not strictly increase.
    pub const REPEATED_NONCE: u32 = 15;
    /// A vote on a host with no opening.
    pub const NOTHING_TO_VOTE_ON: u32 = 16;
    /// The voter is not on the host's committee.
    pub const NOT_ON_COMMITTEE: u32 = 17;
    /// A vote commitment that is not 32 bytes.
    pub const BAD_VOTE_COMMITMENT: u32 = 18;
    /// A second vote commitment for the same host.
    pub const VOTE_ALREADY_COMMITTED: u32 = 19;
    /// A reveal without a committed vote.
    pub const NO_VOTE_TO_REVEAL: u32 = 20;
    /// A reveal that does not match its commitment.
    pub const REVEAL_MISMATCH: u32 = 21;
    /// A second reveal.
    pub const VOTE_ALREADY_REVEALED: u32 = 22;
    /// The host's account cannot pay the commitment bond (`commit_bond`).
    pub const BOND_UNPAID: u32 = 23;
    /// An escalation vote on a host that was not escalated.
    pub const NOT_ESCALATED: u32 = 24;
    /// An escalation vote from a host without weight in force.
    pub const NO_WEIGHT_IN_FORCE: u32 = 25;
    /// A host voting in its own escalation.
    pub const OWN_ESCALATION: u32 = 26;
    /// A commitment's `secret_hash` that is not 32 bytes.
    pub const BAD_SECRET_HASH: u32 = 30;
    /// A revealed secret that is not 32 bytes.
    pub const BAD_SECRET: u32 = 31;
    /// A secret that does not hash to the commitment's `secret_hash`.
    pub const SECRET_MISMATCH: u32 = 32;
    /// A second secret reveal.
    pub const SECRET_ALREADY_REVEALED: u32 = 33;
    /// An opening by a host that did not reveal its secret.
    pub const SECRET_NOT_REVEALED: u32 = 34;
    /// A host without weight in force committing in an epoch that has no
    /// place left (`max_hosts_per_epoch`).
    pub const EPOCH_FULL: u32 = 35;
    /// A sprint message for an ML node the host has not declared, or one
    /// that is not enabled in force.
    pub const ML_NODE_NOT_ENABLED: u32 = 36;
    /// A sprint message whose ML key is not the named node's (or a node's
    /// key sending for the host's own worker).
    pub const WRONG_ML_NODE: u32 = 37;
    /// An opened leaf whose nonce lies outside the unit's nonce lane: two
    /// units of one host would count the same nonce.
    pub const NONCE_OUTSIDE_LANE: u32 = 38;
    /// A malformed ML node id.
    pub const BAD_ML_NODE: u32 = 39;
}

pub(crate) fn err(code: u32, log: impl Into<String>) -> TxError {
    TxError::module(CODESPACE, code, log)
}

fn registered(state: &impl kiln_state::StateRead, addr: &Address, role: &str) -> TxResult<()> {
    if state.is_host(addr)? {
        Ok(())
    } else {
        Err(err(
            codes::NOT_A_HOST,
            format!("{role} {addr} is not a registered host"),
        ))
    }
}

fn current_epoch(
    state: &impl kiln_state::StateRead,
    ctx: &ExecCtx<'_>,
    epoch: u64,
) -> TxResult<kiln_epochs::EpochInfo> {
    let info = state.epoch_info(ctx.block.height)?;
    if info.epoch != epoch {
        return Err(err(
            codes::WRONG_EPOCH,
            format!(
                "message is for epoch {epoch} but the chain is in epoch {}",
                info.epoch
            ),
        ));
    }
    Ok(info)
}

fn wrong_stage(info: &kiln_epochs::EpochInfo, wanted: &str) -> TxError {
    err(
        codes::WRONG_STAGE,
        format!(
            "{wanted} not accepted in stage {} of epoch {} (height {}, next stage at {})",
            info.stage.as_str(),
            info.epoch,
            info.height,
            info.next_stage_height
        ),
    )
}

/// The nonce lane of the sprint unit a message is for: the host's own
/// worker's ([`HOST_LANE`], `ml_node` empty) or that of one of its ML nodes,
/// which must be enabled in force. When an ML key acts for the host (inside
/// `MsgExec`), it must be the named node's key — and a node's key cannot
/// act for the host's own worker — so a stolen machine can only spend its
/// own node's duties.
pub(crate) fn unit_lane(
    state: &impl kiln_state::StateRead,
    ctx: &ExecCtx<'_>,
    host: &Address,
    ml_node: &str,
) -> TxResult<u32> {
    if ml_node.is_empty() {
        if let Some(key) = ctx.acting_key {
            if let Some(node) = mlnodes::node_of_key(state, host, &key)? {
                return Err(err(
                    codes::WRONG_ML_NODE,
                    format!(
                        "{key} is the key of ML node {:?} of {host}: its sprint messages name ml_node {:?}",
                        node.id, node.id
                    ),
                ));
            }
        }
        return Ok(HOST_LANE);
    }
    let node = mlnodes::ml_node(state, host, ml_node)?.ok_or_else(|| {
        err(
            codes::ML_NODE_NOT_ENABLED,
            format!("host {host} has no ML node {ml_node:?} (kiln query host {host})"),
        )
    })?;
    if !node.enabled {
        return Err(err(
            codes::ML_NODE_NOT_ENABLED,
            format!(
                "ML node {ml_node:?} of {host} is {}: it sprints only in epochs that start with it enabled",
                node.state_name()
            ),
        ));
    }
    if let Some(key) = ctx.acting_key {
        if node.ml_key != key {
            return Err(err(
                codes::WRONG_ML_NODE,
                format!(
                    "ML node {ml_node:?} of {host} signs with {}, not {key}",
                    node.ml_key
                ),
            ));
        }
    }
    Ok(node.lane)
}

pub fn commit<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSprintCommit,
) -> TxResult<()> {
    let host = address_field(&msg.host, "host")?;
    registered(state, &host, "host")?;
    let info = current_epoch(state, ctx, msg.epoch)?;
    if !info.stage.accepts_commits() {
        return Err(wrong_stage(
            &info,
            "MsgSprintCommit (the commit deadline has passed)",
        ));
    }
    unit_lane(state, ctx, &host, &msg.ml_node)?;
    // The host's first commitment of the epoch, by any of its units.
    if !state.has_any_under(&keys::commits_of_host(msg.epoch, &host))? {
        admit_host(state, msg.epoch, &host)?;
    }
    lock_bond(state, ctx, msg.epoch, &host)?;
    let record = Commitment {
        root: hex::encode(&msg.root),
        count: msg.count,
        height: ctx.block.height,
    };
    state.put_value(keys::unit_commit(msg.epoch, &host, &msg.ml_node), &record)?;
    // The last commitment's secret hash counts, like its root.
    state.put_raw(
        keys::secret_hash(msg.epoch, &host, &msg.ml_node),
        msg.secret_hash.clone(),
    );
    let mut event = Event::new("kiln.sprint.v1.EventSprintCommit")
        .attr("epoch", msg.epoch)
        .attr("host", host)
        .attr("count", msg.count)
        .attr("root", &record.root);
    if !msg.ml_node.is_empty() {
        event = event.attr("ml_node", &msg.ml_node);
    }
    ctx.emit(event);
    Ok(())
}

/// `MsgSprintRevealSecret`: in the `SecretReveal` stage, the secret behind
/// the host's last commitment's `secret_hash`.
pub fn reveal_secret<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSprintRevealSecret,
) -> TxResult<()> {
    let host = address_field(&msg.host, "host")?;
    registered(state, &host, "host")?;
    let info = current_epoch(state, ctx, msg.epoch)?;
    if info.stage != Stage::SecretReveal {
        return Err(wrong_stage(&info, "MsgSprintRevealSecret"));
    }
    unit_lane(state, ctx, &host, &msg.ml_node)?;
    let node = &msg.ml_node;
    let committed = beacon::secret_hash(state, msg.epoch, &host, node)?.ok_or_else(|| {
        err(
            codes::NO_COMMITMENT,
            format!(
                "{} made no sprint commitment in epoch {}",
                unit_name(&host, node),
                msg.epoch
            ),
        )
    })?;
    if beacon::revealed_secret(state, msg.epoch, &host, node)?.is_some() {
        return Err(err(
            codes::SECRET_ALREADY_REVEALED,
            "secret already revealed for this epoch",
        ));
    }
    if challenge::secret_hash(&msg.secret) != committed {
        return Err(err(
            codes::SECRET_MISMATCH,
            "the secret does not hash to the commitment's secret_hash",
        ));
    }
    state.put_raw(keys::secret(msg.epoch, &host, node), msg.secret.clone());
    let mut event = Event::new("kiln.sprint.v1.EventSecretRevealed")
        .attr("epoch", msg.epoch)
        .attr("host", host);
    if !node.is_empty() {
        event = event.attr("ml_node", node);
    }
    ctx.emit(event);
    Ok(())
}

/// `kiln1… ` or `ML node "id" of kiln1…`, for error messages.
fn unit_name(host: &Address, ml_node: &str) -> String {
    if ml_node.is_empty() {
        host.to_string()
    } else {
        format!("ML node {ml_node:?} of {host}")
    }
}

pub fn open<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSprintOpen,
) -> TxResult<()> {
    let host = address_field(&msg.host, "host")?;
    registered(state, &host, "host")?;
    let info = current_epoch(state, ctx, msg.epoch)?;
    if info.stage != Stage::Open {
        return Err(wrong_stage(&info, "MsgSprintOpen"));
    }
    let node = msg.ml_node.as_str();
    let lane = unit_lane(state, ctx, &host, node)?;
    let commit = state::unit_commitment(state, msg.epoch, &host, node)?.ok_or_else(|| {
        err(
            codes::NO_COMMITMENT,
            format!(
                "{} made no sprint commitment in epoch {}",
                unit_name(&host, node),
                msg.epoch
            ),
        )
    })?;
    if state::unit_opened(state, msg.epoch, &host, node)?.is_some() {
        return Err(err(
            codes::ALREADY_OPENED,
            "leaves already opened for this epoch",
        ));
    }
    if beacon::revealed_secret(state, msg.epoch, &host, node)?.is_none() {
        return Err(err(
            codes::SECRET_NOT_REVEALED,
            format!(
                "{} did not reveal its secret in epoch {}: its commitment gets no weight this epoch",
                unit_name(&host, node),
                msg.epoch
            ),
        ));
    }
    let params = state::sprint_params(state)?;
    let seed = beacon::unit_challenge(state, msg.epoch, &host, node)?
        .ok_or_else(|| TxError::internal("beacon missing in the open stage"))?;
    let count =
        u32::try_from(commit.count).map_err(|_| err(codes::BAD_COUNT, "count too large"))?;
    let sampled = challenge::sample_indices(&seed, count, params.sprint_samples);
    // Each sampled leaf comes with its right-hand neighbour (SPEC §4).
    let indices = challenge::opening_indices(&sampled, count);
    if msg.leaves.len() != indices.len() {
        return Err(err(
            codes::WRONG_LEAF_COUNT,
            format!(
                "expected {} opened leaves ({} sampled, each followed by its right-hand neighbour), got {}",
                indices.len(),
                sampled.len(),
                msg.leaves.len()
            ),
        ));
    }
    let mut root = [0u8; 32];
    hex::decode_to_slice(&commit.root, &mut root)
        .map_err(|_| TxError::internal("corrupt stored root"))?;
    let mut opened = Vec::with_capacity(indices.len());
    for (i, (leaf_msg, expected)) in msg.leaves.iter().zip(&indices).enumerate() {
        if leaf_msg.index != u64::from(*expected) {
            return Err(err(
                codes::WRONG_LEAF_INDEX,
                format!(
                    "leaf {i}: index {} is not the challenged index {expected}",
                    leaf_msg.index
                ),
            ));
        }
        let mut proof = Vec::with_capacity(leaf_msg.proof.len());
        for (j, sibling) in leaf_msg.proof.iter().enumerate() {
            proof.push(<[u8; 32]>::try_from(sibling.as_slice()).map_err(|_| {
                err(
                    codes::BAD_PROOF,
                    format!("leaf {i}: proof element {j} is not 32 bytes"),
                )
            })?);
        }
        if !mlnodes::lane_owns_nonce(lane, leaf_msg.nonce) {
            return Err(err(
                codes::NONCE_OUTSIDE_LANE,
                format!(
                    "leaf {i}: nonce {} lies outside lane {lane} of {} ([{}, {})): no two sprint units of a host may count the same nonce",
                    leaf_msg.nonce,
                    unit_name(&host, node),
                    u64::from(lane) << mlnodes::LANE_BITS,
                    (u64::from(lane) + 1) << mlnodes::LANE_BITS
                ),
            ));
        }
        let hash = leaf::leaf_hash(leaf_msg.nonce, leaf_msg.distance_q);
        merkle::verify_proof(&root, &hash, leaf_msg.index, commit.count, &proof).map_err(|e| {
            err(
                codes::BAD_PROOF,
                format!("leaf {i} (index {}): {e}", leaf_msg.index),
            )
        })?;
        if !leaf::claims_share(leaf_msg.distance_q, params.r_target_micro) {
            return Err(err(
                codes::NOT_A_SHARE,
                format!(
                    "leaf {i}: distance {} is not below r_target",
                    leaf_msg.distance_q
                ),
            ));
        }
        opened.push(Opened {
            index: leaf_msg.index,
            nonce: leaf_msg.nonce,
            distance_q: leaf_msg.distance_q,
        });
    }
    // Leaves are committed in strictly increasing nonce order, so a nonce can
    // never count twice: checked across all opened leaves by index, which
    // covers every sampled leaf and its neighbour. Validators get each
    // distinct leaf once, in index order.
    let pairs: Vec<(u64, u64)> = opened.iter().map(|l| (l.index, l.nonce)).collect();
    if challenge::ordered_opening(&pairs).is_none() {
        return Err(err(
            codes::REPEATED_NONCE,
            "opened leaves are not in strictly increasing nonce order by index (a nonce counted twice?)",
        ));
    }
    opened.sort_by_key(|l| l.index);
    opened.dedup_by_key(|l| l.index);
    state.put_value(
        keys::unit_open(msg.epoch, &host, node),
        &OpenedLeaves(opened.clone()),
    )?;
    let mut event = Event::new("kiln.sprint.v1.EventSprintOpen")
        .attr("epoch", msg.epoch)
        .attr("host", host)
        .attr("leaves", opened.len());
    if !node.is_empty() {
        event = event.attr("ml_node", node);
    }
    ctx.emit(event);
    Ok(())
}

/// A host's first commitment of `epoch` takes one of its
/// `max_hosts_per_epoch` places. Hosts with weight in force always have one
/// (their places are reserved); new hosts take the rest in commit order and
/// are counted under `sprint/new_hosts/{epoch}`.
fn admit_host<S: StateWrite>(state: &mut S, epoch: u64, host: &Address) -> TxResult<()> {
    if state.weight_in_force(host)? > 0 {
        return Ok(());
    }
    let max = u64::from(state::sprint_params(state)?.max_hosts_per_epoch);
    let reserved = state.hosts_with_weight()?;
    let key = keys::new_hosts(epoch);
    let admitted = state.get_u64(&key)?.unwrap_or(0);
    if reserved.saturating_add(admitted) >= max {
        return Err(err(
            codes::EPOCH_FULL,
            format!(
                "epoch {epoch} is full: at most {max} hosts commit per epoch, {reserved} places are reserved for hosts with weight in force and {admitted} new hosts have committed; commit in a later epoch"
            ),
        ));
    }
    state.put_u64(key, admitted.saturating_add(1));
    Ok(())
}

/// Locks the commitment bond from the host's own account (not the ML key)
/// into the module escrow the first time the host commits in `epoch`; later
/// commitments of the epoch lock nothing more.
fn lock_bond<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    epoch: u64,
    host: &Address,
) -> TxResult<()> {
    let key = keys::bond(epoch, host);
    if state.get_raw(&key)?.is_some() {
        return Ok(());
    }
    let amount = u128::from(state::sprint_params(state)?.commit_bond);
    if amount == 0 {
        return Ok(());
    }
    let have = state.balance(host, BASE_DENOM)?;
    if have < amount {
        return Err(err(
            codes::BOND_UNPAID,
            format!(
                "host account {host} holds {have}{BASE_DENOM} but a commitment locks a bond of {amount}{BASE_DENOM}; fund the host account (the bond is not paid by the ML key)"
            ),
        ));
    }
    let coins = Coins::normalize(vec![Coin::new(BASE_DENOM, amount)])?;
    state.transfer(ctx, host, &Address::module(keys::BOND_ESCROW), &coins)?;
    state.put_u128(key, amount);
    ctx.emit(
        Event::new("kiln.sprint.v1.EventBondLocked")
            .attr("epoch", epoch)
            .attr("host", host)
            .attr("amount", amount),
    );
    Ok(())
}

/// The challenge seed of `host` in `epoch` (committee draws): from the
/// beacon, so neither the proposer of the challenge block nor the host picks
/// its committee.
fn host_seed<S: kiln_state::StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
) -> TxResult<[u8; 32]> {
    Ok(beacon::host_challenge(state, epoch, host)?.unwrap_or_default())
}

/// The committee for `host` in `epoch`: the one assigned when the vote
/// stages began, or, before that, the one the weights in force would draw
/// now (this second path rebuilds the weight table: tools and tests only;
/// handlers read the assignment).
pub fn committee_of<S: kiln_state::StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
) -> TxResult<Vec<Address>> {
    let assigned = state::assigned_committee(state, epoch, host)?;
    if !assigned.0.is_empty() {
        return Ok(assigned.0.into_iter().map(|(a, _)| a).collect());
    }
    let params = state::sprint_params(state)?;
    let table = WeightTable::new(&state.weights_in_force()?);
    let opened = state::opened_hosts(state, epoch)?.len() as u64;
    Ok(state::committee(
        &table,
        host,
        &host_seed(state, epoch, host)?,
        crate::params::committee_size(params.sprint_committee, opened),
    ))
}

/// At the first `VoteCommit` block: draws the committee of every opened host
/// once, from one weight table (O(n) to build, O(size · log n) per host),
/// and stores it by host (tally, vote checks) and by voter (`Duties`): one
/// write per host and one per assigned voter.
pub fn assign_committees<S: StateWrite>(state: &mut S, epoch: u64) -> TxResult<Vec<Event>> {
    let params = state::sprint_params(state)?;
    let table = WeightTable::new(&state.weights_in_force()?);
    let opened = state::opened_hosts(state, epoch)?;
    let size = crate::params::committee_size(params.sprint_committee, opened.len() as u64);
    let mut by_voter: std::collections::BTreeMap<Address, Vec<Address>> = Default::default();
    for host in &opened {
        let seed = host_seed(state, epoch, host)?;
        let members: Vec<(Address, u64)> = state::committee(&table, host, &seed, size)
            .into_iter()
            .map(|voter| (voter, table.weight_of(&voter)))
            .collect();
        for (voter, _) in &members {
            // Hosts are visited in address order, so each list stays sorted.
            by_voter.entry(*voter).or_default().push(*host);
        }
        state.put_value(
            keys::committee(epoch, host),
            &state::AssignedCommittee(members),
        )?;
    }
    let voters = by_voter.len();
    for (voter, hosts) in by_voter {
        state.put_value(keys::duties(epoch, &voter), &state::AssignedDuties(hosts))?;
    }
    Ok(vec![Event::new("kiln.sprint.v1.EventCommitteesAssigned")
        .attr("epoch", epoch)
        .attr("opened_hosts", opened.len())
        .attr("committee_size", size)
        .attr("voters", voters)])
}

/// One committee member's standing on a host at settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberVote {
    pub voter: Address,
    /// Weight in force at assignment (1 for a member without weight).
    pub weight: u64,
    /// The revealed vote (`None`: not revealed).
    pub vote: Option<bool>,
    pub committed: bool,
}

/// The assigned committee of `host` with each member's weight, revealed vote
/// and whether it committed one. Two reads (the committee and its
/// [`state::MemberVoteState`] record), whatever the committee's size.
pub fn committee_votes<S: kiln_state::StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
) -> TxResult<Vec<MemberVote>> {
    let committee = state::assigned_committee(state, epoch, host)?;
    let votes = state
        .get_raw(&keys::member_votes(epoch, host))?
        .unwrap_or_default();
    Ok(member_votes_of(committee, &votes))
}

/// Each member of `committee` with its weight and its
/// [`state::MemberVoteState`] byte from `votes` (committee order; missing
/// bytes read as no vote).
pub(crate) fn member_votes_of(
    committee: state::AssignedCommittee,
    votes: &[u8],
) -> Vec<MemberVote> {
    committee
        .0
        .into_iter()
        .enumerate()
        .map(|(i, (voter, w))| {
            let s = state::MemberVoteState::from_byte(votes.get(i).copied().unwrap_or(0));
            MemberVote {
                voter,
                // A member without weight in force (a one-host devnet's first epochs) counts 1.
                weight: w.max(1),
                vote: s.vote(),
                committed: s != state::MemberVoteState::None,
            }
        })
        .collect()
}

pub fn vote_commit<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSprintVoteCommit,
) -> TxResult<()> {
    let voter = address_field(&msg.voter, "voter")?;
    let host = address_field(&msg.host, "host")?;
    registered(state, &voter, "voter")?;
    let info = current_epoch(state, ctx, msg.epoch)?;
    let escalation = match info.stage {
        Stage::VoteCommit => false,
        Stage::EscalationCommit => true,
        _ => return Err(wrong_stage(&info, "MsgSprintVoteCommit")),
    };
    if !state.has_any_under(&keys::opens_of_host(msg.epoch, &host))? {
        return Err(err(
            codes::NOTHING_TO_VOTE_ON,
            format!("{host} has no opening to vote on in epoch {}", msg.epoch),
        ));
    }
    // (committee size, the voter's place) for the per-host vote record.
    let mut member = None;
    let key = if escalation {
        may_vote_in_escalation(state, msg.epoch, &host, &voter)?;
        keys::escalation_commit(msg.epoch, &host, &voter)
    } else {
        // One read of the stored assignment (O(committee)), no weight scan.
        let committee = state::assigned_committee(state, msg.epoch, &host)?;
        let Some(position) = committee.position(&voter) else {
            return Err(err(
                codes::NOT_ON_COMMITTEE,
                format!(
                    "{voter} is not on the committee for {host} in epoch {}",
                    msg.epoch
                ),
            ));
        };
        member = Some((committee.0.len(), position));
        keys::vote_commit(msg.epoch, &host, &voter)
    };
    if state.get_raw(&key)?.is_some() {
        return Err(err(codes::VOTE_ALREADY_COMMITTED, "vote already committed"));
    }
    state.put_raw(key, msg.commitment.clone());
    if let Some((members, position)) = member {
        state::record_member_vote(
            state,
            msg.epoch,
            &host,
            members,
            position,
            state::MemberVoteState::Committed,
        )?;
    }
    ctx.emit(
        Event::new("kiln.sprint.v1.EventVoteCommitted")
            .attr("epoch", msg.epoch)
            .attr("host", host)
            .attr("voter", voter)
            .attr("escalation", escalation),
    );
    Ok(())
}

/// Escalation voters: every host with weight in force, except the escalated
/// host itself. O(log n) per message.
fn may_vote_in_escalation<S: kiln_state::StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
    voter: &Address,
) -> TxResult<()> {
    if state.get_raw(&keys::escalated(epoch, host))?.is_none() {
        return Err(err(
            codes::NOT_ESCALATED,
            format!("{host} was not escalated in epoch {epoch}"),
        ));
    }
    if voter == host {
        return Err(err(
            codes::OWN_ESCALATION,
            "a host cannot vote in its own escalation",
        ));
    }
    if state.weight_in_force(voter)? == 0 {
        return Err(err(
            codes::NO_WEIGHT_IN_FORCE,
            format!("{voter} holds no weight in force, so it does not vote in escalations"),
        ));
    }
    Ok(())
}

pub fn vote_reveal<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSprintVoteReveal,
) -> TxResult<()> {
    let voter = address_field(&msg.voter, "voter")?;
    let host = address_field(&msg.host, "host")?;
    let info = current_epoch(state, ctx, msg.epoch)?;
    let (commit_key, reveal_key, escalation) = match info.stage {
        Stage::VoteReveal => (
            keys::vote_commit(msg.epoch, &host, &voter),
            keys::vote_reveal(msg.epoch, &host, &voter),
            false,
        ),
        Stage::EscalationReveal => (
            keys::escalation_commit(msg.epoch, &host, &voter),
            keys::escalation_reveal(msg.epoch, &host, &voter),
            true,
        ),
        _ => return Err(wrong_stage(&info, "MsgSprintVoteReveal")),
    };
    let committed = state
        .get_raw(&commit_key)?
        .ok_or_else(|| err(codes::NO_VOTE_TO_REVEAL, "no committed vote to reveal"))?;
    // The commitment binds the voter: one copied from another voter never matches.
    let expected = vote::vote_commitment(
        &ctx.block.chain_id,
        msg.epoch,
        host.as_bytes(),
        voter.as_bytes(),
        msg.valid,
        &msg.salt,
    );
    if expected.as_slice() != committed.as_slice() {
        return Err(err(
            codes::REVEAL_MISMATCH,
            "revealed vote does not match its commitment (commitments bind chain, epoch, host and voter)",
        ));
    }
    if state.get_raw(&reveal_key)?.is_some() {
        return Err(err(codes::VOTE_ALREADY_REVEALED, "vote already revealed"));
    }
    state.put_raw(reveal_key, vec![u8::from(msg.valid)]);
    if !escalation {
        let committee = state::assigned_committee(state, msg.epoch, &host)?;
        if let Some(position) = committee.position(&voter) {
            let revealed = if msg.valid {
                state::MemberVoteState::RevealedValid
            } else {
                state::MemberVoteState::RevealedInvalid
            };
            state::record_member_vote(
                state,
                msg.epoch,
                &host,
                committee.0.len(),
                position,
                revealed,
            )?;
        }
    }
    if !escalation && !msg.valid {
        // Any revealed `invalid` committee vote sends the host to the
        // all-weight tally (SPEC §4 "Weight"); marked here, in O(1), so no
        // stage has to rescan the committees.
        let key = keys::escalated(msg.epoch, &host);
        if state.get_raw(&key)?.is_none() {
            state.put_raw(key, Vec::new());
            ctx.emit(
                Event::new("kiln.sprint.v1.EventSprintEscalated")
                    .attr("epoch", msg.epoch)
                    .attr("host", host)
                    .attr("voter", voter),
            );
        }
    }
    ctx.emit(
        Event::new("kiln.sprint.v1.EventVoteRevealed")
            .attr("epoch", msg.epoch)
            .attr("host", host)
            .attr("voter", voter)
            .attr("valid", msg.valid)
            .attr("escalation", escalation),
    );
    Ok(())
}
