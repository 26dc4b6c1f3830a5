//! Governed parameters: one generic `MsgUpdateParams` for every module.
//!
//! Each module's parameter type implements [`GovernedParams`] (its type URL
//! `/kiln.<module>.v1.MsgUpdateParams`, its params key, its validation).
//! [`UpdateParams<P>`] is then that module's message: signed by the
//! governance authority (only a passed proposal can send it), validated in
//! full, and **scheduled**: the new params are kept under the module's
//! pending key and put in force at the first block of the next epoch
//! ([`take_pending`], called by the app before that block's hooks), so no
//! stage of a running epoch sees its rules change underneath it.
//!
//! The message carries the module's complete params as JSON, in the same
//! shape as that module's `params` in genesis.json (`kiln query <module>
//! params` prints it), so a proposal is written by copying, editing and
//! submitting one object.

use std::marker::PhantomData;

use kiln_state::{StateRead, StateWrite};
use serde_json::json;

use crate::msg::{address_field, MsgKind};
use crate::state_ext::{StateReadExt, StateWriteExt};
use crate::values::StoredValue;
use crate::{Address, Event, ExecCtx, TxError, TxResult};

/// The module account governance executes passed proposals as
/// (Cosmos SDK's `authtypes.NewModuleAddress("gov")`).
pub fn gov_authority() -> Address {
    Address::module("gov")
}

/// Checks that `authority` is the governance authority.
pub fn require_gov_authority(authority: &str) -> TxResult<Address> {
    let addr = address_field(authority, "authority")?;
    if addr != gov_authority() {
        return Err(TxError::unauthorized(format!(
            "only governance may send this (authority must be {}, got {authority})",
            gov_authority()
        )));
    }
    Ok(addr)
}

/// A module's parameters as governance changes them.
pub trait GovernedParams:
    StoredValue + serde::Serialize + serde::de::DeserializeOwned + Clone + PartialEq
{
    /// The module's name (`staking`), as in genesis.json.
    const MODULE: &'static str;
    /// `/kiln.<module>.v1.MsgUpdateParams`.
    const TYPE_URL: &'static str;
    /// Where the params in force are stored.
    const KEY: &'static [u8];
    /// Where the scheduled params wait for the next epoch (under the module's prefix).
    const PENDING_KEY: &'static [u8];
    /// The module's own validation (the same as genesis).
    fn check(&self) -> Result<(), String>;
}

/// `MsgUpdateParams`: `authority` (the governance module account) and the
/// module's complete params as JSON.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgUpdateParams {
    #[prost(string, tag = "1")]
    pub authority: String,
    /// The complete params object, as in genesis.json.
    #[prost(string, tag = "2")]
    pub params: String,
}

/// Parses and validates a params object of `P`.
pub fn parse_params<P: GovernedParams>(text: &str) -> TxResult<P> {
    let params: P = serde_json::from_str(text)
        .map_err(|e| TxError::invalid_request(format!("{} params: {e}", P::MODULE)))?;
    params
        .check()
        .map_err(|e| TxError::invalid_request(format!("{} params: {e}", P::MODULE)))?;
    Ok(params)
}

/// The message declaration of `P`'s `MsgUpdateParams`.
pub struct UpdateParams<P>(PhantomData<P>);

impl<P: GovernedParams> MsgKind for UpdateParams<P> {
    type Proto = MsgUpdateParams;
    const TYPE_URL: &'static str = P::TYPE_URL;

    fn signer(msg: &MsgUpdateParams) -> TxResult<Address> {
        address_field(&msg.authority, "authority")
    }

    fn validate_basic(msg: &MsgUpdateParams) -> TxResult<()> {
        require_gov_authority(&msg.authority)?;
        parse_params::<P>(&msg.params).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgUpdateParams,
    ) -> TxResult<()> {
        require_gov_authority(&msg.authority)?;
        let params = parse_params::<P>(&msg.params)?;
        state.put_value(P::PENDING_KEY.to_vec(), &params)?;
        ctx.emit(
            Event::new("kiln.gov.v1.EventParamsScheduled")
                .attr("module", P::MODULE)
                .attr("takes_effect", "next epoch start")
                .attr("params", &msg.params),
        );
        Ok(())
    }

    fn describe(msg: &MsgUpdateParams) -> serde_json::Value {
        let params: serde_json::Value = serde_json::from_str(&msg.params)
            .unwrap_or(serde_json::Value::String(msg.params.clone()));
        json!({"@type": Self::TYPE_URL, "authority": msg.authority, "params": params})
    }
}

/// Scheduled params of `P`, if any.
pub fn pending<P: GovernedParams, S: StateRead + ?Sized>(state: &S) -> TxResult<Option<P>> {
    state.get_value(P::PENDING_KEY)
}

/// Removes and returns `P`'s scheduled params (the caller puts them in
/// force); `None` when nothing is scheduled.
pub fn take_pending<P: GovernedParams, S: StateWrite>(state: &mut S) -> TxResult<Option<P>> {
    let Some(params) = pending::<P, S>(state)? else {
        return Ok(None);
    };
    state.delete_raw(P::PENDING_KEY.to_vec());
    Ok(Some(params))
}

/// Puts `P`'s scheduled params in force (modules whose params need no more
/// than a store write); returns the event.
pub fn apply_pending<P: GovernedParams, S: StateWrite>(
    state: &mut S,
    height: u64,
) -> TxResult<Option<Event>> {
    let Some(params) = take_pending::<P, S>(state)? else {
        return Ok(None);
    };
    state.put_value(P::KEY.to_vec(), &params)?;
    Ok(Some(applied_event(P::MODULE, height)))
}

/// The event of params put in force.
pub fn applied_event(module: &str, height: u64) -> Event {
    Event::new("kiln.gov.v1.EventParamsApplied")
        .attr("module", module)
        .attr("height", height)
}

/// Declares `$params` governed: `governed_params!(StakingParams, "staking",
/// keys::PARAMS, b"staking/pending_params", |p| p.validate());`
#[macro_export]
macro_rules! governed_params {
    ($ty:ty, $module:literal, $key:expr, $pending:expr, $check:expr) => {
        impl $crate::params::GovernedParams for $ty {
            const MODULE: &'static str = $module;
            const TYPE_URL: &'static str = concat!("/kiln.", $module, ".v1.MsgUpdateParams");
            const KEY: &'static [u8] = $key;
            const PENDING_KEY: &'static [u8] = $pending;
            fn check(&self) -> Result<(), String> {
                let check: fn(&Self) -> Result<(), String> = $check;
                check(self)
            }
        }
    };
}
