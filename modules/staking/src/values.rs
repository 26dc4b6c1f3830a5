//! Every structured value this module stores, with its layout version (see
//! `kiln_framework::values`). Weights are u64 big-endian.

use kiln_framework::stored_value;

use crate::params::StakingParams;
use crate::state::{ConsensusValidator, ValidatorHistory};

stored_value!(StakingParams, "staking params", 1);
stored_value!(ConsensusValidator, "consensus validator", 1);
stored_value!(ValidatorHistory, "validator set history", 1);
stored_value!(
    crate::misbehavior::MisbehaviorRecord,
    "misbehavior record",
    1
);
kiln_framework::governed_params!(
    StakingParams,
    "staking",
    crate::keys::PARAMS,
    b"staking/pending_params",
    |p| p.validate()
);
