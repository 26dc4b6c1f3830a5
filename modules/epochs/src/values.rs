//! Every structured value this module stores, with its layout version (see
//! `kiln_framework::values`). The first height is u64 big-endian; seed and
//! challenge block hashes are stored raw.

use kiln_framework::stored_value;

stored_value!(crate::params::EpochParams, "epoch params", 2); // v2: secret_reveal_blocks
kiln_framework::governed_params!(
    crate::params::EpochParams,
    "epochs",
    crate::keys::PARAMS,
    b"epochs/pending_params",
    |p| p.validate()
);
