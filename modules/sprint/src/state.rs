//! Typed state of the sprint and committee selection. Integer arithmetic only.

use std::collections::BTreeMap;

use kiln_framework::{Address, StateReadExt, TxError, TxResult};
use kiln_state::StateRead;
use sha2::{Digest, Sha256};

use crate::keys;
use crate::params::SprintParams;

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
pub struct Commitment {
    pub root: String,
    pub count: u64,
    pub height: u64,
}

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
pub struct Opened {
    pub index: u64,
    pub nonce: u64,
    pub distance_q: u32,
}

/// The leaves a host opened in an epoch, as stored.
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
pub struct OpenedLeaves(pub Vec<Opened>);

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
pub struct EpochResult {
    pub accepted: bool,
    /// Why not accepted: `unrevealed` (secret not revealed), `unopened`,
    /// `rejected`, or empty.
    pub reason: String,
    pub raw_weight: u64,
    pub effective_weight: u64,
    pub valid_vote_weight: u64,
    pub committee_weight: u64,
}

pub fn sprint_params<S: StateRead + ?Sized>(state: &S) -> TxResult<SprintParams> {
    Ok(state.get_value(keys::PARAMS)?.unwrap_or_default())
}

pub fn commitment<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    addr: &Address,
) -> TxResult<Option<Commitment>> {
    state.get_value(&keys::commit(epoch, addr))
}

pub fn opened<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    addr: &Address,
) -> TxResult<Option<Vec<Opened>>> {
    Ok(state
        .get_value::<OpenedLeaves>(&keys::open(epoch, addr))?
        .map(|l| l.0))
}

/// Hosts that committed in `epoch`, in address order.
/// The result recorded at settle for `addr` in `epoch`.
pub fn result<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    addr: &Address,
) -> TxResult<Option<EpochResult>> {
    state.get_value(&keys::result(epoch, addr))
}

pub fn committed_hosts<S: StateRead + ?Sized>(state: &S, epoch: u64) -> TxResult<Vec<Address>> {
    let mut hosts = Vec::new();
    state.for_each_under(&keys::commits_of_epoch(epoch), |suffix, _| {
        hosts.push(
            Address::from_bytes(suffix).ok_or_else(|| TxError::internal("corrupt commit key"))?,
        );
        Ok(())
    })?;
    Ok(hosts)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> Address {
        Address([i; 20])
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
