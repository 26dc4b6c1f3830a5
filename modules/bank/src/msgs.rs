//! The bank's one message, `cosmos.bank.v1beta1.MsgSend`, declared for the
//! app's message list.

use cosmos_sdk_proto::cosmos::bank::v1beta1::MsgSend;
use kiln_framework::{Address, ExecCtx, MsgKind, TxResult};
use kiln_state::StateWrite;
use serde_json::json;

use crate::handler::{handle_send, signer_of_send, validate_send, MSG_SEND_TYPE_URL};

/// Declaration of `MsgSend`.
pub struct Send;

impl MsgKind for Send {
    type Proto = MsgSend;
    const TYPE_URL: &'static str = MSG_SEND_TYPE_URL;

    fn signer(msg: &MsgSend) -> TxResult<Address> {
        signer_of_send(msg)
    }

    fn validate_basic(msg: &MsgSend) -> TxResult<()> {
        validate_send(msg).map(|_| ())
    }

    fn handle<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>, msg: &MsgSend) -> TxResult<()> {
        handle_send(state, ctx, msg)
    }

    fn describe(msg: &MsgSend) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "from_address": msg.from_address,
            "to_address": msg.to_address, "amount": coins_json(&msg.amount)})
    }
}

/// Cosmos-style JSON of proto coins: `[{"denom": …, "amount": "…"}]`.
pub fn coins_json(coins: &[cosmos_sdk_proto::cosmos::base::v1beta1::Coin]) -> serde_json::Value {
    serde_json::Value::Array(
        coins
            .iter()
            .map(|c| json!({"denom": c.denom, "amount": c.amount}))
            .collect(),
    )
}
