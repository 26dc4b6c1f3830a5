//! Transaction parameters (the Cosmos SDK's auth params plus Kiln's minimum gas
//! price, which the SDK keeps in node config but Kiln makes consensus so every
//! validator enforces the same fee floor).

use kiln_framework::{coin::validate_denom, TxError, TxResult};

/// A price per unit of gas with 18 decimal places: `amount_atto / 10^18` of
/// `denom` per gas. Written as a decimal string like `0.025ukiln`.
#[derive(Debug, Clone, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct GasPrice {
    pub denom: String,
    pub amount_atto: u128,
}

const ATTO: u128 = 1_000_000_000_000_000_000;

impl GasPrice {
    pub fn parse(text: &str) -> Result<Self, String> {
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("gas price {text:?} has no denom"))?;
        let (number, denom) = text.split_at(split);
        validate_denom(denom)?;
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if int_part.is_empty()
            || frac_part.len() > 18
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!("invalid gas price {text:?}: expected a decimal with at most 18 places, like 0.025ukiln"));
        }
        let int: u128 = int_part
            .parse()
            .map_err(|_| format!("gas price {text:?} too large"))?;
        let mut frac_padded = frac_part.to_string();
        while frac_padded.len() < 18 {
            frac_padded.push('0');
        }
        let frac: u128 = frac_padded
            .parse()
            .map_err(|_| format!("invalid gas price {text:?}"))?;
        let amount_atto = int
            .checked_mul(ATTO)
            .and_then(|v| v.checked_add(frac))
            .ok_or_else(|| format!("gas price {text:?} too large"))?;
        Ok(GasPrice {
            denom: denom.to_string(),
            amount_atto,
        })
    }

    /// The smallest fee for `gas` units: ceil(gas × price).
    pub fn required_fee(&self, gas: u64) -> TxResult<u128> {
        let total = u128::from(gas)
            .checked_mul(self.amount_atto)
            .ok_or_else(|| TxError::invalid_gas_limit("gas × price overflows"))?;
        Ok(total.div_ceil(ATTO))
    }
}

impl std::fmt::Display for GasPrice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let int = self.amount_atto / ATTO;
        let frac = self.amount_atto % ATTO;
        if frac == 0 {
            write!(f, "{int}{}", self.denom)
        } else {
            let digits = format!("{frac:018}");
            write!(f, "{int}.{}{}", digits.trim_end_matches('0'), self.denom)
        }
    }
}

impl serde::Serialize for GasPrice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for GasPrice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        GasPrice::parse(&text).map_err(serde::de::Error::custom)
    }
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
#[serde(deny_unknown_fields)]
pub struct AuthParams {
    pub max_memo_characters: u64,
    pub tx_sig_limit: u64,
    pub tx_size_cost_per_byte: u64,
    pub sig_verify_cost_secp256k1: u64,
    /// Largest gas limit a single transaction may declare.
    pub max_tx_gas: u64,
    pub min_gas_price: GasPrice,
}

impl Default for AuthParams {
    fn default() -> Self {
        AuthParams {
            max_memo_characters: 256,
            tx_sig_limit: 7,
            tx_size_cost_per_byte: 10,
            sig_verify_cost_secp256k1: 1_000,
            max_tx_gas: 50_000_000,
            min_gas_price: GasPrice {
                denom: kiln_framework::BASE_DENOM.to_string(),
                amount_atto: 25_000_000_000_000_000,
            },
        }
    }
}

impl AuthParams {
    pub fn validate(&self) -> Result<(), String> {
        if self.tx_sig_limit == 0 {
            return Err("auth.params.tx_sig_limit must be at least 1".into());
        }
        if self.max_tx_gas == 0 {
            return Err("auth.params.max_tx_gas must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_price_parses_and_rounds_fees_up() {
        let p = GasPrice::parse("0.025ukiln").unwrap();
        assert_eq!(p.required_fee(200_000).unwrap(), 5_000);
        assert_eq!(p.required_fee(1).unwrap(), 1);
        assert_eq!(p.required_fee(0).unwrap(), 0);
        assert_eq!(p.to_string(), "0.025ukiln");
        assert!(GasPrice::parse("ukiln").is_err());
        assert!(GasPrice::parse("0.1").is_err());
        assert!(GasPrice::parse("-1ukiln").is_err());
        assert_eq!(
            GasPrice::parse("2ukiln").unwrap().required_fee(3).unwrap(),
            6
        );
    }
}
