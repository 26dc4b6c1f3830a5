//! Execution of host registry messages. Stateless checks already ran
//! (`MsgKind::validate_basic`); these are the checks against state.

use kiln_framework::msg::address_field;
use kiln_framework::{Event, ExecCtx, TxError, TxResult};
use kiln_state::StateWrite;

use crate::keys;
use crate::msgs::{MsgRegisterHost, MsgUpdateHost};
use crate::state::{put_host, Host, HostsExt};
use crate::CODESPACE;

/// Error codes of the `hosts` codespace (the README's error table lists them).
pub mod codes {
    /// The sender is already a host.
    pub const ALREADY_REGISTERED: u32 = 2;
    /// The consensus key belongs to another host.
    pub const CONSENSUS_KEY_TAKEN: u32 = 3;
    /// The address is not a registered host.
    pub const NOT_A_HOST: u32 = 4;
    /// The consensus key's proof of possession is missing or does not verify
    /// (see [`crate::pop`]).
    pub const BAD_CONSENSUS_KEY_PROOF: u32 = 5;
    // 6–9: ML nodes (`crate::mlnodes::errors`).
    /// A field of an ML-node message is malformed.
    pub const BAD_FIELD: u32 = 10;
}

fn err(code: u32, log: impl Into<String>) -> TxError {
    TxError::module(CODESPACE, code, log)
}

/// The sender must prove it holds the consensus key it names.
fn check_proof(
    ctx: &ExecCtx<'_>,
    owner: &kiln_framework::Address,
    pubkey: &[u8],
    proof: &[u8],
) -> TxResult<()> {
    crate::pop::verify(pubkey, proof, &ctx.block.chain_id, owner)
        .map_err(|e| err(codes::BAD_CONSENSUS_KEY_PROOF, e))
}

pub fn register_host<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgRegisterHost,
) -> TxResult<()> {
    let owner = address_field(&msg.owner, "owner")?;
    if state.is_host(&owner)? {
        return Err(err(
            codes::ALREADY_REGISTERED,
            format!("{owner} is already a host; use MsgUpdateHost"),
        ));
    }
    check_proof(ctx, &owner, &msg.consensus_pubkey, &msg.consensus_key_proof)?;
    if let Some(other) = state.host_by_consensus_key(&msg.consensus_pubkey)? {
        return Err(err(
            codes::CONSENSUS_KEY_TAKEN,
            format!("consensus key already belongs to host {other}"),
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
    put_host(state, &host)?;
    ctx.emit(
        Event::new("kiln.host.v1.EventHostRegistered")
            .attr("host", owner)
            .attr("worker_url", &msg.worker_url),
    );
    Ok(())
}

pub fn update_host<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgUpdateHost,
) -> TxResult<()> {
    let owner = address_field(&msg.owner, "owner")?;
    let mut host = state.host(&owner)?.ok_or_else(|| {
        err(
            codes::NOT_A_HOST,
            format!("{owner} is not a registered host"),
        )
    })?;
    if !msg.consensus_pubkey.is_empty()
        && hex::encode(&msg.consensus_pubkey) != host.consensus_pubkey
    {
        if state
            .host_by_consensus_key(&msg.consensus_pubkey)?
            .is_some()
        {
            return Err(err(
                codes::CONSENSUS_KEY_TAKEN,
                "consensus key already belongs to another host",
            ));
        }
        check_proof(ctx, &owner, &msg.consensus_pubkey, &msg.consensus_key_proof)?;
        state.delete_raw(keys::by_consensus(&host.consensus_key_bytes()));
        host.consensus_pubkey = hex::encode(&msg.consensus_pubkey);
        // The validator set CometBFT holds still has the old key; staking
        // swaps it at the end of this block (old key out, new key in, one
        // update list), so the old key stops signing at height + 2.
        state.put_raw(keys::key_rotated(&owner), vec![1]);
    }
    host.worker_url = msg.worker_url.clone();
    host.models = msg.models.clone();
    host.hardware = msg.hardware.clone();
    put_host(state, &host)?;
    ctx.emit(Event::new("kiln.host.v1.EventHostUpdated").attr("host", owner));
    Ok(())
}
