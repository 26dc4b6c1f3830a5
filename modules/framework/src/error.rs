//! Transaction errors. Every failure a user can cause becomes a `TxError`: an
//! ABCI code, a codespace and a one-line reason. Codes in the `sdk` codespace
//! follow the Cosmos SDK's numbering so existing wallets show familiar errors.

use kiln_state::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codespace} error {code}: {log}")]
pub struct TxError {
    pub codespace: &'static str,
    pub code: u32,
    pub log: String,
}

pub type TxResult<T> = Result<T, TxError>;

/// The Cosmos SDK's root codespace.
pub const SDK: &str = "sdk";

/// `sdk` codes clients match on (the same numbers the constructors below use;
/// a unit test keeps them in step).
pub mod codes {
    pub const TX_DECODE: u32 = 2;
    pub const UNAUTHORIZED: u32 = 4;
    pub const INSUFFICIENT_FUNDS: u32 = 5;
    pub const UNKNOWN_REQUEST: u32 = 6;
    pub const INSUFFICIENT_FEE: u32 = 13;
    pub const KEY_NOT_FOUND: u32 = 22;
    pub const WRONG_SEQUENCE: u32 = 32;
}

macro_rules! sdk_errors {
    ($($name:ident = $code:expr, $prefix:expr;)*) => {
        impl TxError {
            $(
                pub fn $name(detail: impl Into<String>) -> Self {
                    let detail: String = detail.into();
                    let log = if detail.is_empty() { $prefix.to_string() } else { format!("{}: {}", $prefix, detail) };
                    TxError { codespace: SDK, code: $code, log }
                }
            )*
        }
    };
}

sdk_errors! {
    tx_decode = 2, "tx parse error";
    invalid_sequence = 3, "invalid sequence";
    unauthorized = 4, "unauthorized";
    insufficient_funds = 5, "insufficient funds";
    unknown_request = 6, "unknown request";
    invalid_address = 7, "invalid address";
    invalid_pubkey = 8, "invalid pubkey";
    unknown_address = 9, "unknown address";
    invalid_coins = 10, "invalid coins";
    out_of_gas = 11, "out of gas";
    memo_too_large = 12, "memo too large";
    insufficient_fee = 13, "insufficient fee";
    too_many_signatures = 14, "maximum number of signatures exceeded";
    no_signatures = 15, "no signatures supplied";
    invalid_request = 18, "invalid request";
    tx_in_mempool_cache = 19, "tx already in mempool";
    tx_too_large = 21, "tx too large";
    key_not_found = 22, "key not found";
    invalid_chain_id = 28, "invalid chain-id";
    invalid_type = 29, "invalid type";
    tx_timeout_height = 30, "tx timeout height";
    unknown_extension_options = 31, "unknown extension options";
    wrong_sequence = 32, "incorrect account sequence";
    invalid_gas_limit = 41, "invalid gas limit";
    internal = 1, "internal error";
}

impl TxError {
    /// An error in a module's own codespace.
    pub fn module(codespace: &'static str, code: u32, log: impl Into<String>) -> Self {
        TxError {
            codespace,
            code,
            log: log.into(),
        }
    }

    /// Signature verification failed (SDK code 4 with a precise reason).
    pub fn signature_failed(detail: impl Into<String>) -> Self {
        TxError::unauthorized(format!("signature verification failed; {}", detail.into()))
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::internal(e.to_string())
    }
}

#[cfg(test)]
mod code_tests {
    use super::*;

    #[test]
    fn named_codes_match_the_constructors() {
        assert_eq!(TxError::tx_decode("").code, codes::TX_DECODE);
        assert_eq!(TxError::unauthorized("").code, codes::UNAUTHORIZED);
        assert_eq!(
            TxError::insufficient_funds("").code,
            codes::INSUFFICIENT_FUNDS
        );
        assert_eq!(TxError::unknown_request("").code, codes::UNKNOWN_REQUEST);
        assert_eq!(TxError::insufficient_fee("").code, codes::INSUFFICIENT_FEE);
        assert_eq!(TxError::key_not_found("").code, codes::KEY_NOT_FOUND);
        assert_eq!(TxError::wrong_sequence("").code, codes::WRONG_SEQUENCE);
    }
}
