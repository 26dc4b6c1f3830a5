//! `app_state.staking`: params and genesis bonds. The epoch-1 weights come
//! from the genesis hosts (`app_state.hosts.hosts[].weight`), handed over by
//! the app.

use kiln_framework::{Address, Component, GenesisCtx, StateWriteExt, TxError, TxResult};
use kiln_state::StateWrite;

use crate::keys;
use crate::params::StakingParams;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StakingGenesis {
    #[serde(default)]
    pub params: StakingParams,
    /// Coins bonded at genesis from the delegator's genesis balance (a host
    /// bonding its own collateral names itself as delegator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bonds: Vec<GenesisBond>,
}

/// One genesis bond.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBond {
    pub delegator: Address,
    pub host: Address,
    /// ukiln, decimal string.
    #[serde(with = "kiln_framework::serde_u128")]
    pub amount: u128,
}

/// What staking's genesis writes: its params and the epoch-1 weights, which
/// the app takes from the genesis hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StakingInit {
    pub params: StakingParams,
    pub initial_weights: Vec<(Address, u64)>,
    pub bonds: Vec<GenesisBond>,
}

impl StakingGenesis {
    pub fn validate(&self) -> Result<(), String> {
        self.params.validate()?;
        for b in &self.bonds {
            if b.amount == 0 {
                return Err(format!(
                    "staking.bonds: the bond of {} behind {} is 0",
                    b.delegator, b.host
                ));
            }
        }
        Ok(())
    }
}

/// The epoch-1 weights in force: the genesis hosts' weights after the power
/// cap (the same rule a settle applies). Refuses a total of zero (the chain
/// would have no validator) and a total above CometBFT's max total voting
/// power.
pub fn genesis_weights(
    params: &StakingParams,
    initial_weights: &[(Address, u64)],
) -> TxResult<std::collections::BTreeMap<Address, u64>> {
    let mut raw = std::collections::BTreeMap::new();
    for (host, weight) in initial_weights {
        if *weight > 0 && raw.insert(*host, *weight).is_some() {
            return Err(TxError::invalid_request(format!(
                "genesis weight given twice for {host}"
            )));
        }
    }
    let capped =
        crate::state::apply_power_cap(&raw, params.min_hosts_for_cap, params.max_power_share_bps);
    let total = crate::validators::check_total_power(&capped)?;
    if total == 0 {
        return Err(TxError::invalid_request(
            "total genesis weight is 0: give at least one genesis host (hosts.hosts[].weight) a positive weight, or the chain has no validator",
        ));
    }
    Ok(capped)
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
        let weights = genesis_weights(&genesis.params, &genesis.initial_weights)?;
        for (host, weight) in &weights {
            state.put_u64(keys::weight(host), *weight);
        }
        state.put_u64(
            keys::HOSTS_WITH_WEIGHT.to_vec(),
            weights.values().filter(|w| **w > 0).count() as u64,
        );
        // Genesis bonds (bank and hosts' genesis ran first).
        for b in &genesis.bonds {
            crate::pools::genesis_bond(state, &b.delegator, &b.host, b.amount)?;
        }
        // The genesis validator set (InitChain's answer): every host with
        // weight, under its genesis consensus key (hosts' genesis ran first).
        crate::validators::init_given_set(state)?;
        Ok(())
    }
}
