//! The shape of a component: the state machine of one module as the app
//! drives it block by block.
//!
//! The app calls components explicitly, in one fixed order written in one
//! file (`app/src/components.rs`); there is no registry. Every hook has a
//! default that does nothing, so a component implements only what it needs.
//! The epoch's settle is not a hook: it is an explicit pipeline in the app
//! whose steps name the module functions they call.

use kiln_state::StateWrite;

use crate::context::BlockInfo;
use crate::epoch::EpochInfo;
use crate::error::TxResult;
use crate::event::Event;

/// What genesis initialization may know besides the module's own section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesisCtx {
    pub chain_id: String,
    /// The first block height (CometBFT's `initial_height`, ≥ 1).
    pub initial_height: u64,
}

pub trait Component {
    /// Stable name: logs and the README's component table.
    const NAME: &'static str;
    /// The module's section of `app_state` (already validated).
    type Genesis;

    /// Writes the module's genesis state. Called once, at InitChain, in the
    /// fixed component order. A node that joins from a state-sync snapshot
    /// never calls it: the restored state already holds what it wrote.
    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &Self::Genesis,
        ctx: &GenesisCtx,
    ) -> TxResult<()>;

    /// Before the block's transactions. `epoch` is the block's position in
    /// the epoch schedule (the epochs component computes it first).
    fn begin_block<S: StateWrite>(
        state: &mut S,
        block: &BlockInfo,
        epoch: &EpochInfo,
    ) -> TxResult<Vec<Event>> {
        let _ = (state, block, epoch);
        Ok(Vec::new())
    }

    /// At the first block of each epoch stage, after every `begin_block`.
    fn on_stage_start<S: StateWrite>(
        state: &mut S,
        block: &BlockInfo,
        epoch: &EpochInfo,
    ) -> TxResult<Vec<Event>> {
        let _ = (state, block, epoch);
        Ok(Vec::new())
    }

    /// After the block's transactions (and after the settle pipeline, on the
    /// settle block).
    fn end_block<S: StateWrite>(
        state: &mut S,
        block: &BlockInfo,
        epoch: &EpochInfo,
    ) -> TxResult<Vec<Event>> {
        let _ = (state, block, epoch);
        Ok(Vec::new())
    }
}
