//! kiln-mlworker: the worker's engines over libtorch. This crate currently
//! holds the sprint engine (SPEC §4); the inference engine, HTTP API and chain
//! client are added next to it.

pub mod address;
pub mod cli;
pub mod sprint;
