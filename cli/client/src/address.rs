//! `kiln1…` account addresses as raw bytes, over the chain's own
//! [`kiln_framework::Address`] (one bech32 implementation for the node and
//! every client).

use anyhow::{Context, Result};

pub use kiln_framework::address::AddressError;
pub use kiln_framework::Address;

/// Human-readable prefix of account addresses.
pub const HRP: &str = kiln_framework::ADDRESS_PREFIX;

/// Decodes `kiln1…` into its 20 raw bytes.
pub fn decode(s: &str) -> Result<[u8; 20]> {
    Ok(Address::parse(s)?.0)
}

/// Encodes 20 raw bytes as `kiln1…`.
pub fn encode(addr: &[u8; 20]) -> String {
    Address(*addr).to_bech32()
}

/// Accepts `kiln1…` or 40 hex characters.
pub fn parse(s: &str) -> Result<[u8; 20]> {
    if s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        let v = hex::decode(s).with_context(|| format!("address {s:?} is not hex"))?;
        return v
            .try_into()
            .map_err(|_| anyhow::anyhow!("bad hex address {s:?}"));
    }
    decode(s)
}
