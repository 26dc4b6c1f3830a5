//! The model registry under governance (SPEC §5 "Governance registers
//! models"): `MsgRegisterModel` adds a model (the same record and checks
//! as a genesis model), `MsgRetireModel` stops new requests for one.
//! Both are signed by the governance authority, so only a passed proposal
//! sends them. A retired model keeps its record, so requests already
//! started settle, validate and dispute as before; it is never re-used
//! under the same id.

use kiln_framework::params::require_gov_authority;
use kiln_framework::{Address, Event, ExecCtx, MsgKind, StateReadExt, StateWriteExt, TxResult};
use kiln_state::StateWrite;
use serde_json::json;

use crate::genesis::ModelSpec;
use crate::handler::{codes, err};
use crate::keys;
use crate::state::InferenceExt;

/// `MsgRegisterModel`: the model as in genesis.json's `inference.models`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgRegisterModel {
    #[prost(string, tag = "1")]
    pub authority: String,
    /// A [`ModelSpec`] as JSON.
    #[prost(string, tag = "2")]
    pub model: String,
}
kiln_framework::proto_name!(MsgRegisterModel, "kiln.inference.v1");

/// `MsgRetireModel`: no new requests for `model_id`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgRetireModel {
    #[prost(string, tag = "1")]
    pub authority: String,
    #[prost(string, tag = "2")]
    pub model_id: String,
}
kiln_framework::proto_name!(MsgRetireModel, "kiln.inference.v1");

fn spec_of(msg: &MsgRegisterModel) -> TxResult<ModelSpec> {
    let spec: ModelSpec = serde_json::from_str(&msg.model)
        .map_err(|e| err(codes::BAD_FIELD, format!("model: {e}")))?;
    spec.validate()
        .map_err(|e| err(codes::BAD_FIELD, format!("model {}: {e}", spec.id)))?;
    Ok(spec)
}

/// Declaration of `MsgRegisterModel`.
pub struct RegisterModel;

impl MsgKind for RegisterModel {
    type Proto = MsgRegisterModel;
    const TYPE_URL: &'static str = "/kiln.inference.v1.MsgRegisterModel";

    fn signer(msg: &MsgRegisterModel) -> TxResult<Address> {
        kiln_framework::msg::address_field(&msg.authority, "authority")
    }

    fn validate_basic(msg: &MsgRegisterModel) -> TxResult<()> {
        require_gov_authority(&msg.authority)?;
        spec_of(msg).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgRegisterModel,
    ) -> TxResult<()> {
        require_gov_authority(&msg.authority)?;
        let spec = spec_of(msg)?;
        if state.model(&spec.id)?.is_some() {
            return Err(err(
                codes::BAD_FIELD,
                format!(
                    "model {:?} is already registered (ids are never re-used)",
                    spec.id
                ),
            ));
        }
        state.put_value(keys::model(&spec.id), &spec.model())?;
        state.put_u64(keys::price(&spec.id), spec.initial_price());
        ctx.emit(
            Event::new("kiln.inference.v1.EventModelRegistered")
                .attr("model", &spec.id)
                .attr("gguf_sha256", &spec.gguf_sha256)
                .attr("price_floor_pkiln", spec.price_floor_pkiln),
        );
        Ok(())
    }

    fn describe(msg: &MsgRegisterModel) -> serde_json::Value {
        let model: serde_json::Value = serde_json::from_str(&msg.model)
            .unwrap_or(serde_json::Value::String(msg.model.clone()));
        json!({"@type": Self::TYPE_URL, "authority": msg.authority, "model": model})
    }
}

/// Declaration of `MsgRetireModel`.
pub struct RetireModel;

impl MsgKind for RetireModel {
    type Proto = MsgRetireModel;
    const TYPE_URL: &'static str = "/kiln.inference.v1.MsgRetireModel";

    fn signer(msg: &MsgRetireModel) -> TxResult<Address> {
        kiln_framework::msg::address_field(&msg.authority, "authority")
    }

    fn validate_basic(msg: &MsgRetireModel) -> TxResult<()> {
        require_gov_authority(&msg.authority)?;
        if msg.model_id.trim().is_empty() {
            return Err(err(codes::BAD_FIELD, "model_id is empty"));
        }
        Ok(())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgRetireModel,
    ) -> TxResult<()> {
        require_gov_authority(&msg.authority)?;
        if state.model(&msg.model_id)?.is_none() {
            return Err(err(
                codes::UNKNOWN_MODEL,
                format!("model {:?} is not registered", msg.model_id),
            ));
        }
        let key = keys::retired(&msg.model_id);
        if let Some(at) = state.get_u64(&key)? {
            return Err(err(
                codes::BAD_FIELD,
                format!(
                    "model {:?} was already retired at height {at}",
                    msg.model_id
                ),
            ));
        }
        state.put_u64(key, ctx.block.height);
        ctx.emit(
            Event::new("kiln.inference.v1.EventModelRetired")
                .attr("model", &msg.model_id)
                .attr("height", ctx.block.height),
        );
        Ok(())
    }

    fn describe(msg: &MsgRetireModel) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "authority": msg.authority, "model_id": msg.model_id})
    }
}
