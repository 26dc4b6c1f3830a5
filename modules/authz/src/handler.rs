//! `MsgGrant` and `MsgRevoke` execution. (`MsgExec` is routed by the app.)

use cosmos_sdk_proto::cosmos::authz::v1beta1::{MsgExec, MsgGrant, MsgRevoke};
use kiln_bank::state::AuthWriteExt;
use kiln_framework::{Address, Event, ExecCtx, TxError, TxResult};
use kiln_state::StateWrite;

use crate::state::{authorized_type_url, delete_grant, get_grant, is_expired, put_grant};

pub const MSG_GRANT_TYPE_URL: &str = "/cosmos.authz.v1beta1.MsgGrant";
pub const MSG_REVOKE_TYPE_URL: &str = "/cosmos.authz.v1beta1.MsgRevoke";
pub const MSG_EXEC_TYPE_URL: &str = "/cosmos.authz.v1beta1.MsgExec";

fn addr(text: &str, what: &str) -> TxResult<Address> {
    Address::parse(text).map_err(|e| TxError::invalid_address(format!("{what}: {e}")))
}

pub fn signer_of_grant(msg: &MsgGrant) -> TxResult<Address> {
    addr(&msg.granter, "granter")
}

pub fn signer_of_revoke(msg: &MsgRevoke) -> TxResult<Address> {
    addr(&msg.granter, "granter")
}

pub fn signer_of_exec(msg: &MsgExec) -> TxResult<Address> {
    addr(&msg.grantee, "grantee")
}

pub fn handle_grant<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgGrant,
) -> TxResult<()> {
    let granter = addr(&msg.granter, "granter")?;
    let grantee = addr(&msg.grantee, "grantee")?;
    if granter == grantee {
        return Err(TxError::invalid_request(
            "granter and grantee cannot be the same",
        ));
    }
    let grant = msg
        .grant
        .as_ref()
        .ok_or_else(|| TxError::invalid_request("MsgGrant has no grant"))?;
    let type_url = authorized_type_url(grant)?;
    if type_url == MSG_EXEC_TYPE_URL {
        return Err(TxError::invalid_request(
            "granting MsgExec itself is not allowed",
        ));
    }
    if is_expired(grant.expiration.as_ref(), ctx.block) {
        return Err(TxError::invalid_request(
            "expiration must be after the current block time",
        ));
    }
    put_grant(state, &granter, &grantee, &type_url, grant);
    // Deviation from Cosmos authz: the grantee's account is created here if it
    // does not exist yet. A transaction's signer needs an account (for its
    // account number), and the ML operational key is usually brand new and
    // unfunded; with the ML-ops fee allowance (SPEC §2) it can then send its
    // grant's messages at once without ever receiving coins.
    state.ensure_account(&grantee)?;
    ctx.emit(
        Event::new("cosmos.authz.v1beta1.EventGrant")
            .attr("msg_type_url", &type_url)
            .attr("granter", granter)
            .attr("grantee", grantee),
    );
    ctx.emit(
        Event::new("message")
            .attr("action", MSG_GRANT_TYPE_URL)
            .attr("sender", granter)
            .attr("module", "authz"),
    );
    Ok(())
}

pub fn handle_revoke<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgRevoke,
) -> TxResult<()> {
    let granter = addr(&msg.granter, "granter")?;
    let grantee = addr(&msg.grantee, "grantee")?;
    if get_grant(state, &granter, &grantee, &msg.msg_type_url)?.is_none() {
        return Err(TxError::key_not_found(format!(
            "no grant from {granter} to {grantee} for {}",
            msg.msg_type_url
        )));
    }
    delete_grant(state, &granter, &grantee, &msg.msg_type_url);
    ctx.emit(
        Event::new("cosmos.authz.v1beta1.EventRevoke")
            .attr("msg_type_url", &msg.msg_type_url)
            .attr("granter", granter)
            .attr("grantee", grantee),
    );
    ctx.emit(
        Event::new("message")
            .attr("action", MSG_REVOKE_TYPE_URL)
            .attr("sender", granter)
            .attr("module", "authz"),
    );
    Ok(())
}
