//! CometBFT 0.38's rules for applying ABCI validator updates, in one place,
//! for every in-process driver of an app (the devnet producer and the
//! test kit's block driver).
//!
//! CometBFT checks each `FinalizeBlock.validator_updates` list before it
//! applies it, and a list that breaks a rule is a *block execution error*:
//! every node stops at that height, forever. The rules, from
//! `state/execution.go` `validateValidatorUpdates` and `types/validator_set.go`
//! `UpdateWithChangeSet` (`processChanges`, `verifyRemovals`,
//! `verifyUpdates`), in the order CometBFT checks them:
//!
//! 1. a negative power is refused;
//! 2. an update with power > 0 must carry a key CometBFT can decode (ed25519:
//!    32 bytes, secp256k1: 33 bytes) of a type the consensus params allow
//!    (`validator.pub_key_types`, `["ed25519"]` by default); a removal
//!    (power 0) is not key-checked here;
//! 3. a key may appear at most once in one list (CometBFT compares
//!    addresses, which are a hash of the key);
//! 4. one validator's power may not exceed [`MAX_TOTAL_VOTING_POWER`];
//! 5. the resulting set may not be empty;
//! 6. a removal must name a validator in the set;
//! 7. the total power, adding the changes in increasing order of delta, may
//!    never exceed [`MAX_TOTAL_VOTING_POWER`].
//!
//! The genesis set (InitChain) goes through `NewValidatorSet`, the same
//! checks with removals refused outright ([`genesis_validator_set`]).

use std::collections::BTreeMap;

use tendermint_proto::v0_38::abci::ValidatorUpdate;
use tendermint_proto::v0_38::crypto::public_key::Sum;

/// CometBFT's `MaxTotalVotingPower`: `math.MaxInt64 / 8`.
pub const MAX_TOTAL_VOTING_POWER: i64 = i64::MAX / 8;

/// The key types CometBFT accepts when the consensus params do not say.
pub const DEFAULT_KEY_TYPES: &[&str] = &["ed25519"];

/// A consensus public key as CometBFT decodes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConsensusKey {
    Ed25519([u8; 32]),
    Secp256k1([u8; 33]),
}

impl ConsensusKey {
    /// CometBFT's key type name (the one `validator.pub_key_types` lists).
    pub fn type_name(&self) -> &'static str {
        match self {
            ConsensusKey::Ed25519(_) => "ed25519",
            ConsensusKey::Secp256k1(_) => "secp256k1",
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            ConsensusKey::Ed25519(k) => k,
            ConsensusKey::Secp256k1(k) => k,
        }
    }

    /// CometBFT's `PubKeyFromProto`.
    pub fn from_update(update: &ValidatorUpdate) -> Result<Self, ValidatorUpdateError> {
        match update.pub_key.as_ref().and_then(|k| k.sum.as_ref()) {
            Some(Sum::Ed25519(k)) => <[u8; 32]>::try_from(k.as_slice())
                .map(ConsensusKey::Ed25519)
                .map_err(|_| {
                    ValidatorUpdateError::BadKey(format!(
                        "ed25519 key of {} bytes, expected 32",
                        k.len()
                    ))
                }),
            Some(Sum::Secp256k1(k)) => <[u8; 33]>::try_from(k.as_slice())
                .map(ConsensusKey::Secp256k1)
                .map_err(|_| {
                    ValidatorUpdateError::BadKey(format!(
                        "secp256k1 key of {} bytes, expected 33",
                        k.len()
                    ))
                }),
            None => Err(ValidatorUpdateError::BadKey("no public key".into())),
        }
    }
}

impl std::fmt::Display for ConsensusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.type_name(), hex::encode(self.bytes()))
    }
}

/// A validator set as CometBFT applies updates to it: key → voting power
/// (always > 0; proposer priorities are not modelled).
pub type PowerSet = BTreeMap<ConsensusKey, i64>;

/// Why CometBFT would refuse a validator update list (a block execution error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorUpdateError {
    #[error("voting power can't be negative: {power} for {key}")]
    NegativePower { key: String, power: i64 },
    #[error("validator update with an undecodable public key: {0}")]
    BadKey(String),
    #[error("validator {key} is using pubkey type {key_type}, which is unsupported for consensus (allowed: {allowed})")]
    UnsupportedKeyType {
        key: String,
        key_type: &'static str,
        allowed: String,
    },
    #[error("duplicate entry for validator {0} in one update list")]
    Duplicate(String),
    #[error("voting power {power} of {key} is higher than the max total voting power {MAX_TOTAL_VOTING_POWER}")]
    PowerTooHigh { key: String, power: i64 },
    #[error("applying the validator changes would result in an empty set")]
    EmptySet,
    #[error("failed to find validator {0} to remove")]
    RemovalOfUnknown(String),
    #[error("total voting power of the resulting validator set exceeds the max {MAX_TOTAL_VOTING_POWER}")]
    TotalPowerTooHigh,
    #[error("cannot process validators with voting power 0 in the genesis set: {0}")]
    RemovalAtGenesis(String),
}

/// Applies `updates` to `set` exactly as CometBFT 0.38 does at the end of a
/// block, or says which rule the list breaks. `allowed_key_types` are the
/// consensus params' `validator.pub_key_types` (see [`DEFAULT_KEY_TYPES`]).
pub fn apply_validator_updates(
    set: &PowerSet,
    updates: &[ValidatorUpdate],
    allowed_key_types: &[&str],
) -> Result<PowerSet, ValidatorUpdateError> {
    let changes = decode_changes(updates, allowed_key_types)?;
    update_with_change_set(set, &changes, true)
}

/// The set CometBFT builds from InitChain's validators (`NewValidatorSet`):
/// the update rules with removals (power 0) refused.
pub fn genesis_validator_set(
    updates: &[ValidatorUpdate],
    allowed_key_types: &[&str],
) -> Result<PowerSet, ValidatorUpdateError> {
    let changes = decode_changes(updates, allowed_key_types)?;
    update_with_change_set(&PowerSet::new(), &changes, false)
}

/// `validateValidatorUpdates` and `PB2TM.ValidatorUpdates`: powers and keys.
fn decode_changes(
    updates: &[ValidatorUpdate],
    allowed_key_types: &[&str],
) -> Result<Vec<(ConsensusKey, i64)>, ValidatorUpdateError> {
    // validateValidatorUpdates: negative power first, key type only for power > 0.
    for update in updates {
        if update.power < 0 {
            return Err(ValidatorUpdateError::NegativePower {
                key: describe_key(update),
                power: update.power,
            });
        }
        if update.power == 0 {
            continue;
        }
        let key = ConsensusKey::from_update(update)?;
        if !allowed_key_types.contains(&key.type_name()) {
            return Err(ValidatorUpdateError::UnsupportedKeyType {
                key: key.to_string(),
                key_type: key.type_name(),
                allowed: allowed_key_types.join(","),
            });
        }
    }
    // PB2TM.ValidatorUpdates decodes every key, removals included.
    updates
        .iter()
        .map(|u| Ok((ConsensusKey::from_update(u)?, u.power)))
        .collect()
}

fn describe_key(update: &ValidatorUpdate) -> String {
    ConsensusKey::from_update(update)
        .map(|k| k.to_string())
        .unwrap_or_else(|e| e.to_string())
}

/// `updateWithChangeSet`, on decoded changes.
fn update_with_change_set(
    set: &PowerSet,
    changes: &[(ConsensusKey, i64)],
    allow_removals: bool,
) -> Result<PowerSet, ValidatorUpdateError> {
    if changes.is_empty() {
        return Ok(set.clone());
    }
    // processChanges: sorted by key, duplicates, negative, too high.
    let mut sorted: Vec<&(ConsensusKey, i64)> = changes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut updates: Vec<(&ConsensusKey, i64)> = Vec::new();
    let mut removals: Vec<&ConsensusKey> = Vec::new();
    let mut previous: Option<&ConsensusKey> = None;
    for (key, power) in sorted {
        if previous == Some(key) {
            return Err(ValidatorUpdateError::Duplicate(key.to_string()));
        }
        if *power < 0 {
            return Err(ValidatorUpdateError::NegativePower {
                key: key.to_string(),
                power: *power,
            });
        }
        if *power > MAX_TOTAL_VOTING_POWER {
            return Err(ValidatorUpdateError::PowerTooHigh {
                key: key.to_string(),
                power: *power,
            });
        }
        if *power == 0 {
            removals.push(key);
        } else {
            updates.push((key, *power));
        }
        previous = Some(key);
    }
    if !allow_removals {
        if let Some(key) = removals.first() {
            return Err(ValidatorUpdateError::RemovalAtGenesis(key.to_string()));
        }
    }
    // The resulting set may not be empty.
    let new_validators = updates.iter().filter(|(k, _)| !set.contains_key(k)).count();
    if new_validators == 0 && set.len() == removals.len() {
        return Err(ValidatorUpdateError::EmptySet);
    }
    // verifyRemovals.
    let mut removed_power: i64 = 0;
    for key in &removals {
        let power = set
            .get(key)
            .ok_or_else(|| ValidatorUpdateError::RemovalOfUnknown(key.to_string()))?;
        removed_power = removed_power.saturating_add(*power);
    }
    // verifyUpdates: add deltas in increasing order, never above the max.
    let mut deltas: Vec<i64> = updates
        .iter()
        .map(|(k, p)| p.saturating_sub(set.get(k).copied().unwrap_or(0)))
        .collect();
    deltas.sort_unstable();
    let current_total: i64 = set.values().fold(0i64, |a, p| a.saturating_add(*p));
    let mut total = current_total.saturating_sub(removed_power);
    for delta in deltas {
        total = total.saturating_add(delta);
        if total > MAX_TOTAL_VOTING_POWER {
            return Err(ValidatorUpdateError::TotalPowerTooHigh);
        }
    }
    let mut out = set.clone();
    for (key, power) in updates {
        out.insert(key.clone(), power);
    }
    for key in removals {
        out.remove(key);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use tendermint_proto::v0_38::crypto::PublicKey;

    use super::*;

    fn ed(key: u8, power: i64) -> ValidatorUpdate {
        ValidatorUpdate {
            pub_key: Some(PublicKey {
                sum: Some(Sum::Ed25519(vec![key; 32])),
            }),
            power,
        }
    }

    fn set(entries: &[(u8, i64)]) -> PowerSet {
        entries
            .iter()
            .map(|(k, p)| (ConsensusKey::Ed25519([*k; 32]), *p))
            .collect()
    }

    fn apply(s: &PowerSet, u: &[ValidatorUpdate]) -> Result<PowerSet, ValidatorUpdateError> {
        apply_validator_updates(s, u, DEFAULT_KEY_TYPES)
    }

    #[test]
    fn a_valid_list_adds_changes_and_removes() {
        let s = set(&[(1, 10), (2, 20)]);
        let out = apply(&s, &[ed(1, 0), ed(2, 5), ed(3, 7)]).unwrap();
        assert_eq!(out, set(&[(2, 5), (3, 7)]));
        assert_eq!(apply(&s, &[]).unwrap(), s);
    }

    #[test]
    fn a_negative_power_is_refused() {
        let e = apply(&set(&[(1, 10)]), &[ed(2, -1)]).unwrap_err();
        assert!(
            matches!(e, ValidatorUpdateError::NegativePower { power: -1, .. }),
            "{e}"
        );
    }

    #[test]
    fn a_duplicate_key_in_one_list_is_refused() {
        let e = apply(&set(&[(1, 10)]), &[ed(1, 0), ed(1, 5)]).unwrap_err();
        assert!(matches!(e, ValidatorUpdateError::Duplicate(_)), "{e}");
        let e = apply(&set(&[(1, 10)]), &[ed(2, 3), ed(2, 3)]).unwrap_err();
        assert!(matches!(e, ValidatorUpdateError::Duplicate(_)), "{e}");
    }

    #[test]
    fn removing_a_validator_not_in_the_set_is_refused() {
        let e = apply(&set(&[(1, 10)]), &[ed(9, 0), ed(2, 3)]).unwrap_err();
        assert!(
            matches!(e, ValidatorUpdateError::RemovalOfUnknown(_)),
            "{e}"
        );
    }

    #[test]
    fn an_unsupported_or_malformed_key_is_refused() {
        let secp = ValidatorUpdate {
            pub_key: Some(PublicKey {
                sum: Some(Sum::Secp256k1(vec![2; 33])),
            }),
            power: 5,
        };
        let e = apply(&set(&[(1, 10)]), std::slice::from_ref(&secp)).unwrap_err();
        assert!(
            matches!(
                e,
                ValidatorUpdateError::UnsupportedKeyType {
                    key_type: "secp256k1",
                    ..
                }
            ),
            "{e}"
        );
        // Allowed when the params list it.
        assert!(
            apply_validator_updates(&set(&[(1, 10)]), &[secp], &["ed25519", "secp256k1"]).is_ok()
        );
        let short = ValidatorUpdate {
            pub_key: Some(PublicKey {
                sum: Some(Sum::Ed25519(vec![2; 31])),
            }),
            power: 5,
        };
        let e = apply(&set(&[(1, 10)]), &[short]).unwrap_err();
        assert!(matches!(e, ValidatorUpdateError::BadKey(_)), "{e}");
        let none = ValidatorUpdate {
            pub_key: None,
            power: 0,
        };
        assert!(matches!(
            apply(&set(&[(1, 10)]), &[none]).unwrap_err(),
            ValidatorUpdateError::BadKey(_)
        ));
    }

    #[test]
    fn a_total_above_max_total_voting_power_is_refused() {
        let e = apply(&set(&[(1, 10)]), &[ed(2, MAX_TOTAL_VOTING_POWER + 1)]).unwrap_err();
        assert!(
            matches!(e, ValidatorUpdateError::PowerTooHigh { .. }),
            "{e}"
        );
        let e = apply(&set(&[(1, 10)]), &[ed(2, MAX_TOTAL_VOTING_POWER)]).unwrap_err();
        assert_eq!(e, ValidatorUpdateError::TotalPowerTooHigh);
        // Exactly the max is fine once the old power leaves.
        let out = apply(&set(&[(1, 10)]), &[ed(1, 0), ed(2, MAX_TOTAL_VOTING_POWER)]).unwrap();
        assert_eq!(out, set(&[(2, MAX_TOTAL_VOTING_POWER)]));
    }

    #[test]
    fn an_empty_resulting_set_is_refused() {
        let e = apply(&set(&[(1, 10)]), &[ed(1, 0)]).unwrap_err();
        assert_eq!(e, ValidatorUpdateError::EmptySet);
    }

    #[test]
    fn the_genesis_set_refuses_removals_and_builds_the_rest() {
        assert_eq!(
            genesis_validator_set(&[ed(1, 3), ed(2, 4)], DEFAULT_KEY_TYPES).unwrap(),
            set(&[(1, 3), (2, 4)])
        );
        let e = genesis_validator_set(&[ed(1, 3), ed(2, 0)], DEFAULT_KEY_TYPES).unwrap_err();
        assert!(
            matches!(e, ValidatorUpdateError::RemovalAtGenesis(_)),
            "{e}"
        );
        let e = genesis_validator_set(&[ed(1, 3), ed(1, 3)], DEFAULT_KEY_TYPES).unwrap_err();
        assert!(matches!(e, ValidatorUpdateError::Duplicate(_)), "{e}");
    }
}
