//! The software upgrades this build knows, and what the node does at a
//! planned upgrade's height (the plan itself is governance state:
//! `kiln_gov::upgrade`).
//!
//! At the first block at or after a plan's height, before any hook:
//! - a build with a handler under the plan's name runs its migration in
//!   the block's state and records the upgrade as applied, then the block
//!   goes on as usual — every replica with that build computes the same
//!   app hash;
//! - a build without one **halts**: it writes `upgrade-info.json`
//!   (`{"name","height","info"}`, what cosmovisor watches) into the node's
//!   data directory, logs `UPGRADE "<name>" NEEDED at height <h>`, and never
//!   finalizes the block (`kilnd` exits; CometBFT stops with it). Restarted,
//!   it halts again at the same block.
//!
//! A build that opens a state in which an upgrade it does not know was
//! applied refuses to start ([`check_applied`]): it would compute the
//! chain's later blocks with the old rules.
//!
//! Adding an upgrade = one entry in [`UpgradeHandlers::built_in`] with its
//! migration, in the release that introduces it.

use std::collections::BTreeMap;

use kiln_framework::{BlockInfo, Event, StateWriteExt, TxResult};
use kiln_state::StateWrite;

/// A migration: runs once, in the upgrade block's state, before its hooks.
pub type Migration = fn(&mut dyn StateWrite, &BlockInfo) -> TxResult<Vec<Event>>;

/// The name of the test upgrade builds with the `test-upgrade` feature
/// know (used by the upgrade tests; no release ships it).
pub const TEST_UPGRADE_NAME: &str = "kiln-test-upgrade";

/// Upgrade name → migration.
#[derive(Clone, Default)]
pub struct UpgradeHandlers {
    handlers: BTreeMap<String, Migration>,
}

impl std::fmt::Debug for UpgradeHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}

impl UpgradeHandlers {
    /// The upgrades this build of `kilnd` knows.
    pub fn built_in() -> Self {
        #[allow(unused_mut)]
        let mut handlers = UpgradeHandlers::default();
        #[cfg(feature = "test-upgrade")]
        {
            handlers = handlers.with(TEST_UPGRADE_NAME, test_migration);
        }
        handlers
    }

    /// Adds (or replaces) the handler of `name`.
    pub fn with(mut self, name: &str, migration: Migration) -> Self {
        self.handlers.insert(name.to_string(), migration);
        self
    }

    pub fn get(&self, name: &str) -> Option<Migration> {
        self.handlers.get(name).copied()
    }

    pub fn names(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }
}

/// The test upgrade's migration: doubles governance's `min_deposit` (a
/// stored value every replica must change identically) and records the
/// height it ran at under `app/test_upgrade_height`.
pub fn test_migration(state: &mut dyn StateWrite, block: &BlockInfo) -> TxResult<Vec<Event>> {
    let mut params = kiln_gov::params(state)?;
    params.min_deposit = params.min_deposit.saturating_mul(2);
    state.put_value(kiln_gov::PARAMS_KEY.to_vec(), &params)?;
    state.put_u64(crate::app::keys::TEST_UPGRADE_HEIGHT.to_vec(), block.height);
    Ok(vec![Event::new("kiln.app.v1.EventTestMigration")
        .attr("min_deposit", params.min_deposit)
        .attr("height", block.height)])
}

/// Refuses a state in which an upgrade unknown to `handlers` was applied.
pub fn check_applied<S: kiln_state::StateRead + ?Sized>(
    state: &S,
    handlers: &UpgradeHandlers,
) -> anyhow::Result<()> {
    for (name, height) in kiln_gov::upgrade::applied(state).map_err(|e| anyhow::anyhow!(e.log))? {
        if handlers.get(&name).is_none() {
            anyhow::bail!(
                "refusing to start: upgrade {name:?} was applied at height {height}, and this kilnd does not know it (it knows {:?}); run the binary built for that upgrade (cosmovisor: upgrades/{name}/bin/kilnd)",
                handlers.names()
            );
        }
    }
    Ok(())
}

/// Writes `upgrade-info.json` into `dir` (created if missing).
pub fn write_upgrade_info(
    dir: &std::path::Path,
    plan: &kiln_gov::upgrade::UpgradePlan,
) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("upgrade-info.json");
    std::fs::write(&path, kiln_gov::upgrade::upgrade_info_json(plan))?;
    Ok(path)
}

/// Runs the plan due at `block`'s height, if any: the migration of a known
/// upgrade (returning its events), or [`kiln_gov::upgrade::UpgradeNeeded`].
pub fn run_due<S: StateWrite>(
    state: &mut S,
    block: &BlockInfo,
    handlers: &UpgradeHandlers,
) -> anyhow::Result<Vec<Event>> {
    let Some(plan) =
        kiln_gov::upgrade::due(state, block.height).map_err(|e| anyhow::anyhow!(e.log))?
    else {
        return Ok(Vec::new());
    };
    let Some(migrate) = handlers.get(&plan.name) else {
        return Err(anyhow::Error::new(kiln_gov::upgrade::UpgradeNeeded {
            plan,
        }));
    };
    tracing::info!(name = %plan.name, height = block.height, "applying upgrade");
    let mut events = migrate(state, block)
        .map_err(|e| anyhow::anyhow!("upgrade {:?} migration failed: {}", plan.name, e.log))?;
    events.push(kiln_gov::upgrade::mark_applied(state, &plan, block.height));
    Ok(events)
}
