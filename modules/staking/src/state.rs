//! Typed state of the staking module: weights in force, the power schedule,
//! the power cap. Integer arithmetic only.

use std::collections::BTreeMap;

use kiln_framework::{Address, StateReadExt, TxError, TxResult};
use kiln_state::StateRead;

use crate::keys;
use crate::params::StakingParams;

/// Validator updates returned at height `H` take effect in CometBFT at
/// `H + 2`. Settle records the powers in force before it, so consensus power
/// at any height can be answered exactly (see [`StakingExt::consensus_powers`]).
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
pub struct PowerSchedule {
    pub settle_height: u64,
    /// First height whose validator set has the new powers.
    pub effective_height: u64,
    /// Powers in force before the settle (effective until `effective_height`).
    pub previous: BTreeMap<Address, u64>,
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

    fn power_schedule(&self) -> TxResult<Option<PowerSchedule>> {
        self.get_value(keys::POWER_SCHEDULE)
    }

    /// CometBFT's voting power of each host at `height`: the weights in
    /// force, except in the two blocks after a settle, when the previous
    /// powers still sign. Hosts with zero power are left out.
    fn consensus_powers(&self, height: u64) -> TxResult<BTreeMap<Address, u64>> {
        match self.power_schedule()? {
            Some(s) if height < s.effective_height => {
                Ok(s.previous.into_iter().filter(|(_, w)| *w > 0).collect())
            }
            _ => self.weights_in_force(),
        }
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
