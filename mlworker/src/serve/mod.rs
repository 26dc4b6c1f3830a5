//! Inference serving: the OpenAI-compatible API `kiln-mlworker serve` (and
//! `run`) answers. [`openai`] owns the wire format — request parsing and
//! checking, and errors in OpenAI's shape.

pub mod metrics;
pub mod openai;
pub mod responses;
pub mod sampling;
