//! Every structured value this module stores, with its layout version (see
//! `kiln_framework::values`). Vote commitments (32 bytes) and reveals (one
//! byte) are stored raw.

use kiln_framework::stored_value;

use crate::params::SprintParams;
use crate::state::{AssignedCommittee, AssignedDuties, Commitment, EpochResult, OpenedLeaves};

stored_value!(SprintParams, "sprint params", 2); // v2: share_slack_micro
stored_value!(Commitment, "sprint commitment", 1);
stored_value!(OpenedLeaves, "opened leaves", 1);
stored_value!(EpochResult, "sprint epoch result", 2); // v2: per-node split
stored_value!(AssignedCommittee, "assigned committee", 1);
stored_value!(AssignedDuties, "assigned duties", 1);
kiln_framework::governed_params!(
    SprintParams,
    "sprint",
    crate::keys::PARAMS,
    b"sprint/pending_params",
    |p| p.validate()
);
