//! Storage keys of the authz module.
//!
//! | key | value |
//! |---|---|
//! | `authz/grant/{granter 20}{grantee 20}{msg type url}` | protobuf `cosmos.authz.v1beta1.Grant` |
//! | `authz/by_grantee/{grantee 20}{granter 20}{msg type url}` | empty (index for grantee queries) |
//! | `authz/params` | [`crate::AuthzParams`] (versioned, see [`crate::values`]) |
//! | `authz/fee_allowance/{epoch u64 BE}/{host 20}` | [`crate::state::FeeAllowanceUse`]: fee-exempt ML-ops txs and gas the host's hot keys used in that epoch (previous epochs are pruned at each epoch start) |

use kiln_framework::Address;

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"authz/";

pub const GRANT_PREFIX: &[u8] = b"authz/grant/";
pub const BY_GRANTEE_PREFIX: &[u8] = b"authz/by_grantee/";
pub const PARAMS: &[u8] = b"authz/params";
pub const FEE_ALLOWANCE_PREFIX: &[u8] = b"authz/fee_allowance/";

pub fn fee_allowance(epoch: u64, host: &Address) -> Vec<u8> {
    [
        FEE_ALLOWANCE_PREFIX,
        &epoch.to_be_bytes(),
        b"/",
        host.as_bytes(),
    ]
    .concat()
}

pub fn grant(granter: &Address, grantee: &Address, type_url: &str) -> Vec<u8> {
    [
        GRANT_PREFIX,
        granter.as_bytes(),
        grantee.as_bytes(),
        type_url.as_bytes(),
    ]
    .concat()
}

pub fn grants_of_granter(granter: &Address) -> Vec<u8> {
    [GRANT_PREFIX, granter.as_bytes()].concat()
}

pub fn grants_between(granter: &Address, grantee: &Address) -> Vec<u8> {
    [GRANT_PREFIX, granter.as_bytes(), grantee.as_bytes()].concat()
}

pub fn by_grantee(grantee: &Address, granter: &Address, type_url: &str) -> Vec<u8> {
    [
        BY_GRANTEE_PREFIX,
        grantee.as_bytes(),
        granter.as_bytes(),
        type_url.as_bytes(),
    ]
    .concat()
}

pub fn grants_of_grantee(grantee: &Address) -> Vec<u8> {
    [BY_GRANTEE_PREFIX, grantee.as_bytes()].concat()
}
