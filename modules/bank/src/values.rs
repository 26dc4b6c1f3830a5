//! Every structured value this module stores, with its layout version (see
//! `kiln_framework::values`). Balances and supply are u128 big-endian;
//! accounts are Cosmos SDK `BaseAccount` protobuf (what wallets read).

use kiln_framework::stored_value;

stored_value!(crate::params::AuthParams, "auth params", 1);
kiln_framework::governed_params!(
    crate::params::AuthParams,
    "auth",
    crate::keys::AUTH_PARAMS,
    b"auth/pending_params",
    |p| p.validate()
);
