//! `app_state.staking`: params. The epoch-1 weights come from the genesis
//! hosts (`app_state.hosts.hosts[].weight`), handed over by the app.

use kiln_framework::{Address, Component, GenesisCtx, StateWriteExt, TxError, TxResult};
use kiln_state::StateWrite;

use crate::keys;
use crate::params::StakingParams;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StakingGenesis {
    #[serde(default)]
    pub params: StakingParams,
}

/// What staking's genesis writes: its params and the epoch-1 weights, which
/// the app takes from the genesis hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StakingInit {
    pub params: StakingParams,
    pub initial_weights: Vec<(Address, u64)>,
}

impl StakingGenesis {
    pub fn validate(&self) -> Result<(), String> {
        self.params.validate()
    }
}

/// The staking module as a component: genesis only today; the settle
/// pipeline calls [`crate::settle`] explicitly.
pub struct Staking;

impl Component for Staking {
    const NAME: &'static str = "staking";
    type Genesis = StakingInit;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &StakingInit,
        _ctx: &GenesisCtx,
    ) -> TxResult<()> {
        genesis
            .params
            .validate()
            .map_err(TxError::invalid_request)?;
        state.put_value(keys::PARAMS.to_vec(), &genesis.params)?;
        for (host, weight) in &genesis.initial_weights {
            if *weight > 0 {
                state.put_u64(keys::weight(host), *weight);
            }
        }
        Ok(())
    }
}
