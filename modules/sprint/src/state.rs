//! Typed state of the host registry and the sprint, committee selection and
//! the power cap. Integer arithmetic only.

use std::collections::BTreeMap;

use kiln_framework::{Address, StateReadExt, TxError, TxResult};
use kiln_state::StateRead;
use sha2::{Digest, Sha256};

use crate::keys;
use crate::params::SprintParams;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Host {
    pub owner: Address,
    pub worker_url: String,
    /// Hex of the 32-byte ed25519 consensus key.
    pub consensus_pubkey: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub hardware: String,
    #[serde(default)]
    pub registered_height: u64,
}

impl Host {
    pub fn consensus_key_bytes(&self) -> Vec<u8> {
        hex::decode(&self.consensus_pubkey).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Commitment {
    pub root: String,
    pub count: u64,
    pub height: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Opened {
    pub index: u64,
    pub nonce: u64,
    pub distance_q: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochResult {
    pub accepted: bool,
    /// Why not accepted: `unopened`, `rejected` or empty.
    pub reason: String,
    pub raw_weight: u64,
    pub effective_weight: u64,
    pub valid_vote_weight: u64,
    pub committee_weight: u64,
}

/// Validator updates returned at height `H` take effect in CometBFT at
/// `H + 2`. Settle records the powers in force before it, so consensus power
/// at any height can be answered exactly (see [`consensus_powers`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PowerSchedule {
    pub settle_height: u64,
    /// First height whose validator set has the new powers.
    pub effective_height: u64,
    /// Powers in force before the settle (effective until `effective_height`).
    pub previous: BTreeMap<Address, u64>,
}

/// CometBFT's voting power of each host at `height`: the weights in force,
/// except in the two blocks after a settle, when the previous powers still
/// sign. Hosts with zero power are left out.
pub fn consensus_powers<S: StateRead + ?Sized>(
    state: &S,
    height: u64,
) -> TxResult<BTreeMap<Address, u64>> {
    let schedule: Option<PowerSchedule> = state.get_json(keys::POWER_SCHEDULE)?;
    match schedule {
        Some(s) if height < s.effective_height => {
            Ok(s.previous.into_iter().filter(|(_, w)| *w > 0).collect())
        }
        _ => Ok(weights(state)?
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .collect()),
    }
}

pub fn sprint_params<S: StateRead + ?Sized>(state: &S) -> TxResult<SprintParams> {
    Ok(state.get_json(keys::PARAMS)?.unwrap_or_default())
}

pub fn host<S: StateRead + ?Sized>(state: &S, addr: &Address) -> TxResult<Option<Host>> {
    state.get_json(&keys::host(addr))
}

pub fn hosts<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<Host>> {
    state
        .prefix_raw(keys::HOST_PREFIX)?
        .into_iter()
        .map(|(_, v)| {
            serde_json::from_slice(&v).map_err(|e| TxError::internal(format!("corrupt host: {e}")))
        })
        .collect()
}

/// Effective weights in force (from the last settle or genesis), by address.
pub fn weights<S: StateRead + ?Sized>(state: &S) -> TxResult<BTreeMap<Address, u64>> {
    let mut out = BTreeMap::new();
    for (key, value) in state.prefix_raw(keys::WEIGHT_PREFIX)? {
        let addr = Address::from_bytes(&key[keys::WEIGHT_PREFIX.len()..])
            .ok_or_else(|| TxError::internal("corrupt weight key"))?;
        let w = <[u8; 8]>::try_from(value.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| TxError::internal("corrupt weight"))?;
        if w > 0 {
            out.insert(addr, w);
        }
    }
    Ok(out)
}

pub fn commitment<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    addr: &Address,
) -> TxResult<Option<Commitment>> {
    state.get_json(&keys::commit(epoch, addr))
}

pub fn opened<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    addr: &Address,
) -> TxResult<Option<Vec<Opened>>> {
    state.get_json(&keys::open(epoch, addr))
}

/// Hosts that committed in `epoch`, in address order.
pub fn committed_hosts<S: StateRead + ?Sized>(state: &S, epoch: u64) -> TxResult<Vec<Address>> {
    let prefix = keys::commits_of_epoch(epoch);
    state
        .prefix_raw(&prefix)?
        .into_iter()
        .map(|(k, _)| {
            Address::from_bytes(&k[prefix.len()..])
                .ok_or_else(|| TxError::internal("corrupt commit key"))
        })
        .collect()
}

/// The validators assigned to `host`'s opening (SPEC §4 "Validation"): drawn
/// by weight without replacement from the weights in force, seeded by the
/// host's challenge; never the host itself unless it is the only host with
/// weight. `sprint_committee = 0` assigns every eligible host. Sorted.
pub fn committee(
    weights: &BTreeMap<Address, u64>,
    host: &Address,
    challenge: &[u8; 32],
    size: u32,
) -> Vec<Address> {
    let mut pool: Vec<(Address, u64)> = weights
        .iter()
        .filter(|(a, w)| *a != host && **w > 0)
        .map(|(a, w)| (*a, *w))
        .collect();
    if pool.is_empty() {
        return if weights.get(host).copied().unwrap_or(0) > 0 {
            vec![*host]
        } else {
            Vec::new()
        };
    }
    if size == 0 || usize::try_from(size).map_or(true, |s| s >= pool.len()) {
        return pool.into_iter().map(|(a, _)| a).collect();
    }
    let mut chosen = Vec::new();
    let mut counter: u64 = 0;
    while chosen.len() < size as usize && !pool.is_empty() {
        let total: u128 = pool.iter().map(|(_, w)| u128::from(*w)).sum();
        let digest = Sha256::new()
            .chain_update(b"kiln/committee/v1")
            .chain_update(challenge)
            .chain_update(counter.to_le_bytes())
            .finalize();
        counter = counter.wrapping_add(1);
        let mut word = [0u8; 16];
        word.copy_from_slice(&digest[..16]);
        let mut pick = u128::from_le_bytes(word) % total.max(1);
        let mut index = 0;
        for (i, (_, w)) in pool.iter().enumerate() {
            if pick < u128::from(*w) {
                index = i;
                break;
            }
            pick -= u128::from(*w);
        }
        chosen.push(pool.remove(index).0);
    }
    chosen.sort();
    chosen
}

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

    #[test]
    fn committee_excludes_host_unless_alone_and_is_deterministic() {
        let w: BTreeMap<Address, u64> = (1..=6).map(|i| (addr(i), u64::from(i) * 10)).collect();
        let c = committee(&w, &addr(1), &[9; 32], 3);
        assert_eq!(c.len(), 3);
        assert!(!c.contains(&addr(1)));
        assert_eq!(c, committee(&w, &addr(1), &[9; 32], 3));
        assert_eq!(committee(&w, &addr(2), &[9; 32], 0).len(), 5);
        let alone: BTreeMap<Address, u64> = [(addr(7), 5)].into_iter().collect();
        assert_eq!(committee(&alone, &addr(7), &[1; 32], 8), vec![addr(7)]);
    }
}
