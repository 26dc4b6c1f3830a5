//! kiln-mlworker: the worker's engines over libtorch and the chain-following
//! worker. `sprint` holds the sprint engine (SPEC §4); `device` the device
//! abstraction every engine shares; `executor` the one thread that owns the
//! device and runs the engines' work items by priority; `worker` follows the
//! chain and does the host's duties each epoch (sprint: commit, open,
//! validate, vote) through its ML operational key; `serve` the LLM engine
//! (continuous batching over `kiln-llm` on the same executor) behind an
//! OpenAI-compatible HTTP API (`kiln-mlworker serve`); `market` sells that
//! API on chain under `kiln-mlworker run --serve-model` (signed requests,
//! the executor draw, transfer agent and executor, start/finish messages);
//! `validator` replays other hosts' served inferences and posts validation
//! scores and dispute votes; `doctor` checks a worker's set-up and names
//! the fix for each problem.

pub mod cli;
pub mod device;
pub mod doctor;
pub mod executor;
pub mod market;
pub mod pending;
pub mod progress;
pub mod serve;
pub mod sprint;
pub mod validator;
pub mod worker;
