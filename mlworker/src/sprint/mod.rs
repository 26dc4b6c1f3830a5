//! The sprint engine (SPEC §4): the seeded transformer on libtorch, nonce
//! sweeps, shares and their commitment, openings and validation.

pub mod bench;
pub mod engine;
pub mod leaves;
pub mod model;
pub mod shares;

pub use crate::device::{ComputeDevice, DeviceChoice, Precision};
pub use engine::SprintEngine;
pub use model::SprintModel;
