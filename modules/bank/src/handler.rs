//! Message execution for the bank module.

use cosmos_sdk_proto::cosmos::bank::v1beta1::MsgSend;
use kiln_framework::{Address, Coins, Event, ExecCtx, TxError, TxResult};
use kiln_state::StateWrite;

use crate::state::BankExt;

pub const MSG_SEND_TYPE_URL: &str = "/cosmos.bank.v1beta1.MsgSend";

/// Stateless checks of a `MsgSend`; returns (from, to, coins).
pub fn validate_send(msg: &MsgSend) -> TxResult<(Address, Address, Coins)> {
    let from =
        Address::parse(&msg.from_address).map_err(|e| TxError::invalid_address(e.to_string()))?;
    let to =
        Address::parse(&msg.to_address).map_err(|e| TxError::invalid_address(e.to_string()))?;
    let coins = Coins::from_proto(&msg.amount)?;
    if coins.is_empty() {
        return Err(TxError::invalid_coins("send amount must not be empty"));
    }
    Ok((from, to, coins))
}

pub fn signer_of_send(msg: &MsgSend) -> TxResult<Address> {
    Address::parse(&msg.from_address).map_err(|e| TxError::invalid_address(e.to_string()))
}

pub fn handle_send<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    msg: &MsgSend,
) -> TxResult<()> {
    let (from, to, coins) = validate_send(msg)?;
    state.transfer(ctx, &from, &to, &coins)?;
    ctx.emit(
        Event::new("message")
            .attr("action", MSG_SEND_TYPE_URL)
            .attr("sender", from)
            .attr("module", "bank"),
    );
    Ok(())
}
