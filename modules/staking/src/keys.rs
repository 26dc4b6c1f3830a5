//! Storage keys of the staking module. Every key starts with [`PREFIX`].
//!
//! | key | value |
//! |---|---|
//! | `staking/params` | [`crate::values`] [`crate::StakingParams`] |
//! | `staking/weight/{addr 20}` | u64 BE: effective weight in force (last settle, or genesis) |
//! | `staking/power_schedule` | [`crate::values`] [`crate::state::PowerSchedule`]: the last settle's change and when CometBFT applies it |

use kiln_framework::Address;

/// The one prefix this module owns.
pub const PREFIX: &[u8] = b"staking/";
pub const PARAMS: &[u8] = b"staking/params";
pub const WEIGHT_PREFIX: &[u8] = b"staking/weight/";
pub const POWER_SCHEDULE: &[u8] = b"staking/power_schedule";

pub fn weight(addr: &Address) -> Vec<u8> {
    [WEIGHT_PREFIX, addr.as_bytes()].concat()
}
