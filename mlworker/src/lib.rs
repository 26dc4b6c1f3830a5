//! kiln-mlworker: the worker's engines over libtorch and the chain-following
//! worker. `sprint` holds the sprint engine (SPEC §4); `worker` follows the
//! chain and does the host's sprint duties each epoch (commit, open,
//! validate, vote) through its ML operational key. The inference engine and
//! its HTTP API are added next to them.

pub mod cli;
pub mod sprint;
pub mod worker;
