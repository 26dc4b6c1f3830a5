//! Helpers shared by the modules' JSON query handlers.

use crate::address::Address;
use crate::error::{TxError, TxResult};

/// Serializes a query answer.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> TxResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| TxError::internal(e.to_string()))
}

/// A query argument that is one bech32 address (surrounding spaces ignored).
pub fn address_arg(data: &[u8]) -> TxResult<Address> {
    let text =
        std::str::from_utf8(data).map_err(|_| TxError::invalid_request("address must be UTF-8"))?;
    Address::parse(text.trim()).map_err(|e| TxError::invalid_address(e.to_string()))
}
