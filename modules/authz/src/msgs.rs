//! The authz messages, declared for the app's message list: `MsgGrant` and
//! `MsgRevoke` are ordinary messages; `MsgExec` is only declared here (type
//! URL and signer) because the app's router executes it — its inner messages
//! go to other modules.

use cosmos_sdk_proto::cosmos::authz::v1beta1::{GenericAuthorization, MsgGrant, MsgRevoke};
use cosmos_sdk_proto::Any;
use kiln_framework::msg::rfc3339;
use kiln_framework::{Address, ExecCtx, MsgKind, TxResult};
use kiln_state::StateWrite;
use prost::Message;
use serde_json::json;

use crate::handler::{
    handle_grant, handle_revoke, signer_of_grant, signer_of_revoke, MSG_GRANT_TYPE_URL,
    MSG_REVOKE_TYPE_URL,
};

/// The only authorization Kiln accepts.
pub const GENERIC_AUTHORIZATION_TYPE_URL: &str = "/cosmos.authz.v1beta1.GenericAuthorization";

/// Declaration of `MsgGrant`.
pub struct Grant;

impl MsgKind for Grant {
    type Proto = MsgGrant;
    const TYPE_URL: &'static str = MSG_GRANT_TYPE_URL;

    fn signer(msg: &MsgGrant) -> TxResult<Address> {
        signer_of_grant(msg)
    }

    fn handle<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>, msg: &MsgGrant) -> TxResult<()> {
        handle_grant(state, ctx, msg)
    }

    fn describe(msg: &MsgGrant) -> serde_json::Value {
        let grant = msg.grant.clone().unwrap_or_default();
        let auth = grant
            .authorization
            .as_ref()
            .map(describe_authorization)
            .unwrap_or(serde_json::Value::Null);
        json!({"@type": Self::TYPE_URL, "granter": msg.granter, "grantee": msg.grantee, "grant": {
            "authorization": auth,
            "expiration": grant.expiration.as_ref().map(|t| rfc3339(t.seconds, t.nanos)),
        }})
    }
}

/// JSON of a grant's authorization (`GenericAuthorization` decoded, anything else as base64).
pub fn describe_authorization(any: &Any) -> serde_json::Value {
    if any.type_url == GENERIC_AUTHORIZATION_TYPE_URL {
        if let Ok(m) = GenericAuthorization::decode(any.value.as_slice()) {
            return json!({"@type": any.type_url, "msg": m.msg});
        }
    }
    kiln_framework::msg::opaque_any_json(any)
}

/// Declaration of `MsgRevoke`.
pub struct Revoke;

impl MsgKind for Revoke {
    type Proto = MsgRevoke;
    const TYPE_URL: &'static str = MSG_REVOKE_TYPE_URL;

    fn signer(msg: &MsgRevoke) -> TxResult<Address> {
        signer_of_revoke(msg)
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgRevoke,
    ) -> TxResult<()> {
        handle_revoke(state, ctx, msg)
    }

    fn describe(msg: &MsgRevoke) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "granter": msg.granter, "grantee": msg.grantee,
            "msg_type_url": msg.msg_type_url})
    }
}
