#![allow(dead_code)]
//! Shared helpers for the engine tests.

use kiln_mlworker::device::ComputeDevice;
use kiln_mlworker::sprint::engine::SprintEngine;
use kiln_sprint_protocol::model::ModelConfig;
use serde_json::Value;
use tch::{Device, Kind};

pub const TOL: f64 = 2e-3;

pub fn vectors() -> Value {
    let path = std::env::var("KILN_SPRINT_VECTORS").unwrap_or_else(|_| {
        format!(
            "{}/../modules/sprint-protocol/vectors/sprint-v1.json",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}")),
    )
    .unwrap()
}

pub fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

pub fn h20(s: &str) -> [u8; 20] {
    hex::decode(s).unwrap().try_into().unwrap()
}

pub fn seed_addr() -> ([u8; 32], [u8; 20]) {
    let v = vectors();
    (
        h32(v["seed_hex"].as_str().unwrap()),
        h20(v["addr_hex"].as_str().unwrap()),
    )
}

pub fn engine(kind: Kind, batch: Option<usize>) -> SprintEngine {
    let (seed, addr) = seed_addr();
    SprintEngine::new(
        seed,
        addr,
        ModelConfig::DEVNET,
        ComputeDevice {
            device: Device::Cpu,
            kind,
        },
        batch,
    )
    .unwrap()
}
