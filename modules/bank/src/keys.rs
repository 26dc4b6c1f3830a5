//! Every storage key of the auth and bank modules, built in one place.
//!
//! | key | value |
//! |---|---|
//! | `auth/params` | [`crate::AuthParams`] (versioned, see [`crate::values`]) |
//! | `auth/next_account_number` | u64 BE |
//! | `auth/acc/{addr 20 bytes}` | protobuf `cosmos.auth.v1beta1.BaseAccount` |
//! | `bank/bal/{addr 20 bytes}{denom}` | u128 BE (absent = 0; zero balances are deleted) |
//! | `bank/supply/{denom}` | u128 BE |
//! | `bank/minted/{denom}` | u128 BE: everything minted after genesis (epoch emission) |
//! | `bank/burned/{denom}` | u128 BE: everything ever burned (SPEC §11: supply = genesis + minted − burned) |

use kiln_framework::Address;

/// The two prefixes this crate owns: the Cosmos `auth` and `bank` modules it implements.
pub const AUTH_PREFIX: &[u8] = b"auth/";
pub const BANK_PREFIX: &[u8] = b"bank/";

pub const AUTH_PARAMS: &[u8] = b"auth/params";
pub const NEXT_ACCOUNT_NUMBER: &[u8] = b"auth/next_account_number";
pub const ACCOUNT_PREFIX: &[u8] = b"auth/acc/";
pub const BALANCE_PREFIX: &[u8] = b"bank/bal/";
pub const SUPPLY_PREFIX: &[u8] = b"bank/supply/";
pub const BURNED_PREFIX: &[u8] = b"bank/burned/";
pub const MINTED_PREFIX: &[u8] = b"bank/minted/";

pub fn minted(denom: &str) -> Vec<u8> {
    [MINTED_PREFIX, denom.as_bytes()].concat()
}

pub fn account(addr: &Address) -> Vec<u8> {
    [ACCOUNT_PREFIX, addr.as_bytes()].concat()
}

pub fn balances_of(addr: &Address) -> Vec<u8> {
    [BALANCE_PREFIX, addr.as_bytes()].concat()
}

pub fn balance(addr: &Address, denom: &str) -> Vec<u8> {
    [BALANCE_PREFIX, addr.as_bytes(), denom.as_bytes()].concat()
}

pub fn supply(denom: &str) -> Vec<u8> {
    [SUPPLY_PREFIX, denom.as_bytes()].concat()
}

pub fn burned(denom: &str) -> Vec<u8> {
    [BURNED_PREFIX, denom.as_bytes()].concat()
}
