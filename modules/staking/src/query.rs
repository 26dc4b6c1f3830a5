//! JSON queries: `/kiln.sprint.v1.Query/Weights` (every host with weight or
//! still signing, with its share and consensus power at the queried height;
//! the path keeps its pre-split name so existing clients keep working) and
//! `/kiln.staking.v1.Query/Params`.

use std::collections::BTreeSet;

use kiln_framework::query::json;
use kiln_framework::{Address, TxResult};
use kiln_state::StateRead;

use crate::state::StakingExt;

pub const WEIGHTS_PATH: &str = "/kiln.sprint.v1.Query/Weights";
pub const PARAMS_PATH: &str = "/kiln.staking.v1.Query/Params";
/// The newest 100 misbehaviour records, newest first.
pub const MISBEHAVIOR_PATH: &str = "/kiln.staking.v1.Query/Misbehavior";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeightRow {
    pub host: Address,
    pub weight: u64,
    /// Share of total weight in basis points.
    pub share_bps: u64,
    /// CometBFT voting power at the queried height: the effective weight,
    /// except in the two blocks after a settle (CometBFT applies validator
    /// updates at `H + 2`), when the previous power still signs.
    pub consensus_power: u64,
}

/// `height` is the height of `state` (consensus power depends on it).
pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    height: u64,
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        WEIGHTS_PATH => weight_rows(state, height).and_then(|rows| json(&rows)),
        PARAMS_PATH => state.staking_params().and_then(|p| json(&p)),
        MISBEHAVIOR_PATH => crate::misbehavior::recent(state, 100).and_then(|r| json(&r)),
        _ => return None,
    };
    Some(result)
}

pub fn weight_rows<S: StateRead + ?Sized>(state: &S, height: u64) -> TxResult<Vec<WeightRow>> {
    let w = state.weights_in_force()?;
    let powers = state.consensus_powers(height)?;
    let total: u128 = w.values().map(|v| u128::from(*v)).sum();
    // Hosts with weight, and hosts that still sign with their old power.
    let mut hosts: BTreeSet<Address> = w.keys().copied().collect();
    hosts.extend(powers.keys().copied());
    Ok(hosts
        .into_iter()
        .map(|a| {
            let v = w.get(&a).copied().unwrap_or(0);
            WeightRow {
                host: a,
                weight: v,
                share_bps: (u128::from(v) * 10_000)
                    .checked_div(total)
                    .and_then(|b| u64::try_from(b).ok())
                    .unwrap_or(0),
                consensus_power: powers.get(&a).copied().unwrap_or(0),
            }
        })
        .collect())
}
