//! Software upgrades (Cosmos' `x/upgrade`, driven by governance).
//!
//! A passed `MsgSoftwareUpgrade` stores one [`UpgradePlan`] (a later one
//! replaces it; `MsgCancelUpgrade` removes it). At the plan's height,
//! before any hook of that block, the app asks [`due`]: a binary that has
//! a handler under the plan's name runs its migration and [`mark_applied`]
//! records it; a binary that has none halts there, writing a
//! cosmovisor-compatible `upgrade-info.json`, and never finalizes that
//! block — so every node stops at the same height and resumes only with a
//! binary that knows the upgrade. A binary started on a state in which an
//! upgrade it does not know was applied refuses to run ([`applied`]).

use cosmos_sdk_proto::cosmos::upgrade::v1beta1::{MsgCancelUpgrade, MsgSoftwareUpgrade};
use kiln_framework::params::require_gov_authority;
use kiln_framework::{
    stored_value, Address, Event, ExecCtx, MsgKind, StateReadExt, StateWriteExt, TxError, TxResult,
};
use kiln_state::{StateRead, StateWrite};
use serde_json::json;

use crate::{codes, err};

pub const PLAN_KEY: &[u8] = b"gov/upgrade/plan";
pub const DONE_PREFIX: &[u8] = b"gov/upgrade/done/";

/// Longest upgrade name (it becomes a directory name under cosmovisor).
pub const MAX_NAME_LEN: usize = 140;
/// Longest `info` (cosmovisor reads binary URLs from it).
pub const MAX_INFO_LEN: usize = 10_000;

/// A planned upgrade.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct UpgradePlan {
    pub name: String,
    pub height: u64,
    pub info: String,
}

stored_value!(UpgradePlan, "upgrade plan", 1);

fn done_key(name: &str) -> Vec<u8> {
    [DONE_PREFIX, name.as_bytes()].concat()
}

pub fn plan<S: StateRead + ?Sized>(state: &S) -> TxResult<Option<UpgradePlan>> {
    state.get_value(PLAN_KEY)
}

/// The plan that must run before block `height`, if it is that block's.
pub fn due<S: StateRead + ?Sized>(state: &S, height: u64) -> TxResult<Option<UpgradePlan>> {
    Ok(plan(state)?.filter(|p| p.height == height))
}

/// Every applied upgrade: (name, height).
pub fn applied<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for (key, _) in state.prefix_raw(DONE_PREFIX)? {
        let name =
            String::from_utf8_lossy(key.get(DONE_PREFIX.len()..).unwrap_or_default()).into_owned();
        let height = state.get_u64(&key)?.unwrap_or(0);
        out.push((name, height));
    }
    Ok(out)
}

/// Records that `plan` was applied at `height` and clears it.
pub fn mark_applied<S: StateWrite + ?Sized>(
    state: &mut S,
    plan: &UpgradePlan,
    height: u64,
) -> Event {
    state.delete_raw(PLAN_KEY.to_vec());
    state.put_u64(done_key(&plan.name), height);
    Event::new("kiln.gov.v1.EventUpgradeApplied")
        .attr("name", &plan.name)
        .attr("height", height)
}

/// Checks a plan's fields; `height` is the executing block's.
pub fn check_plan(plan: &UpgradePlan) -> TxResult<()> {
    if plan.name.trim().is_empty() || plan.name.len() > MAX_NAME_LEN {
        return Err(err(
            codes::BAD_UPGRADE,
            format!("an upgrade needs a name of 1 to {MAX_NAME_LEN} bytes"),
        ));
    }
    // The name becomes cosmovisor's `upgrades/<name>/` directory.
    if plan.name.contains(['/', '\\', '\0']) || plan.name == "." || plan.name == ".." {
        return Err(err(
            codes::BAD_UPGRADE,
            format!("upgrade name {:?} cannot be a directory name", plan.name),
        ));
    }
    if plan.height == 0 {
        return Err(err(codes::BAD_UPGRADE, "an upgrade needs a height"));
    }
    if plan.info.len() > MAX_INFO_LEN {
        return Err(err(
            codes::BAD_UPGRADE,
            format!("the upgrade info is over {MAX_INFO_LEN} bytes"),
        ));
    }
    Ok(())
}

#[allow(deprecated)] // `time` and `upgraded_client_state` are refused, not used
fn plan_of(msg: &MsgSoftwareUpgrade) -> TxResult<UpgradePlan> {
    let p = msg
        .plan
        .as_ref()
        .ok_or_else(|| err(codes::BAD_UPGRADE, "MsgSoftwareUpgrade carries no plan"))?;
    if p.time.is_some() {
        return Err(err(
            codes::BAD_UPGRADE,
            "plans by time are not supported (deprecated in Cosmos too): set a height",
        ));
    }
    if p.upgraded_client_state.is_some() {
        return Err(err(
            codes::BAD_UPGRADE,
            "upgraded_client_state is not supported",
        ));
    }
    let plan = UpgradePlan {
        name: p.name.clone(),
        height: u64::try_from(p.height)
            .map_err(|_| err(codes::BAD_UPGRADE, "the upgrade height must be positive"))?,
        info: p.info.clone(),
    };
    check_plan(&plan)?;
    Ok(plan)
}

/// Declaration of `MsgSoftwareUpgrade`.
pub struct SoftwareUpgrade;

impl MsgKind for SoftwareUpgrade {
    type Proto = MsgSoftwareUpgrade;
    const TYPE_URL: &'static str = "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade";

    fn signer(msg: &MsgSoftwareUpgrade) -> TxResult<Address> {
        kiln_framework::msg::address_field(&msg.authority, "authority")
    }

    fn validate_basic(msg: &MsgSoftwareUpgrade) -> TxResult<()> {
        require_gov_authority(&msg.authority)?;
        plan_of(msg).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgSoftwareUpgrade,
    ) -> TxResult<()> {
        require_gov_authority(&msg.authority)?;
        let plan = plan_of(msg)?;
        if plan.height <= ctx.block.height {
            return Err(err(
                codes::BAD_UPGRADE,
                format!(
                    "the upgrade height {} is not after this block ({})",
                    plan.height, ctx.block.height
                ),
            ));
        }
        if state.get_raw(&done_key(&plan.name))?.is_some() {
            return Err(err(
                codes::BAD_UPGRADE,
                format!("upgrade {:?} was already applied", plan.name),
            ));
        }
        state.put_value(PLAN_KEY.to_vec(), &plan)?;
        ctx.emit(
            Event::new("kiln.gov.v1.EventUpgradeScheduled")
                .attr("name", &plan.name)
                .attr("height", plan.height)
                .attr("info", &plan.info),
        );
        Ok(())
    }

    fn describe(msg: &MsgSoftwareUpgrade) -> serde_json::Value {
        json!({
            "@type": Self::TYPE_URL,
            "authority": msg.authority,
            "plan": msg.plan.as_ref().map(|p| json!({"name": p.name, "height": p.height.to_string(), "info": p.info})),
        })
    }
}

/// Declaration of `MsgCancelUpgrade`.
pub struct CancelUpgrade;

impl MsgKind for CancelUpgrade {
    type Proto = MsgCancelUpgrade;
    const TYPE_URL: &'static str = "/cosmos.upgrade.v1beta1.MsgCancelUpgrade";

    fn signer(msg: &MsgCancelUpgrade) -> TxResult<Address> {
        kiln_framework::msg::address_field(&msg.authority, "authority")
    }

    fn validate_basic(msg: &MsgCancelUpgrade) -> TxResult<()> {
        require_gov_authority(&msg.authority).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgCancelUpgrade,
    ) -> TxResult<()> {
        require_gov_authority(&msg.authority)?;
        let Some(plan) = plan(state)? else {
            return Err(err(codes::BAD_UPGRADE, "no upgrade is planned"));
        };
        state.delete_raw(PLAN_KEY.to_vec());
        ctx.emit(
            Event::new("kiln.gov.v1.EventUpgradeCancelled")
                .attr("name", &plan.name)
                .attr("height", plan.height),
        );
        Ok(())
    }

    fn describe(msg: &MsgCancelUpgrade) -> serde_json::Value {
        json!({"@type": Self::TYPE_URL, "authority": msg.authority})
    }
}

/// What [`due`] found that this binary cannot run: the node must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeNeeded {
    pub plan: UpgradePlan,
}

impl std::fmt::Display for UpgradeNeeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UPGRADE \"{}\" NEEDED at height {}: this binary does not know it; install the upgraded kilnd (cosmovisor: upgrades/{}/bin/kilnd) and restart{}",
            self.plan.name,
            self.plan.height,
            self.plan.name,
            if self.plan.info.is_empty() {
                String::new()
            } else {
                format!(" (info: {})", self.plan.info)
            }
        )
    }
}

impl std::error::Error for UpgradeNeeded {}

/// The `upgrade-info.json` cosmovisor watches (`{"name", "height", "info"}`).
pub fn upgrade_info_json(plan: &UpgradePlan) -> String {
    json!({"name": plan.name, "height": plan.height, "info": plan.info}).to_string()
}

/// A TxError for refusing an unknown applied upgrade.
pub fn unknown_applied(name: &str, height: u64) -> TxError {
    TxError::internal(format!(
        "upgrade {name:?} was applied at height {height}, and this binary does not know it: run the binary built for that upgrade"
    ))
}
