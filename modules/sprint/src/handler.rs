//! Execution of host and sprint messages. Stage rules come from the epochs
//! module; every refusal says which stage or check failed.

use kiln_epochs::{EpochExt, Stage};
use kiln_framework::{Address, Event, ExecCtx, StateWriteExt, TxError, TxResult};
use kiln_sprint_protocol::{challenge, leaf, merkle};
use kiln_state::StateWrite;

use crate::keys;
use crate::msgs::*;
use crate::state::{self, Commitment, Host, Opened};

pub const CODESPACE: &str = "sprint";

fn err(code: u32, log: impl Into<String>) -> TxError {
    TxError::module(CODESPACE, code, log)
}

pub fn handle_register_host<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgRegisterHost,
) -> TxResult<()> {
    let owner = parse_addr(&msg.owner, "owner")?;
    validate_host_fields(
        &msg.worker_url,
        &msg.consensus_pubkey,
        &msg.models,
        &msg.hardware,
        true,
    )?;
    if state::host(state, &owner)?.is_some() {
        return Err(err(
            2,
            format!("{owner} is already a host; use MsgUpdateHost"),
        ));
    }
    if let Some(other) = state.get_raw(&keys::by_consensus(&msg.consensus_pubkey))? {
        return Err(err(
            3,
            format!(
                "consensus key already belongs to host {}",
                Address::from_bytes(&other)
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            ),
        ));
    }
    let host = Host {
        owner,
        worker_url: msg.worker_url.clone(),
        consensus_pubkey: hex::encode(&msg.consensus_pubkey),
        models: msg.models.clone(),
        hardware: msg.hardware.clone(),
        registered_height: ctx.block.height,
    };
    state.put_json(keys::host(&owner), &host)?;
    state.put_raw(
        keys::by_consensus(&msg.consensus_pubkey),
        owner.as_bytes().to_vec(),
    );
    ctx.emit(
        Event::new("kiln.host.v1.EventHostRegistered")
            .attr("host", owner)
            .attr("worker_url", &msg.worker_url),
    );
    Ok(())
}

pub fn handle_update_host<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgUpdateHost,
) -> TxResult<()> {
    let owner = parse_addr(&msg.owner, "owner")?;
    validate_host_fields(
        &msg.worker_url,
        &msg.consensus_pubkey,
        &msg.models,
        &msg.hardware,
        false,
    )?;
    let mut host = state::host(state, &owner)?
        .ok_or_else(|| err(4, format!("{owner} is not a registered host")))?;
    if !msg.consensus_pubkey.is_empty()
        && hex::encode(&msg.consensus_pubkey) != host.consensus_pubkey
    {
        if state
            .get_raw(&keys::by_consensus(&msg.consensus_pubkey))?
            .is_some()
        {
            return Err(err(3, "consensus key already belongs to another host"));
        }
        state.delete_raw(keys::by_consensus(&host.consensus_key_bytes()));
        state.put_raw(
            keys::by_consensus(&msg.consensus_pubkey),
            owner.as_bytes().to_vec(),
        );
        host.consensus_pubkey = hex::encode(&msg.consensus_pubkey);
    }
    host.worker_url = msg.worker_url.clone();
    host.models = msg.models.clone();
    host.hardware = msg.hardware.clone();
    state.put_json(keys::host(&owner), &host)?;
    ctx.emit(Event::new("kiln.host.v1.EventHostUpdated").attr("host", owner));
    Ok(())
}

fn registered(state: &impl kiln_state::StateRead, addr: &Address, role: &str) -> TxResult<Host> {
    state::host(state, addr)?
        .ok_or_else(|| err(4, format!("{role} {addr} is not a registered host")))
}

fn current_epoch(
    state: &impl kiln_state::StateRead,
    ctx: &ExecCtx<'_>,
    epoch: u64,
) -> TxResult<kiln_epochs::EpochInfo> {
    let info = state.epoch_info(ctx.block.height)?;
    if info.epoch != epoch {
        return Err(err(
            5,
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
        6,
        format!(
            "{wanted} not accepted in stage {} of epoch {} (height {}, next stage at {})",
            info.stage.as_str(),
            info.epoch,
            info.height,
            info.next_stage_height
        ),
    )
}

pub fn handle_commit<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSprintCommit,
) -> TxResult<()> {
    let host = parse_addr(&msg.host, "host")?;
    registered(state, &host, "host")?;
    let info = current_epoch(state, ctx, msg.epoch)?;
    if !info.stage.accepts_commits() {
        return Err(wrong_stage(
            &info,
            "MsgSprintCommit (the commit deadline has passed)",
        ));
    }
    if msg.root.len() != 32 {
        return Err(err(
            7,
            format!("root must be 32 bytes, got {}", msg.root.len()),
        ));
    }
    if msg.count == 0 || msg.count > u64::from(u32::MAX) {
        return Err(err(8, "count must be between 1 and 2^32-1"));
    }
    let record = Commitment {
        root: hex::encode(&msg.root),
        count: msg.count,
        height: ctx.block.height,
    };
    state.put_json(keys::commit(msg.epoch, &host), &record)?;
    ctx.emit(
        Event::new("kiln.sprint.v1.EventSprintCommit")
            .attr("epoch", msg.epoch)
            .attr("host", host)
            .attr("count", msg.count)
            .attr("root", &record.root),
    );
    Ok(())
}

pub fn handle_open<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSprintOpen,
) -> TxResult<()> {
    let host = parse_addr(&msg.host, "host")?;
    registered(state, &host, "host")?;
    let info = current_epoch(state, ctx, msg.epoch)?;
    if info.stage != Stage::Open {
        return Err(wrong_stage(&info, "MsgSprintOpen"));
    }
    let commit = state::commitment(state, msg.epoch, &host)?.ok_or_else(|| {
        err(
            9,
            format!("{host} made no sprint commitment in epoch {}", msg.epoch),
        )
    })?;
    if state::opened(state, msg.epoch, &host)?.is_some() {
        return Err(err(10, "leaves already opened for this epoch"));
    }
    let params = state::sprint_params(state)?;
    let challenge_hash = state
        .challenge_block_hash(msg.epoch)?
        .ok_or_else(|| TxError::internal("challenge block hash missing"))?;
    let addr_bytes: [u8; 20] = *host.as_bytes();
    let seed = challenge::challenge_seed(&challenge_hash, &addr_bytes);
    let count = u32::try_from(commit.count).map_err(|_| err(8, "count too large"))?;
    let indices = challenge::sample_indices(&seed, count, params.sprint_samples);
    if msg.leaves.len() != indices.len() {
        return Err(err(
            11,
            format!(
                "expected {} opened leaves, got {}",
                indices.len(),
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
                12,
                format!(
                    "leaf {i}: index {} is not the challenged index {expected}",
                    leaf_msg.index
                ),
            ));
        }
        let mut proof = Vec::with_capacity(leaf_msg.proof.len());
        for (j, sibling) in leaf_msg.proof.iter().enumerate() {
            proof
                .push(<[u8; 32]>::try_from(sibling.as_slice()).map_err(|_| {
                    err(13, format!("leaf {i}: proof element {j} is not 32 bytes"))
                })?);
        }
        let hash = leaf::leaf_hash(leaf_msg.nonce, leaf_msg.distance_q);
        merkle::verify_proof(&root, &hash, leaf_msg.index, commit.count, &proof)
            .map_err(|e| err(13, format!("leaf {i} (index {}): {e}", leaf_msg.index)))?;
        if !leaf::claims_share(leaf_msg.distance_q, params.r_target_micro) {
            return Err(err(
                14,
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
    // Leaves are committed in strictly increasing nonce order: a nonce can never count twice.
    let mut by_index = opened.clone();
    by_index.sort_by_key(|l| l.index);
    if by_index.windows(2).any(|w| w[0].nonce >= w[1].nonce) {
        return Err(err(
            15,
            "opened leaves are not in strictly increasing nonce order (a nonce counted twice?)",
        ));
    }
    state.put_json(keys::open(msg.epoch, &host), &opened)?;
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
    let challenge_hash = state.challenge_block_hash(epoch)?.unwrap_or_default();
    let seed = challenge::challenge_seed(&challenge_hash, host.as_bytes());
    Ok(state::committee(
        &state::weights(state)?,
        host,
        &seed,
        params.sprint_committee,
    ))
}

pub fn handle_vote_commit<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSprintVoteCommit,
) -> TxResult<()> {
    let validator = parse_addr(&msg.validator, "validator")?;
    let host = parse_addr(&msg.host, "host")?;
    registered(state, &validator, "validator")?;
    let info = current_epoch(state, ctx, msg.epoch)?;
    if info.stage != Stage::VoteCommit {
        return Err(wrong_stage(&info, "MsgSprintVoteCommit"));
    }
    if state::opened(state, msg.epoch, &host)?.is_none() {
        return Err(err(
            16,
            format!("{host} has no opening to vote on in epoch {}", msg.epoch),
        ));
    }
    if !committee_of(state, msg.epoch, &host)?.contains(&validator) {
        return Err(err(
            17,
            format!(
                "{validator} is not on the committee for {host} in epoch {}",
                msg.epoch
            ),
        ));
    }
    if msg.commitment.len() != 32 {
        return Err(err(18, "vote commitment must be 32 bytes"));
    }
    let key = keys::vote_commit(msg.epoch, &host, &validator);
    if state.get_raw(&key)?.is_some() {
        return Err(err(19, "vote already committed"));
    }
    state.put_raw(key, msg.commitment.clone());
    ctx.emit(
        Event::new("kiln.sprint.v1.EventVoteCommitted")
            .attr("epoch", msg.epoch)
            .attr("host", host)
            .attr("validator", validator),
    );
    Ok(())
}

pub fn handle_vote_reveal<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSprintVoteReveal,
) -> TxResult<()> {
    let validator = parse_addr(&msg.validator, "validator")?;
    let host = parse_addr(&msg.host, "host")?;
    let info = current_epoch(state, ctx, msg.epoch)?;
    if info.stage != Stage::VoteReveal {
        return Err(wrong_stage(&info, "MsgSprintVoteReveal"));
    }
    let committed = state
        .get_raw(&keys::vote_commit(msg.epoch, &host, &validator))?
        .ok_or_else(|| err(20, "no committed vote to reveal"))?;
    if vote_commitment(msg.valid, &msg.salt).as_slice() != committed.as_slice() {
        return Err(err(21, "revealed vote does not match its commitment"));
    }
    let key = keys::vote_reveal(msg.epoch, &host, &validator);
    if state.get_raw(&key)?.is_some() {
        return Err(err(22, "vote already revealed"));
    }
    state.put_raw(key, vec![u8::from(msg.valid)]);
    ctx.emit(
        Event::new("kiln.sprint.v1.EventVoteRevealed")
            .attr("epoch", msg.epoch)
            .attr("host", host)
            .attr("validator", validator)
            .attr("valid", msg.valid),
    );
    Ok(())
}
