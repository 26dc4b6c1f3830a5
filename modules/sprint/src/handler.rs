//! Execution of sprint messages. Stateless checks already ran
//! (`MsgKind::validate_basic`); stage rules come from the epochs module, the
//! host registry from `kiln-hosts`, weights in force from `kiln-staking`.
//! Every refusal says which stage or check failed.

use kiln_epochs::{EpochExt, Stage};
use kiln_framework::msg::address_field;
use kiln_framework::{Address, Event, ExecCtx, StateWriteExt, TxError, TxResult};
use kiln_hosts::HostsExt;
use kiln_sprint_protocol::{challenge, leaf, merkle, vote};
use kiln_staking::StakingExt;
use kiln_state::StateWrite;

use crate::beacon;
use crate::keys;
use crate::msgs::*;
use crate::state::{self, Commitment, Opened, OpenedLeaves};

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
    // 23–29 are left for the tally/bond codes of the same issue.
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
    let record = Commitment {
        root: hex::encode(&msg.root),
        count: msg.count,
        height: ctx.block.height,
    };
    state.put_value(keys::commit(msg.epoch, &host), &record)?;
    // The last commitment's secret hash counts, like its root.
    state.put_raw(keys::secret_hash(msg.epoch, &host), msg.secret_hash.clone());
    ctx.emit(
        Event::new("kiln.sprint.v1.EventSprintCommit")
            .attr("epoch", msg.epoch)
            .attr("host", host)
            .attr("count", msg.count)
            .attr("root", &record.root),
    );
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
    let committed = beacon::secret_hash(state, msg.epoch, &host)?.ok_or_else(|| {
        err(
            codes::NO_COMMITMENT,
            format!("{host} made no sprint commitment in epoch {}", msg.epoch),
        )
    })?;
    if beacon::revealed_secret(state, msg.epoch, &host)?.is_some() {
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
    state.put_raw(keys::secret(msg.epoch, &host), msg.secret.clone());
    ctx.emit(
        Event::new("kiln.sprint.v1.EventSecretRevealed")
            .attr("epoch", msg.epoch)
            .attr("host", host),
    );
    Ok(())
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
    let commit = state::commitment(state, msg.epoch, &host)?.ok_or_else(|| {
        err(
            codes::NO_COMMITMENT,
            format!("{host} made no sprint commitment in epoch {}", msg.epoch),
        )
    })?;
    if state::opened(state, msg.epoch, &host)?.is_some() {
        return Err(err(
            codes::ALREADY_OPENED,
            "leaves already opened for this epoch",
        ));
    }
    if beacon::revealed_secret(state, msg.epoch, &host)?.is_none() {
        return Err(err(
            codes::SECRET_NOT_REVEALED,
            format!(
                "{host} did not reveal its secret in epoch {}: it gets no weight this epoch",
                msg.epoch
            ),
        ));
    }
    let params = state::sprint_params(state)?;
    let seed = beacon::host_challenge(state, msg.epoch, &host)?
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
    state.put_value(keys::open(msg.epoch, &host), &OpenedLeaves(opened.clone()))?;
    ctx.emit(
        Event::new("kiln.sprint.v1.EventSprintOpen")
            .attr("epoch", msg.epoch)
            .attr("host", host)
            .attr("leaves", opened.len()),
    );
    Ok(())
}

/// The committee for `host` in `epoch`, from the weights in force.
pub fn committee_of<S: kiln_state::StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
) -> TxResult<Vec<Address>> {
    let params = state::sprint_params(state)?;
    // Seeded by the host's challenge (from the beacon), so neither the
    // proposer of the challenge block nor the host picks its committee.
    let seed = beacon::host_challenge(state, epoch, host)?.unwrap_or_default();
    Ok(state::committee(
        &state.weights_in_force()?,
        host,
        &seed,
        params.sprint_committee,
    ))
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
    if info.stage != Stage::VoteCommit {
        return Err(wrong_stage(&info, "MsgSprintVoteCommit"));
    }
    if state::opened(state, msg.epoch, &host)?.is_none() {
        return Err(err(
            codes::NOTHING_TO_VOTE_ON,
            format!("{host} has no opening to vote on in epoch {}", msg.epoch),
        ));
    }
    if !committee_of(state, msg.epoch, &host)?.contains(&voter) {
        return Err(err(
            codes::NOT_ON_COMMITTEE,
            format!(
                "{voter} is not on the committee for {host} in epoch {}",
                msg.epoch
            ),
        ));
    }
    let key = keys::vote_commit(msg.epoch, &host, &voter);
    if state.get_raw(&key)?.is_some() {
        return Err(err(codes::VOTE_ALREADY_COMMITTED, "vote already committed"));
    }
    state.put_raw(key, msg.commitment.clone());
    ctx.emit(
        Event::new("kiln.sprint.v1.EventVoteCommitted")
            .attr("epoch", msg.epoch)
            .attr("host", host)
            .attr("voter", voter),
    );
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
    if info.stage != Stage::VoteReveal {
        return Err(wrong_stage(&info, "MsgSprintVoteReveal"));
    }
    let committed = state
        .get_raw(&keys::vote_commit(msg.epoch, &host, &voter))?
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
    let key = keys::vote_reveal(msg.epoch, &host, &voter);
    if state.get_raw(&key)?.is_some() {
        return Err(err(codes::VOTE_ALREADY_REVEALED, "vote already revealed"));
    }
    state.put_raw(key, vec![u8::from(msg.valid)]);
    ctx.emit(
        Event::new("kiln.sprint.v1.EventVoteRevealed")
            .attr("epoch", msg.epoch)
            .attr("host", host)
            .attr("voter", voter)
            .attr("valid", msg.valid),
    );
    Ok(())
}
