//! `kiln1…` bech32 account addresses (20-byte payload).

use anyhow::{bail, Context, Result};
use bech32::{Bech32, Hrp};

/// Human-readable prefix of account addresses.
pub const HRP: &str = "kiln";

/// Decode `kiln1…` into its 20 raw bytes.
pub fn decode(s: &str) -> Result<[u8; 20]> {
    let (hrp, data) =
        bech32::decode(s).with_context(|| format!("address {s:?} is not valid bech32"))?;
    if hrp.as_str() != HRP {
        bail!(
            "address {s:?} has prefix {:?}, expected {HRP:?}",
            hrp.as_str()
        );
    }
    let len = data.len();
    data.try_into()
        .map_err(|_| anyhow::anyhow!("address {s:?} carries {len} bytes, expected 20"))
}

/// Encode 20 raw bytes as `kiln1…`.
pub fn encode(addr: &[u8; 20]) -> String {
    // The HRP is a valid constant and 20 bytes always fit a bech32 string.
    let hrp = Hrp::parse_unchecked(HRP);
    bech32::encode::<Bech32>(hrp, addr).unwrap_or_default()
}

/// Accept `kiln1…` or 40 hex characters.
pub fn parse(s: &str) -> Result<[u8; 20]> {
    if s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        let v = hex::decode(s)?;
        return v.try_into().map_err(|_| anyhow::anyhow!("bad hex address"));
    }
    decode(s)
}
