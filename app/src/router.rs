//! Routes each message to its module's handler. `MsgExec` is handled here: the
//! authz module checks the grant, then the inner message runs as if its signer
//! (the granter) had sent it. The hot key therefore can do exactly what was
//! granted — a `MsgSend` without a `MsgSend` grant is refused.

use kiln_framework::{ExecCtx, TxResult};
use kiln_store::StateWrite;

use crate::tx::Msg;

pub fn dispatch<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>, msg: &Msg) -> TxResult<()> {
    match msg {
        Msg::Send(m) => kiln_bank::handler::handle_send(state, ctx, m),
        Msg::Grant(m) => kiln_authz::handler::handle_grant(state, ctx, m),
        Msg::Revoke(m) => kiln_authz::handler::handle_revoke(state, ctx, m),
        Msg::RegisterHost(m) => kiln_sprint::handler::handle_register_host(state, ctx, m),
        Msg::UpdateHost(m) => kiln_sprint::handler::handle_update_host(state, ctx, m),
        Msg::SprintCommit(m) => kiln_sprint::handler::handle_commit(state, ctx, m),
        Msg::SprintOpen(m) => kiln_sprint::handler::handle_open(state, ctx, m),
        Msg::SprintVoteCommit(m) => kiln_sprint::handler::handle_vote_commit(state, ctx, m),
        Msg::SprintVoteReveal(m) => kiln_sprint::handler::handle_vote_reveal(state, ctx, m),
        Msg::Exec { exec, inner } => {
            let grantee = kiln_authz::handler::signer_of_exec(exec)?;
            for msg in inner {
                let granter = msg.signer()?;
                if granter != grantee {
                    kiln_authz::state::authorize(
                        state,
                        ctx.block,
                        &granter,
                        &grantee,
                        msg.type_url(),
                    )?;
                }
                dispatch(state, ctx, msg)?;
            }
            ctx.emit(
                kiln_framework::Event::new("message")
                    .attr("action", msg.type_url())
                    .attr("sender", grantee)
                    .attr("module", "authz"),
            );
            Ok(())
        }
    }
}
