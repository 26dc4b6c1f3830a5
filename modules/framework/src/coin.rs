//! Coins as `u128` amounts with checked arithmetic. `Coins` is a canonical set:
//! sorted by denom, no duplicates, no zero amounts — the Cosmos SDK's rules,
//! enforced when parsing user input.

use std::collections::BTreeMap;
use std::fmt;

use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;

use crate::error::TxError;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Coin {
    pub denom: String,
    #[serde(with = "amount_string")]
    pub amount: u128,
}

/// Serde for a u128 amount as a decimal string (Cosmos style); also
/// re-exported as `kiln_framework::serde_u128`.
pub mod amount_string {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_amount(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses a non-negative integer amount written in decimal digits only.
pub fn parse_amount(text: &str) -> Result<u128, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid amount {text:?}: expected decimal digits"));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(format!("invalid amount {text:?}: leading zeros"));
    }
    text.parse::<u128>()
        .map_err(|_| format!("invalid amount {text:?}: too large"))
}

/// Cosmos SDK denom rule: `[a-zA-Z][a-zA-Z0-9/:._-]{2,127}`.
pub fn validate_denom(denom: &str) -> Result<(), String> {
    let bytes = denom.as_bytes();
    let ok_len = (3..=128).contains(&bytes.len());
    let ok_first = bytes.first().is_some_and(|b| b.is_ascii_alphabetic());
    let ok_rest = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"/:._-".contains(b));
    if ok_len && ok_first && ok_rest {
        Ok(())
    } else {
        Err(format!("invalid denom {denom:?}"))
    }
}

impl Coin {
    pub fn new(denom: impl Into<String>, amount: u128) -> Self {
        Coin {
            denom: denom.into(),
            amount,
        }
    }

    pub fn from_proto(proto: &ProtoCoin) -> Result<Self, TxError> {
        validate_denom(&proto.denom).map_err(TxError::invalid_coins)?;
        let amount = parse_amount(&proto.amount).map_err(TxError::invalid_coins)?;
        Ok(Coin {
            denom: proto.denom.clone(),
            amount,
        })
    }

    pub fn to_proto(&self) -> ProtoCoin {
        ProtoCoin {
            denom: self.denom.clone(),
            amount: self.amount.to_string(),
        }
    }
}

impl fmt::Display for Coin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.denom)
    }
}

/// A canonical list of coins (sorted, unique denoms, positive amounts).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Coins(Vec<Coin>);

impl Coins {
    pub fn empty() -> Self {
        Coins(Vec::new())
    }

    /// Validates user-supplied coins: each denom valid, amounts positive,
    /// sorted by denom with no duplicates.
    pub fn from_proto(list: &[ProtoCoin]) -> Result<Self, TxError> {
        let mut coins = Vec::with_capacity(list.len());
        for proto in list {
            let coin = Coin::from_proto(proto)?;
            if coin.amount == 0 {
                return Err(TxError::invalid_coins(format!(
                    "zero amount of {}",
                    coin.denom
                )));
            }
            if let Some(prev) = coins.last() {
                let prev: &Coin = prev;
                if prev.denom >= coin.denom {
                    return Err(TxError::invalid_coins(
                        "coins must be sorted by denom without duplicates".to_string(),
                    ));
                }
            }
            coins.push(coin);
        }
        Ok(Coins(coins))
    }

    /// Builds a canonical set from arbitrary coins, merging duplicates with
    /// checked addition and dropping zeros.
    pub fn normalize(list: Vec<Coin>) -> Result<Self, TxError> {
        let mut merged: BTreeMap<String, u128> = BTreeMap::new();
        for coin in list {
            let entry = merged.entry(coin.denom).or_insert(0);
            *entry = entry
                .checked_add(coin.amount)
                .ok_or_else(|| TxError::invalid_coins("amount overflow".to_string()))?;
        }
        Ok(Coins(
            merged
                .into_iter()
                .filter(|(_, a)| *a > 0)
                .map(|(denom, amount)| Coin { denom, amount })
                .collect(),
        ))
    }

    pub fn to_proto(&self) -> Vec<ProtoCoin> {
        self.0.iter().map(Coin::to_proto).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Coin> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn amount_of(&self, denom: &str) -> u128 {
        self.0
            .iter()
            .find(|c| c.denom == denom)
            .map(|c| c.amount)
            .unwrap_or(0)
    }

    pub fn into_vec(self) -> Vec<Coin> {
        self.0
    }
}

impl fmt::Display for Coins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|c| c.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc(d: &str, a: &str) -> ProtoCoin {
        ProtoCoin {
            denom: d.into(),
            amount: a.into(),
        }
    }

    #[test]
    fn rejects_unsorted_duplicate_zero_and_garbage() {
        assert!(Coins::from_proto(&[pc("ukiln", "5")]).is_ok());
        assert!(Coins::from_proto(&[pc("uzzz", "1"), pc("ukiln", "1")]).is_err());
        assert!(Coins::from_proto(&[pc("ukiln", "1"), pc("ukiln", "1")]).is_err());
        assert!(Coins::from_proto(&[pc("ukiln", "0")]).is_err());
        assert!(Coins::from_proto(&[pc("ukiln", "-1")]).is_err());
        assert!(Coins::from_proto(&[pc("ukiln", "01")]).is_err());
        assert!(Coins::from_proto(&[pc("u", "1")]).is_err());
        assert!(
            Coins::from_proto(&[pc("ukiln", "340282366920938463463374607431768211456")]).is_err()
        );
    }
}
