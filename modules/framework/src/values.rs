//! Versioned encoding of stored values: the one way modules write structured
//! values into state.
//!
//! A stored value is `[version byte] ‖ borsh(value)`. Borsh is canonical
//! (one encoding per value, trailing bytes refused), so equal values always
//! hash alike in the state tree. Each module lists the types it stores, with
//! their version, in its `values.rs` through [`stored_value!`]; changing a
//! stored layout means bumping that version and teaching the module to read
//! the older one — a deliberate, visible state-breaking change that the
//! pinned app-hash test catches.
//!
//! Fixed-width integers (`u64`/`u128` big-endian, see
//! [`crate::StateReadExt::get_u64`]) and Cosmos SDK protobuf messages keep
//! their own well-defined encodings and do not go through this envelope.

use crate::error::{TxError, TxResult};

/// A structured value stored under one key.
pub trait StoredValue: Sized + borsh::BorshSerialize + borsh::BorshDeserialize {
    /// What the value is, for error messages ("host record").
    const KIND: &'static str;
    /// The layout version written as the first byte.
    const VERSION: u8;

    fn encode_value(&self) -> TxResult<Vec<u8>> {
        let mut out = vec![Self::VERSION];
        borsh::to_writer(&mut out, self)
            .map_err(|e| TxError::internal(format!("encoding {}: {e}", Self::KIND)))?;
        Ok(out)
    }

    fn decode_value(bytes: &[u8]) -> TxResult<Self> {
        match bytes.split_first() {
            Some((version, body)) if *version == Self::VERSION => {
                borsh::from_slice(body).map_err(|e| {
                    TxError::internal(format!("corrupt stored {} (v{version}): {e}", Self::KIND))
                })
            }
            Some((version, _)) => Err(TxError::internal(format!(
                "stored {} has layout version {version}; this binary reads version {}",
                Self::KIND,
                Self::VERSION
            ))),
            None => Err(TxError::internal(format!("stored {} is empty", Self::KIND))),
        }
    }
}

/// Declares the stored layout version of a type: `stored_value!(Host, "host record", 1);`
#[macro_export]
macro_rules! stored_value {
    ($ty:ty, $kind:literal, $version:literal) => {
        impl $crate::values::StoredValue for $ty {
            const KIND: &'static str = $kind;
            const VERSION: u8 = $version;
        }
    };
}

impl StoredValue for Vec<u8> {
    const KIND: &'static str = "bytes";
    const VERSION: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, borsh::BorshSerialize, borsh::BorshDeserialize)]
    struct Sample {
        a: u64,
        b: String,
    }
    stored_value!(Sample, "sample", 3);

    #[test]
    fn round_trip_and_refusals() {
        let v = Sample {
            a: 7,
            b: "x".into(),
        };
        let bytes = v.encode_value().unwrap();
        assert_eq!(bytes[0], 3);
        assert_eq!(Sample::decode_value(&bytes).unwrap(), v);
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert!(Sample::decode_value(&other_version)
            .unwrap_err()
            .log
            .contains("layout version 2"));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Sample::decode_value(&trailing).is_err());
        assert!(Sample::decode_value(&[]).is_err());
    }
}
