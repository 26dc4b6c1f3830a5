//! 20-byte account addresses, bech32 with prefix `kiln`, derived like the Cosmos
//! SDK: RIPEMD160(SHA256(compressed secp256k1 pubkey)). Module accounts use the
//! SDK's `address.Module` rule: the first 20 bytes of SHA256(module name).

use std::fmt;

use bech32::{Bech32, Hrp};
use ripemd::Ripemd160;
use sha2::{Digest, Sha256};

use crate::ADDRESS_PREFIX;

/// Stored (borsh) as its 20 raw bytes; shown and parsed as bech32.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct Address(pub [u8; 20]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("invalid address {0:?}: {1}")]
    Invalid(String, String),
}

impl Address {
    pub fn from_pubkey(compressed_secp256k1: &[u8]) -> Self {
        let sha = Sha256::digest(compressed_secp256k1);
        let rip = Ripemd160::digest(sha);
        let mut out = [0u8; 20];
        out.copy_from_slice(&rip);
        Address(out)
    }

    /// The account of a module (fee collector, escrow, ...).
    pub fn module(name: &str) -> Self {
        let digest = Sha256::digest(name.as_bytes());
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest[..20]);
        Address(out)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 20]>::try_from(bytes).ok().map(Address)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Parses a `kiln1…` address; any other prefix, a bad checksum or a length
    /// other than 20 bytes is an error.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let invalid = |why: String| AddressError::Invalid(text.to_string(), why);
        if text.is_empty() {
            return Err(invalid("empty".into()));
        }
        let (hrp, data) = bech32::decode(text).map_err(|e| invalid(e.to_string()))?;
        if hrp.as_str() != ADDRESS_PREFIX {
            return Err(invalid(format!(
                "expected prefix {ADDRESS_PREFIX:?}, got {:?}",
                hrp.as_str()
            )));
        }
        if text.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("addresses are lower case".into()));
        }
        Address::from_bytes(&data)
            .ok_or_else(|| invalid(format!("expected 20 bytes, got {}", data.len())))
    }

    /// The host's operator address, `kilnvaloper1…` (the Cosmos staking
    /// messages name hosts by it): the same 20 bytes under another prefix.
    pub fn to_valoper(&self) -> String {
        match Hrp::parse(crate::VALOPER_PREFIX) {
            Ok(hrp) => bech32::encode::<Bech32>(hrp, &self.0).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Parses a `kilnvaloper1…` operator address.
    pub fn parse_valoper(text: &str) -> Result<Self, AddressError> {
        let invalid = |why: String| AddressError::Invalid(text.to_string(), why);
        let (hrp, data) = bech32::decode(text).map_err(|e| invalid(e.to_string()))?;
        if hrp.as_str() != crate::VALOPER_PREFIX {
            return Err(invalid(format!(
                "expected an operator address (prefix {:?}), got prefix {:?}",
                crate::VALOPER_PREFIX,
                hrp.as_str()
            )));
        }
        if text.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("addresses are lower case".into()));
        }
        Address::from_bytes(&data)
            .ok_or_else(|| invalid(format!("expected 20 bytes, got {}", data.len())))
    }

    pub fn to_bech32(&self) -> String {
        match Hrp::parse(ADDRESS_PREFIX) {
            Ok(hrp) => bech32::encode::<Bech32>(hrp, &self.0).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_bech32())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_bech32())
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_bech32())
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Address::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bech32_round_trip_and_rejections() {
        let a = Address([7u8; 20]);
        let text = a.to_bech32();
        assert!(text.starts_with("kiln1"));
        assert_eq!(Address::parse(&text).unwrap(), a);
        assert!(Address::parse("cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu").is_err());
        let mut bad = text.clone();
        bad.pop();
        bad.push(if text.ends_with('q') { 'p' } else { 'q' });
        assert!(Address::parse(&bad).is_err());
        assert!(Address::parse("").is_err());
    }
}
