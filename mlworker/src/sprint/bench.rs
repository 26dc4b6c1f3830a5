//! Throughput measurements: sprint nonces/s, effective FLOP/s, the same
//! torch's dense matmul FLOP/s, and the Python reference baseline.

use super::engine::SprintEngine;
use super::model::flops_per_nonce;
use crate::device::ComputeDevice;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_sprint_protocol::leaf::{claims_share, quantize_distance};
use serde::Serialize;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tch::Tensor;

fn sync(dev: &ComputeDevice) {
    if let tch::Device::Cuda(i) = dev.device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Dense `n×n · n×n` matmul FLOP/s in the device's compute dtype, timed for
/// about `seconds` after a warm-up. With `workers > 1` (the CPU engine's
/// data-parallel mode) that many threads each multiply their own matrices
/// with torch's intra-op pool at its current size, and the FLOP/s are summed:
/// the same way the sprint uses the machine.
pub fn dense_matmul_flops(dev: &ComputeDevice, n: i64, seconds: f64, workers: usize) -> f64 {
    if workers <= 1 {
        return dense_matmul_one(dev, n, seconds);
    }
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|_| s.spawn(|| dense_matmul_one(dev, n, seconds)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}

fn dense_matmul_one(dev: &ComputeDevice, n: i64, seconds: f64) -> f64 {
    let _g = tch::no_grad_guard();
    let opts = (tch::Kind::Float, dev.device);
    let a = Tensor::rand([n, n], opts).to_kind(dev.kind);
    let b = Tensor::rand([n, n], opts).to_kind(dev.kind);
    for _ in 0..2 {
        let _ = a.matmul(&b);
    }
    sync(dev);
    let t0 = Instant::now();
    let mut iters = 0u64;
    while t0.elapsed().as_secs_f64() < seconds || iters < 3 {
        let _c = a.matmul(&b);
        iters += 1;
        if dev.is_cuda() && !iters.is_multiple_of(8) {
            continue;
        }
        sync(dev);
    }
    sync(dev);
    2.0 * (n as f64).powi(3) * iters as f64 / t0.elapsed().as_secs_f64()
}

/// Result of a sprint throughput run.
#[derive(Clone, Debug, Serialize)]
pub struct SprintBench {
    pub nonces: u64,
    pub seconds: f64,
    pub nonces_per_s: f64,
    pub shares: u64,
    pub shares_per_s: f64,
    pub flops_per_nonce: f64,
    pub effective_flops: f64,
}

/// Run the sweep for `seconds` (after one warm-up batch) with a progress bar.
pub fn sprint_throughput(
    engine: &SprintEngine,
    seconds: f64,
    r_target_micro: u64,
    show: bool,
) -> SprintBench {
    // Warm-up (allocator, kernels, thread pools).
    let _ = engine.distances(&(0..engine.batch as u64).collect::<Vec<_>>());
    let pb = if show {
        ProgressBar::new((seconds * 10.0) as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} sprint [{bar:30}] {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let mut shares = 0u64;
    let limit = Duration::from_secs_f64(seconds);
    let n = engine.sweep(
        1_000_000,
        |done| {
            let el = t0.elapsed();
            pb.set_position((el.as_secs_f64() * 10.0) as u64);
            pb.set_message(format!(
                "{done} nonces, {:.1}/s",
                done as f64 / el.as_secs_f64().max(1e-9)
            ));
            el < limit
        },
        |_, ds| {
            shares += ds
                .iter()
                .filter(|&&d| claims_share(quantize_distance(d), r_target_micro))
                .count() as u64
        },
    );
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let fpn = flops_per_nonce(engine.cfg());
    SprintBench {
        nonces: n,
        seconds: secs,
        nonces_per_s: n as f64 / secs,
        shares,
        shares_per_s: shares as f64 / secs,
        flops_per_nonce: fpn,
        effective_flops: fpn * n as f64 / secs,
    }
}

/// Workspace root: `KILN_REPO`, else the source tree this binary was built from.
pub fn repo_root() -> PathBuf {
    std::env::var_os("KILN_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")))
}

/// Python interpreter: `KILN_PYTHON`, else `<workspace>/.venv/bin/python`.
pub fn python() -> PathBuf {
    std::env::var_os("KILN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// Run `scripts/sprint_reference.py` with `args` and parse its JSON stdout.
pub fn run_reference(args: &[String]) -> Result<serde_json::Value> {
    let script = repo_root().join("scripts/sprint_reference.py");
    let py = python();
    let out = Command::new(&py)
        .arg(&script)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", py.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "python reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("python reference printed no JSON")
}
