//! Every structured value this module stores, with its layout version (see
//! `kiln_framework::values`). Grants are Cosmos SDK `Grant` protobuf (what
//! wallets read); fee-allowance counters are u64 big-endian.

use kiln_framework::stored_value;

stored_value!(crate::params::AuthzParams, "authz params", 1);
kiln_framework::governed_params!(
    crate::params::AuthzParams,
    "authz",
    crate::keys::PARAMS,
    b"authz/pending_params",
    |p| p.validate()
);
