//! `app_state.sprint`: params. (Genesis hosts and their epoch-1 weights are
//! `app_state.hosts`.)

use kiln_framework::{
    BlockInfo, Component, EpochInfo, Event, GenesisCtx, Stage, StateWriteExt, TxError, TxResult,
};
use kiln_state::StateWrite;

use crate::keys;
use crate::params::SprintParams;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SprintGenesis {
    #[serde(default)]
    pub params: SprintParams,
}

impl SprintGenesis {
    pub fn validate(&self) -> Result<(), String> {
        self.params.validate()
    }
}

/// The sprint as a component: genesis here, the beacon at the challenge
/// block ([`crate::beacon`]), committees when the vote stages begin; its
/// settle step is [`crate::settle`] (a [`kiln_framework::RawWeightSource`]).
pub struct Sprint;

impl Component for Sprint {
    const NAME: &'static str = "sprint";
    type Genesis = SprintGenesis;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &SprintGenesis,
        _ctx: &GenesisCtx,
    ) -> TxResult<()> {
        genesis.validate().map_err(TxError::invalid_request)?;
        state.put_value(keys::PARAMS.to_vec(), &genesis.params)
    }

    /// The beacon is recorded at the challenge block; committees are drawn
    /// once, when the vote stages begin (every opening is in by then).
    /// (Escalations are marked by the `invalid` reveals themselves.)
    fn on_stage_start<S: StateWrite>(
        state: &mut S,
        _block: &BlockInfo,
        epoch: &EpochInfo,
    ) -> TxResult<Vec<Event>> {
        match epoch.stage {
            Stage::Challenge => Ok(vec![crate::beacon::record_beacon(state, epoch.epoch)?]),
            Stage::VoteCommit => crate::handler::assign_committees(state, epoch.epoch),
            _ => Ok(Vec::new()),
        }
    }
}
