//! Coin amounts: `1000ukiln`, `1.5kiln` / `1.5KILN` (= 1 500 000 ukiln), other
//! denoms as integers (`5uatom`, `3ibc/ABC…`), lists (`1ukiln,2foo`) and
//! decimal gas prices (`0.025ukiln`).

use std::fmt;

/// Base denom.
pub const BASE_DENOM: &str = kiln_framework::BASE_DENOM;
/// Display denom (case-insensitive on input).
pub const DISPLAY_DENOM: &str = "kiln";
/// Decimals between the display and the base denom.
pub const DECIMALS: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("invalid amount '{0}': {1}")]
    Invalid(String, String),
    #[error("amount '{0}' is too large")]
    Overflow(String),
}

/// A coin with an integer amount in its own denom: the chain's own type.
pub use kiln_framework::Coin;

/// A decimal price per gas unit: `numerator / 10^scale` of `denom`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecCoin {
    pub denom: String,
    pub numerator: u128,
    pub scale: u32,
}

impl DecCoin {
    /// `ceil(gas × price)` in the price's denom.
    pub fn fee_for_gas(&self, gas: u64) -> Result<Coin, AmountError> {
        let prod = (gas as u128)
            .checked_mul(self.numerator)
            .ok_or_else(|| AmountError::Overflow(format!("{gas} gas × {self}")))?;
        let div = 10u128.pow(self.scale);
        Ok(Coin {
            denom: self.denom.clone(),
            amount: prod.div_ceil(div),
        })
    }
}

impl fmt::Display for DecCoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            format_decimal(self.numerator, self.scale),
            self.denom
        )
    }
}

fn format_decimal(n: u128, scale: u32) -> String {
    if scale == 0 {
        return n.to_string();
    }
    let div = 10u128.pow(scale);
    let frac = format!("{:0width$}", n % div, width = scale as usize);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}", n / div)
    } else {
        format!("{}.{}", n / div, frac)
    }
}

/// Formats an amount of ukiln as KILN: `1500000` → `1.5`.
pub fn format_kiln(ukiln: u128) -> String {
    format_decimal(ukiln, DECIMALS)
}

/// Checks a Cosmos SDK denom: `[a-zA-Z][a-zA-Z0-9/:._-]{2,127}`
/// (the chain's rule, [`kiln_framework::coin::validate_denom`]).
pub fn validate_denom(d: &str) -> bool {
    kiln_framework::coin::validate_denom(d).is_ok()
}

/// Splits `12.5kiln` into (`12.5`, `kiln`).
fn split_number(s: &str) -> Result<(&str, &str), AmountError> {
    let s_trim = s.trim();
    let idx = s_trim
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            AmountError::Invalid(s.into(), "missing denom (e.g. 1000ukiln or 1.5kiln)".into())
        })?;
    let (num, denom) = s_trim.split_at(idx);
    if num.is_empty() {
        return Err(AmountError::Invalid(
            s.into(),
            "missing number (e.g. 1000ukiln)".into(),
        ));
    }
    Ok((num, denom.trim()))
}

/// Parses a decimal `int[.frac]` into `(numerator, scale)`.
fn parse_decimal(s: &str, num: &str) -> Result<(u128, u32), AmountError> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() || (num.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(AmountError::Invalid(
            s.into(),
            format!("'{num}' is not a decimal number"),
        ));
    }
    if frac.len() > 18 {
        return Err(AmountError::Invalid(
            s.into(),
            "more than 18 decimal places".into(),
        ));
    }
    let digits = format!("{int}{frac}");
    let n: u128 = digits
        .parse()
        .map_err(|_| AmountError::Overflow(s.into()))?;
    Ok((n, frac.len() as u32))
}

/// Parses one coin. `kiln`/`KILN` amounts may have up to 6 decimals and are
/// converted to `ukiln`; every other denom takes an integer. Zero is rejected.
pub fn parse_coin(s: &str) -> Result<Coin, AmountError> {
    let (num, denom) = split_number(s)?;
    let (n, scale) = parse_decimal(s, num)?;
    let coin = if denom.eq_ignore_ascii_case(DISPLAY_DENOM) {
        if scale > DECIMALS {
            return Err(AmountError::Invalid(
                s.into(),
                format!(
                    "{DISPLAY_DENOM} has at most {DECIMALS} decimals (1 ukiln = 0.000001 kiln)"
                ),
            ));
        }
        let amount = n
            .checked_mul(10u128.pow(DECIMALS - scale))
            .ok_or_else(|| AmountError::Overflow(s.into()))?;
        Coin {
            denom: BASE_DENOM.into(),
            amount,
        }
    } else {
        if !validate_denom(denom) {
            return Err(AmountError::Invalid(
                s.into(),
                format!("'{denom}' is not a valid denom"),
            ));
        }
        if scale > 0 {
            return Err(AmountError::Invalid(
                s.into(),
                format!("'{denom}' amounts must be whole numbers (use kiln for decimals)"),
            ));
        }
        Coin {
            denom: denom.into(),
            amount: n,
        }
    };
    if coin.amount == 0 {
        return Err(AmountError::Invalid(
            s.into(),
            "amount must be positive".into(),
        ));
    }
    Ok(coin)
}

/// Parses a comma-separated list of coins. Duplicate denoms are rejected; the
/// result is sorted by denom (like Cosmos `Coins`).
pub fn parse_coins(s: &str) -> Result<Vec<Coin>, AmountError> {
    let mut out: Vec<Coin> = vec![];
    for part in s.split(',') {
        let c = parse_coin(part)?;
        if out.iter().any(|o| o.denom == c.denom) {
            return Err(AmountError::Invalid(
                s.into(),
                format!("denom '{}' appears twice", c.denom),
            ));
        }
        out.push(c);
    }
    out.sort_by(|a, b| a.denom.cmp(&b.denom));
    Ok(out)
}

/// Parses a gas price like `0.025ukiln` (or `0.000000025kiln`, converted to ukiln).
pub fn parse_gas_price(s: &str) -> Result<DecCoin, AmountError> {
    let (num, denom) = split_number(s)?;
    let (n, scale) = parse_decimal(s, num)?;
    if denom.eq_ignore_ascii_case(DISPLAY_DENOM) {
        // price in kiln = n / 10^scale kiln = n / 10^(scale-6) ukiln
        if scale >= DECIMALS {
            return Ok(DecCoin {
                denom: BASE_DENOM.into(),
                numerator: n,
                scale: scale - DECIMALS,
            });
        }
        let numerator = n
            .checked_mul(10u128.pow(DECIMALS - scale))
            .ok_or_else(|| AmountError::Overflow(s.into()))?;
        return Ok(DecCoin {
            denom: BASE_DENOM.into(),
            numerator,
            scale: 0,
        });
    }
    if !validate_denom(denom) {
        return Err(AmountError::Invalid(
            s.into(),
            format!("'{denom}' is not a valid denom"),
        ));
    }
    Ok(DecCoin {
        denom: denom.into(),
        numerator: n,
        scale,
    })
}

/// Human form of a coin: `1.5 KILN (1500000ukiln)` for ukiln, else `5uatom`.
pub fn display_coin(c: &Coin) -> String {
    if c.denom == BASE_DENOM {
        format!("{} KILN ({}ukiln)", format_kiln(c.amount), c.amount)
    } else {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(d: &str, a: u128) -> Coin {
        Coin {
            denom: d.into(),
            amount: a,
        }
    }

    #[test]
    fn coins() {
        assert_eq!(parse_coin("1000ukiln").unwrap(), c("ukiln", 1000));
        assert_eq!(parse_coin("1.5kiln").unwrap(), c("ukiln", 1_500_000));
        assert_eq!(parse_coin("1.5KILN").unwrap(), c("ukiln", 1_500_000));
        assert_eq!(parse_coin("2kiln").unwrap(), c("ukiln", 2_000_000));
        assert_eq!(parse_coin("0.000001kiln").unwrap(), c("ukiln", 1));
        assert_eq!(parse_coin(" 7 ukiln ").unwrap(), c("ukiln", 7));
        assert_eq!(parse_coin("5uatom").unwrap(), c("uatom", 5));
        assert_eq!(parse_coin("3ibc/27394FB0").unwrap(), c("ibc/27394FB0", 3));
        for bad in [
            "",
            "ukiln",
            "1000",
            "1.0000001kiln",
            "1.5ukiln",
            "0ukiln",
            "0kiln",
            "1..5kiln",
            "1.kiln",
            ".5kiln",
            "-1ukiln",
            "1u",
            "1ukiln!",
            "1 2ukiln",
        ] {
            assert!(parse_coin(bad).is_err(), "{bad} should fail");
        }
        // overflow
        let big = format!("{}ukiln", u128::MAX);
        assert_eq!(parse_coin(&big).unwrap().amount, u128::MAX);
        assert!(matches!(
            parse_coin(&format!("{}0ukiln", u128::MAX)),
            Err(AmountError::Overflow(_))
        ));
        assert!(matches!(
            parse_coin(&format!("{}kiln", u128::MAX / 10)),
            Err(AmountError::Overflow(_))
        ));
    }

    #[test]
    fn coin_lists() {
        assert_eq!(
            parse_coins("5uatom,1kiln").unwrap(),
            vec![c("uatom", 5), c("ukiln", 1_000_000)]
        );
        assert!(parse_coins("1ukiln,1kiln").is_err());
        assert!(parse_coins("1ukiln,").is_err());
    }

    #[test]
    fn gas_prices() {
        let p = parse_gas_price("0.025ukiln").unwrap();
        assert_eq!(
            p,
            DecCoin {
                denom: "ukiln".into(),
                numerator: 25,
                scale: 3
            }
        );
        assert_eq!(p.fee_for_gas(200_000).unwrap(), c("ukiln", 5000));
        assert_eq!(p.fee_for_gas(1).unwrap(), c("ukiln", 1)); // ceil
        assert_eq!(p.fee_for_gas(0).unwrap(), c("ukiln", 0));
        assert_eq!(p.fee_for_gas(41).unwrap(), c("ukiln", 2)); // 1.025 → 2
        assert_eq!(p.to_string(), "0.025ukiln");
        let k = parse_gas_price("0.000000025kiln").unwrap();
        assert_eq!(k.fee_for_gas(200_000).unwrap(), c("ukiln", 5000));
        assert_eq!(
            parse_gas_price("1kiln").unwrap().fee_for_gas(2).unwrap(),
            c("ukiln", 2_000_000)
        );
        assert_eq!(
            parse_gas_price("0ukiln").unwrap().fee_for_gas(10).unwrap(),
            c("ukiln", 0)
        );
        assert!(parse_gas_price("abc").is_err());
        let huge = DecCoin {
            denom: "ukiln".into(),
            numerator: u128::MAX,
            scale: 0,
        };
        assert!(huge.fee_for_gas(2).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_kiln(1_500_000), "1.5");
        assert_eq!(format_kiln(1), "0.000001");
        assert_eq!(format_kiln(3_000_000), "3");
        assert_eq!(
            display_coin(&c("ukiln", 1_500_000)),
            "1.5 KILN (1500000ukiln)"
        );
    }
}
