//! A host's ML nodes (SPEC §1: "a host runs one node and one or more ML
//! workers"): the machines or devices that do its compute.
//!
//! The host declares each one with its account key: an id (unique within
//! the host), the worker URL, the models it serves, a hardware summary and
//! its own ML operational key (one key per machine, so a stolen machine
//! costs one grant; `kiln tx host mlnode add` grants that key the ML-ops
//! messages in the same transaction). Each node gets a **lane** of the
//! host's nonce space when it is added — `[lane·2⁴⁰, (lane+1)·2⁴⁰)`, from
//! lane 1 on (lane 0 is the host's own worker's) — never given to another
//! node of the host, so no two of its nodes can count the same nonce: the
//! sprint refuses an opened leaf outside the node's lane.
//!
//! **Switched at epoch boundaries.** A new node, `disable` and `enable`
//! take effect at the first block of the next epoch (recorded as
//! `pending`, applied by the hosts component's stage-start hook), so an
//! epoch's duties are drawn from one fixed set of nodes. A node's key can
//! send the ML-ops messages (through `MsgExec`) only while the node is
//! enabled in force ([`require_enabled_key`]). A node is removed
//! only once it is disabled in force: disable → next epoch → remove.
//!
//! Keys (under `hosts/`):
//!
//! | key | value |
//! |---|---|
//! | `hosts/mlnode/{host 20}{id}` | [`MlNode`] |
//! | `hosts/mlnode_lanes/{host 20}` | u32 BE: lanes handed out so far (the next lane) |
//! | `hosts/mlnode_pending/{host 20}{id}` | empty: the node has a change for the next epoch start |

use kiln_framework::msg::address_field;
use kiln_framework::{
    stored_value, Address, Event, ExecCtx, MsgKind, StateReadExt, StateWriteExt, TxError, TxResult,
};
use kiln_state::{StateRead, StateWrite};
use serde_json::json;

use crate::handler::codes;
use crate::state::HostsExt;
use crate::CODESPACE;

pub const MLNODE_PREFIX: &[u8] = b"hosts/mlnode/";
pub const LANES_PREFIX: &[u8] = b"hosts/mlnode_lanes/";
pub const PENDING_PREFIX: &[u8] = b"hosts/mlnode_pending/";

/// Most ML nodes one host declares.
pub const MAX_ML_NODES: usize = 64;
/// Longest node id.
pub const MAX_ID_LEN: usize = 32;
/// Bits of a lane's nonce range: a lane holds 2⁴⁰ nonces.
pub const LANE_BITS: u32 = 40;
/// The lane of a host's own worker, the one that sprints without an ML
/// node id (a host that declares no nodes): nonces `[0, 2⁴⁰)`.
pub const HOST_LANE: u32 = 0;
/// The first lane handed to a declared ML node.
pub const FIRST_NODE_LANE: u32 = 1;

/// Whether `nonce` lies in `lane`.
pub fn lane_owns_nonce(lane: u32, nonce: u64) -> bool {
    nonce >> LANE_BITS == u64::from(lane)
}

/// Error codes of ML nodes (codespace `hosts`).
pub mod errors {
    pub const UNKNOWN_ML_NODE: u32 = 6;
    pub const ML_NODE_EXISTS: u32 = 7;
    pub const ML_NODE_STATE: u32 = 8;
    pub const TOO_MANY_ML_NODES: u32 = 9;
}

fn err(code: u32, log: impl Into<String>) -> TxError {
    TxError::module(CODESPACE, code, log)
}

fn node_key(host: &Address, id: &str) -> Vec<u8> {
    [MLNODE_PREFIX, host.as_bytes(), id.as_bytes()].concat()
}
fn lanes_key(host: &Address) -> Vec<u8> {
    [LANES_PREFIX, host.as_bytes()].concat()
}
fn pending_key(host: &Address, id: &str) -> Vec<u8> {
    [PENDING_PREFIX, host.as_bytes(), id.as_bytes()].concat()
}

/// One ML node of a host.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct MlNode {
    pub host: Address,
    pub id: String,
    /// Its part of the host's nonce space: `[lane·2⁴⁰, (lane+1)·2⁴⁰)`.
    pub lane: u32,
    pub worker_url: String,
    pub models: Vec<String>,
    pub hardware: String,
    /// The ML operational key its worker signs with.
    pub ml_key: Address,
    /// In force this epoch.
    pub enabled: bool,
    /// `Some(on)`: becomes enabled (`true`) or disabled at the next epoch start.
    pub pending: Option<bool>,
    pub added_height: u64,
}

stored_value!(MlNode, "ML node", 1);

impl MlNode {
    /// The first nonce of its lane.
    pub fn first_nonce(&self) -> u64 {
        u64::from(self.lane) << LANE_BITS
    }

    /// Whether `nonce` lies in its lane.
    pub fn owns_nonce(&self, nonce: u64) -> bool {
        lane_owns_nonce(self.lane, nonce)
    }

    /// `enabled`, `disabled`, `enabling` (from the next epoch) or `disabling`.
    pub fn state_name(&self) -> &'static str {
        match (self.enabled, self.pending) {
            (false, Some(true)) => "enabling",
            (true, Some(false)) => "disabling",
            (true, _) => "enabled",
            (false, _) => "disabled",
        }
    }
}

/// The ML nodes of `host`, in id order.
pub fn ml_nodes<S: StateRead + ?Sized>(state: &S, host: &Address) -> TxResult<Vec<MlNode>> {
    Ok(state
        .prefix_values::<MlNode>(&[MLNODE_PREFIX, host.as_bytes()].concat())?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

pub fn ml_node<S: StateRead + ?Sized>(
    state: &S,
    host: &Address,
    id: &str,
) -> TxResult<Option<MlNode>> {
    state.get_value(&node_key(host, id))
}

/// The node of `host` whose worker signs with `ml_key`, if any.
pub fn node_of_key<S: StateRead + ?Sized>(
    state: &S,
    host: &Address,
    ml_key: &Address,
) -> TxResult<Option<MlNode>> {
    Ok(ml_nodes(state, host)?
        .into_iter()
        .find(|n| n.ml_key == *ml_key))
}

/// An ML key of a declared ML node of `host` works only while that node
/// is enabled in force: from the epoch after it was added or enabled, until
/// the epoch it is disabled in. Keys that are no node's (a host's single
/// worker, before it declares nodes) are not restricted here; their grant
/// alone decides.
pub fn require_enabled_key<S: StateRead + ?Sized>(
    state: &S,
    host: &Address,
    ml_key: &Address,
) -> TxResult<()> {
    match node_of_key(state, host, ml_key)? {
        Some(node) if !node.enabled => Err(err(
            errors::ML_NODE_STATE,
            format!(
                "ML node {:?} of host {host} is {}: its key {ml_key} gets no duty until an epoch starts with it enabled",
                node.id,
                node.state_name()
            ),
        )),
        _ => Ok(()),
    }
}

/// Writes a genesis ML node (validated by `HostsGenesis::validate`): the
/// host's next lane, in force from the first block.
pub fn put_genesis_node<S: StateWrite>(
    state: &mut S,
    n: &crate::genesis::GenesisMlNode,
) -> TxResult<()> {
    let lane = state
        .get_u64(&lanes_key(&n.host))?
        .unwrap_or(u64::from(FIRST_NODE_LANE));
    let lane_u32 = u32::try_from(lane)
        .map_err(|_| TxError::internal("the host's nonce lanes are exhausted"))?;
    state.put_u64(lanes_key(&n.host), lane.saturating_add(1));
    let node = MlNode {
        host: n.host,
        id: n.id.clone(),
        lane: lane_u32,
        worker_url: n.worker_url.clone(),
        models: n.models.clone(),
        hardware: n.hardware.clone(),
        ml_key: n.ml_key,
        enabled: n.enabled,
        pending: None,
        added_height: 0,
    };
    state.put_value(node_key(&n.host, &n.id), &node)
}

/// Applies every scheduled enable/disable; called at the first block of
/// each epoch. Returns one event per node switched.
pub fn apply_pending<S: StateWrite>(state: &mut S, height: u64) -> TxResult<Vec<Event>> {
    let mut events = Vec::new();
    let pending: Vec<Vec<u8>> = state
        .prefix_raw(PENDING_PREFIX)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for key in pending {
        state.delete_raw(key.clone());
        let rest = key.get(PENDING_PREFIX.len()..).unwrap_or_default();
        let (Some(host), Some(id)) = (
            rest.get(..20).and_then(Address::from_bytes),
            rest.get(20..)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        ) else {
            return Err(TxError::internal("corrupt ML node pending key"));
        };
        let Some(mut node) = ml_node(state, &host, &id)? else {
            continue;
        };
        if let Some(on) = node.pending.take() {
            node.enabled = on;
            state.put_value(node_key(&host, &id), &node)?;
            events.push(
                Event::new("kiln.host.v1.EventMlNodeSwitched")
                    .attr("host", host)
                    .attr("ml_node", &id)
                    .attr("enabled", on)
                    .attr("height", height),
            );
        }
    }
    Ok(events)
}

/// An ML node id: 1..=[`MAX_ID_LEN`] characters of `a-z`, `0-9`, `-`, `_`.
pub fn check_id(id: &str) -> TxResult<()> {
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(err(
            codes::BAD_FIELD,
            format!("ML node id {id:?}: 1..={MAX_ID_LEN} characters of a-z, 0-9, '-' or '_'"),
        ));
    }
    Ok(())
}

fn must_host<S: StateRead + ?Sized>(state: &S, owner: &Address) -> TxResult<()> {
    if !state.is_host(owner)? {
        return Err(err(
            codes::NOT_A_HOST,
            format!("{owner} is not a registered host (kiln tx host register)"),
        ));
    }
    Ok(())
}

fn must_node<S: StateRead + ?Sized>(state: &S, owner: &Address, id: &str) -> TxResult<MlNode> {
    ml_node(state, owner, id)?.ok_or_else(|| {
        err(
            errors::UNKNOWN_ML_NODE,
            format!("host {owner} has no ML node {id:?} (kiln query host {owner})"),
        )
    })
}

/// Declares an ML node (enabled from the next epoch start).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgAddMlNode {
    #[prost(string, tag = "1")]
    pub owner: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(string, tag = "3")]
    pub worker_url: String,
    #[prost(string, repeated, tag = "4")]
    pub models: Vec<String>,
    #[prost(string, tag = "5")]
    pub hardware: String,
    /// The node's ML operational key (bech32 account address).
    #[prost(string, tag = "6")]
    pub ml_key: String,
}
kiln_framework::proto_name!(MsgAddMlNode, "kiln.host.v1");

/// Replaces a node's worker URL, models and hardware.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgUpdateMlNode {
    #[prost(string, tag = "1")]
    pub owner: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(string, tag = "3")]
    pub worker_url: String,
    #[prost(string, repeated, tag = "4")]
    pub models: Vec<String>,
    #[prost(string, tag = "5")]
    pub hardware: String,
}
kiln_framework::proto_name!(MsgUpdateMlNode, "kiln.host.v1");

/// Enables or disables a node from the next epoch start.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSetMlNodeEnabled {
    #[prost(string, tag = "1")]
    pub owner: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(bool, tag = "3")]
    pub enabled: bool,
}
kiln_framework::proto_name!(MsgSetMlNodeEnabled, "kiln.host.v1");

/// Removes a node that is disabled in force.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgRemoveMlNode {
    #[prost(string, tag = "1")]
    pub owner: String,
    #[prost(string, tag = "2")]
    pub id: String,
}
kiln_framework::proto_name!(MsgRemoveMlNode, "kiln.host.v1");

/// Declaration of `MsgAddMlNode`.
pub struct AddMlNode;

impl MsgKind for AddMlNode {
    type Proto = MsgAddMlNode;
    const TYPE_URL: &'static str = "/kiln.host.v1.MsgAddMlNode";

    fn signer(msg: &MsgAddMlNode) -> TxResult<Address> {
        address_field(&msg.owner, "owner")
    }

    fn validate_basic(msg: &MsgAddMlNode) -> TxResult<()> {
        check_id(&msg.id)?;
        crate::msgs::validate_host_fields(&msg.worker_url, &[], &msg.models, &msg.hardware, false)?;
        address_field(&msg.ml_key, "ml_key").map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgAddMlNode,
    ) -> TxResult<()> {
        let owner = address_field(&msg.owner, "owner")?;
        let ml_key = address_field(&msg.ml_key, "ml_key")?;
        must_host(state, &owner)?;
        if ml_key == owner {
            return Err(err(
                codes::BAD_FIELD,
                "an ML node's key must not be the host's account key (the account key never sits on a worker machine)",
            ));
        }
        if ml_node(state, &owner, &msg.id)?.is_some() {
            return Err(err(
                errors::ML_NODE_EXISTS,
                format!("host {owner} already has an ML node {:?}", msg.id),
            ));
        }
        let existing = ml_nodes(state, &owner)?;
        if existing.len() >= MAX_ML_NODES {
            return Err(err(
                errors::TOO_MANY_ML_NODES,
                format!("a host declares at most {MAX_ML_NODES} ML nodes"),
            ));
        }
        if let Some(other) = existing.iter().find(|n| n.ml_key == ml_key) {
            return Err(err(
                errors::ML_NODE_EXISTS,
                format!(
                    "ML node {:?} already signs with {ml_key}: give each machine its own key",
                    other.id
                ),
            ));
        }
        // Lane 0 belongs to the host's own worker (sprinting without a node id).
        let lane = state
            .get_u64(&lanes_key(&owner))?
            .unwrap_or(u64::from(FIRST_NODE_LANE));
        let lane_u32 = u32::try_from(lane)
            .map_err(|_| TxError::internal("the host's nonce lanes are exhausted"))?;
        state.put_u64(lanes_key(&owner), lane.saturating_add(1));
        let node = MlNode {
            host: owner,
            id: msg.id.clone(),
            lane: lane_u32,
            worker_url: msg.worker_url.clone(),
            models: msg.models.clone(),
            hardware: msg.hardware.clone(),
            ml_key,
            enabled: false,
            pending: Some(true),
            added_height: ctx.block.height,
        };
        state.put_value(node_key(&owner, &msg.id), &node)?;
        state.put_raw(pending_key(&owner, &msg.id), Vec::new());
        ctx.emit(
            Event::new("kiln.host.v1.EventMlNodeAdded")
                .attr("host", owner)
                .attr("ml_node", &msg.id)
                .attr("ml_key", ml_key)
                .attr("lane", lane_u32),
        );
        Ok(())
    }

    fn describe(msg: &MsgAddMlNode) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "owner": msg.owner, "id": msg.id, "worker_url": msg.worker_url,
            "models": msg.models, "hardware": msg.hardware, "ml_key": msg.ml_key})
    }
}

/// Declaration of `MsgUpdateMlNode`.
pub struct UpdateMlNode;

impl MsgKind for UpdateMlNode {
    type Proto = MsgUpdateMlNode;
    const TYPE_URL: &'static str = "/kiln.host.v1.MsgUpdateMlNode";

    fn signer(msg: &MsgUpdateMlNode) -> TxResult<Address> {
        address_field(&msg.owner, "owner")
    }

    fn validate_basic(msg: &MsgUpdateMlNode) -> TxResult<()> {
        check_id(&msg.id)?;
        crate::msgs::validate_host_fields(&msg.worker_url, &[], &msg.models, &msg.hardware, false)
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgUpdateMlNode,
    ) -> TxResult<()> {
        let owner = address_field(&msg.owner, "owner")?;
        let mut node = must_node(state, &owner, &msg.id)?;
        node.worker_url = msg.worker_url.clone();
        node.models = msg.models.clone();
        node.hardware = msg.hardware.clone();
        state.put_value(node_key(&owner, &msg.id), &node)?;
        ctx.emit(
            Event::new("kiln.host.v1.EventMlNodeUpdated")
                .attr("host", owner)
                .attr("ml_node", &msg.id),
        );
        Ok(())
    }

    fn describe(msg: &MsgUpdateMlNode) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "owner": msg.owner, "id": msg.id, "worker_url": msg.worker_url,
            "models": msg.models, "hardware": msg.hardware})
    }
}

/// Declaration of `MsgSetMlNodeEnabled`.
pub struct SetMlNodeEnabled;

impl MsgKind for SetMlNodeEnabled {
    type Proto = MsgSetMlNodeEnabled;
    const TYPE_URL: &'static str = "/kiln.host.v1.MsgSetMlNodeEnabled";

    fn signer(msg: &MsgSetMlNodeEnabled) -> TxResult<Address> {
        address_field(&msg.owner, "owner")
    }

    fn validate_basic(msg: &MsgSetMlNodeEnabled) -> TxResult<()> {
        check_id(&msg.id)
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgSetMlNodeEnabled,
    ) -> TxResult<()> {
        let owner = address_field(&msg.owner, "owner")?;
        let mut node = must_node(state, &owner, &msg.id)?;
        let key = pending_key(&owner, &msg.id);
        if node.enabled == msg.enabled {
            // Back to the state in force: cancel a scheduled switch, if any.
            if node.pending.take().is_none() {
                return Err(err(
                    errors::ML_NODE_STATE,
                    format!(
                        "ML node {:?} is already {}",
                        msg.id,
                        if msg.enabled { "enabled" } else { "disabled" }
                    ),
                ));
            }
            state.delete_raw(key);
        } else {
            node.pending = Some(msg.enabled);
            state.put_raw(key, Vec::new());
        }
        state.put_value(node_key(&owner, &msg.id), &node)?;
        ctx.emit(
            Event::new("kiln.host.v1.EventMlNodeScheduled")
                .attr("host", owner)
                .attr("ml_node", &msg.id)
                .attr("state", node.state_name())
                .attr("takes_effect", "next epoch start"),
        );
        Ok(())
    }

    fn describe(msg: &MsgSetMlNodeEnabled) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "owner": msg.owner, "id": msg.id, "enabled": msg.enabled})
    }
}

/// Declaration of `MsgRemoveMlNode`.
pub struct RemoveMlNode;

impl MsgKind for RemoveMlNode {
    type Proto = MsgRemoveMlNode;
    const TYPE_URL: &'static str = "/kiln.host.v1.MsgRemoveMlNode";

    fn signer(msg: &MsgRemoveMlNode) -> TxResult<Address> {
        address_field(&msg.owner, "owner")
    }

    fn validate_basic(msg: &MsgRemoveMlNode) -> TxResult<()> {
        check_id(&msg.id)
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgRemoveMlNode,
    ) -> TxResult<()> {
        let owner = address_field(&msg.owner, "owner")?;
        let node = must_node(state, &owner, &msg.id)?;
        if node.enabled || node.pending.is_some() {
            return Err(err(
                errors::ML_NODE_STATE,
                format!(
                    "ML node {:?} is {}: disable it, wait for the next epoch, then remove it",
                    msg.id,
                    node.state_name()
                ),
            ));
        }
        state.delete_raw(node_key(&owner, &msg.id));
        ctx.emit(
            Event::new("kiln.host.v1.EventMlNodeRemoved")
                .attr("host", owner)
                .attr("ml_node", &msg.id)
                .attr("ml_key", node.ml_key),
        );
        Ok(())
    }

    fn describe(msg: &MsgRemoveMlNode) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "owner": msg.owner, "id": msg.id})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_partition_the_nonce_space() {
        let node = |lane| MlNode {
            host: Address([1; 20]),
            id: "a".into(),
            lane,
            worker_url: String::new(),
            models: vec![],
            hardware: String::new(),
            ml_key: Address([2; 20]),
            enabled: true,
            pending: None,
            added_height: 0,
        };
        let (a, b) = (node(0), node(1));
        assert!(a.owns_nonce(0) && a.owns_nonce((1 << 40) - 1));
        assert!(!a.owns_nonce(1 << 40) && b.owns_nonce(1 << 40));
        assert_eq!(b.first_nonce(), 1 << 40);
        assert!(!b.owns_nonce(2 << 40));
    }

    #[test]
    fn ids_are_short_and_plain() {
        assert!(check_id("gpu-0").is_ok());
        assert!(check_id("box_2").is_ok());
        for bad in ["", "GPU", "a/b", "a b", &"x".repeat(33)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
