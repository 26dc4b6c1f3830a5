//! Every value this module stores, with its layout version (see
//! `kiln_framework::values`). The consensus-key index stores the owner's 20
//! address bytes raw.

use kiln_framework::stored_value;

use crate::state::Host;

stored_value!(Host, "host record", 1);
