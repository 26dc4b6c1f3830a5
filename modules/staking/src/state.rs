//! Typed state of the staking module: weights in force, the power schedule,
//! the power cap. Integer arithmetic only.

use std::collections::BTreeMap;

use kiln_framework::{Address, StateReadExt, TxError, TxResult};
use kiln_state::StateRead;

use crate::keys;
use crate::params::StakingParams;

/// One entry of the validator set given to CometBFT: the host a consensus
/// key stands for and its power.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct ConsensusValidator {
    pub owner: Address,
    pub power: u64,
}

/// A change of the set given to CometBFT: the block that returned the
/// updates and the set before them (still signing until `height + 2`).
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
pub struct ValidatorSetChangeRecord {
    pub height: u64,
    /// Consensus key → validator, before the change.
    pub before: BTreeMap<Vec<u8>, ConsensusValidator>,
}

/// The last changes of the set given to CometBFT, oldest first. Validator
/// updates returned at height `H` take effect in CometBFT at `H + 2`, so the
/// set that signs a height is answered exactly from these
/// (see [`StakingExt::consensus_validators`]).
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct ValidatorHistory {
    pub changes: Vec<ValidatorSetChangeRecord>,
}

/// Reads of the staking state, for any state view.
pub trait StakingExt: StateRead {
    fn staking_params(&self) -> TxResult<StakingParams> {
        Ok(self.get_value(keys::PARAMS)?.unwrap_or_default())
    }

    /// Effective weight in force of one host (0 when it has none).
    fn weight_in_force(&self, addr: &Address) -> TxResult<u64> {
        Ok(self.get_u64(&keys::weight(addr))?.unwrap_or(0))
    }

    /// How many hosts have weight in force (the size of
    /// [`Self::weights_in_force`], kept by genesis and every settle that
    /// applies weights; counted once from the weights if absent).
    fn hosts_with_weight(&self) -> TxResult<u64> {
        match self.get_u64(keys::HOSTS_WITH_WEIGHT)? {
            Some(n) => Ok(n),
            None => Ok(self.weights_in_force()?.len() as u64),
        }
    }

    /// Effective weights in force (from the last settle or genesis), by
    /// address; hosts with 0 are absent.
    fn weights_in_force(&self) -> TxResult<BTreeMap<Address, u64>> {
        let mut out = BTreeMap::new();
        self.for_each_under(keys::WEIGHT_PREFIX, |suffix, value| {
            let addr = Address::from_bytes(suffix)
                .ok_or_else(|| TxError::internal("corrupt weight key"))?;
            let w = <[u8; 8]>::try_from(value)
                .map(u64::from_be_bytes)
                .map_err(|_| TxError::internal("corrupt weight"))?;
            if w > 0 {
                out.insert(addr, w);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The validator set the chain has given CometBFT (CometBFT's next
    /// validator set): consensus key → host and power.
    fn given_validators(&self) -> TxResult<BTreeMap<Vec<u8>, ConsensusValidator>> {
        Ok(self
            .prefix_values::<ConsensusValidator>(keys::VALIDATOR_PREFIX)?
            .into_iter()
            .collect())
    }

    fn validator_history(&self) -> TxResult<ValidatorHistory> {
        Ok(self.get_value(keys::VALIDATOR_HISTORY)?.unwrap_or_default())
    }

    /// CometBFT's validator set at `height` (consensus key → host, power):
    /// the set given so far, minus the changes returned at `height - 1` or
    /// later (CometBFT applies updates returned at `H` from `H + 2`). Exact
    /// for any height from the state's own height on.
    fn consensus_validators(&self, height: u64) -> TxResult<BTreeMap<Vec<u8>, ConsensusValidator>> {
        let mut set = self.given_validators()?;
        for change in self.validator_history()?.changes.into_iter().rev() {
            if change.height.saturating_add(2) > height {
                set = change.before;
            } else {
                break;
            }
        }
        Ok(set)
    }

    /// CometBFT's voting power of each host at `height` (see
    /// [`Self::consensus_validators`]): the weights in force, except in the
    /// two blocks after a change, when the previous powers still sign.
    /// Hosts with zero power are left out.
    fn consensus_powers(&self, height: u64) -> TxResult<BTreeMap<Address, u64>> {
        let mut out: BTreeMap<Address, u64> = BTreeMap::new();
        for v in self.consensus_validators(height)?.into_values() {
            if v.power > 0 {
                let entry = out.entry(v.owner).or_insert(0);
                *entry = entry.saturating_add(v.power);
            }
        }
        Ok(out)
    }
}

impl<T: StateRead + ?Sized> StakingExt for T {}

/// The power cap of SPEC §4: once at least `min_hosts` hosts have weight, no
/// host keeps more than `max_bps` of the total; the excess is redistributed
/// pro rata among uncapped hosts, repeated until none is above the cap.
/// Integer arithmetic; rounding remainders go to the lowest addresses. The
/// total is preserved whenever the cap is feasible.
pub fn apply_power_cap(
    raw: &BTreeMap<Address, u64>,
    min_hosts: u32,
    max_bps: u32,
) -> BTreeMap<Address, u64> {
    let mut w: BTreeMap<Address, u128> = raw
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(a, v)| (*a, u128::from(*v)))
        .collect();
    let total: u128 = w.values().sum();
    if w.len() < min_hosts as usize || total == 0 || max_bps >= 10_000 {
        return w
            .into_iter()
            .map(|(a, v)| (a, u64::try_from(v).unwrap_or(u64::MAX)))
            .collect();
    }
    let cap = total * u128::from(max_bps) / 10_000;
    let mut capped: std::collections::BTreeSet<Address> = std::collections::BTreeSet::new();
    for _round in 0..=w.len() {
        let mut excess: u128 = 0;
        for (addr, v) in w.iter_mut() {
            if *v > cap {
                excess += *v - cap;
                *v = cap;
                capped.insert(*addr);
            }
        }
        if excess == 0 {
            break;
        }
        let uncapped: Vec<Address> = w.keys().filter(|a| !capped.contains(a)).copied().collect();
        let base: u128 = uncapped.iter().map(|a| w[a]).sum();
        if uncapped.is_empty() || base == 0 {
            break; // infeasible: nothing can absorb the excess
        }
        let mut given: u128 = 0;
        for a in &uncapped {
            let share = excess * w[a] / base;
            if let Some(v) = w.get_mut(a) {
                *v += share;
            }
            given += share;
        }
        let mut remainder = excess - given;
        for a in &uncapped {
            if remainder == 0 {
                break;
            }
            if let Some(v) = w.get_mut(a) {
                *v += 1;
            }
            remainder -= 1;
        }
    }
    w.into_iter()
        .map(|(a, v)| (a, u64::try_from(v).unwrap_or(u64::MAX)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> Address {
        Address([i; 20])
    }

    #[test]
    fn power_cap_with_skewed_weights_keeps_total_and_caps_everyone() {
        let raw: BTreeMap<Address, u64> = [
            (addr(1), 9_000),
            (addr(2), 500),
            (addr(3), 300),
            (addr(4), 150),
            (addr(5), 50),
        ]
        .into_iter()
        .collect();
        let out = apply_power_cap(&raw, 5, 2_500);
        let total: u64 = out.values().sum();
        assert_eq!(total, 10_000);
        assert!(out.values().all(|v| *v <= 2_500), "{out:?}");
        assert_eq!(out[&addr(1)], 2_500);
        // Uncapped hosts keep their order.
        assert!(
            out[&addr(2)] >= out[&addr(3)]
                && out[&addr(3)] >= out[&addr(4)]
                && out[&addr(4)] >= out[&addr(5)]
        );
    }

    #[test]
    fn power_cap_not_applied_below_min_hosts() {
        let raw: BTreeMap<Address, u64> =
            [(addr(1), 9_000), (addr(2), 1_000)].into_iter().collect();
        assert_eq!(apply_power_cap(&raw, 5, 2_500), raw);
    }
}
