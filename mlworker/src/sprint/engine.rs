//! The sprint engine: nonce inputs generated on the CPU in parallel (rayon) in
//! a producer thread while the device runs the previous batch, batched forward
//! passes, distances computed on the device, results read back in bulk.

use super::model::SprintModel;
use crate::device::ComputeDevice;
use anyhow::Result;
use kiln_sprint_protocol::model::{fill_input, permutation, ModelConfig};
use kiln_sprint_protocol::seed::nonce_key;
use kiln_sprint_protocol::{Address, Hash32};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use tch::{Kind, Tensor};

/// Host-side inputs of one batch.
pub struct BatchInputs {
    pub nonces: Vec<u64>,
    /// `[B, seq, dim]` row-major.
    pub x: Vec<f32>,
    /// `[B, out_dim]` gather indices of the permutation.
    pub perm: Vec<i64>,
}

/// Generate the inputs and permutations of `nonces` (parallel over nonces).
pub fn prepare_batch(
    seed: &Hash32,
    addr: &Address,
    cfg: &ModelConfig,
    nonces: Vec<u64>,
) -> BatchInputs {
    prepare_batch_with(seed, addr, cfg, nonces, true)
}

/// [`prepare_batch`], on the rayon pool when `parallel`, else on the calling
/// thread (the CPU engine's producer thread: torch already uses every core,
/// so extra spinning workers only steal time from it).
pub fn prepare_batch_with(
    seed: &Hash32,
    addr: &Address,
    cfg: &ModelConfig,
    nonces: Vec<u64>,
    parallel: bool,
) -> BatchInputs {
    let xs = cfg.seq_len * cfg.dim;
    let od = cfg.out_dim;
    let mut x = vec![0f32; nonces.len() * xs];
    let mut perm = vec![0i64; nonces.len() * od];
    let one = |((xc, pc), &n): ((&mut [f32], &mut [i64]), &u64)| {
        fill_input(seed, addr, n, cfg, xc);
        let p = permutation(&nonce_key(seed, addr, n), od);
        for (dst, src) in pc.iter_mut().zip(p) {
            *dst = src as i64;
        }
    };
    if parallel {
        x.par_chunks_mut(xs)
            .zip(perm.par_chunks_mut(od))
            .zip(nonces.par_iter())
            .for_each(one);
    } else {
        x.chunks_mut(xs)
            .zip(perm.chunks_mut(od))
            .zip(nonces.iter())
            .for_each(one);
    }
    BatchInputs { nonces, x, perm }
}

/// The sprint engine for one (seed, address, model).
pub struct SprintEngine {
    pub model: SprintModel,
    pub seed: Hash32,
    pub addr: Address,
    pub batch: usize,
    /// Runs [`SprintModel::forward_last_reference`] (set by
    /// [`SprintEngine::with_options`]).
    reference_forward: bool,
    /// CPU data parallelism: this many threads each run whole batches with
    /// torch's intra-op pool at one thread (1 = one stream of batches using
    /// torch's intra-op threads; always 1 on CUDA).
    workers: usize,
}

/// Lets worker threads share the engine. libtorch tensors are safe to read
/// concurrently (ops on shared weights only create new tensors; reference
/// counts are atomic); the engine is never mutated while workers run.
struct Shared<'a>(&'a SprintEngine);
// SAFETY: see above — workers only call `launch`, which reads the weights.
unsafe impl Sync for Shared<'_> {}
// SAFETY: as for Sync; the reference outlives the scoped threads.
unsafe impl Send for Shared<'_> {}

impl SprintEngine {
    /// Build the model and pick a batch size (`batch` overrides).
    pub fn new(
        seed: Hash32,
        addr: Address,
        cfg: ModelConfig,
        dev: ComputeDevice,
        batch: Option<usize>,
    ) -> Result<Self> {
        Self::with_options(seed, addr, cfg, dev, batch, false)
    }

    /// [`SprintEngine::new`]; with `reference` the model keeps SPEC's head
    /// layout and runs [`SprintModel::forward_last_reference`] (slow; for
    /// cross-checks and A/B benchmarks).
    pub fn with_options(
        seed: Hash32,
        addr: Address,
        cfg: ModelConfig,
        dev: ComputeDevice,
        batch: Option<usize>,
        reference: bool,
    ) -> Result<Self> {
        if !dev.is_cuda() {
            crate::device::tune_allocator();
        }
        let model =
            SprintModel::new_with(&seed, cfg, dev, !reference && dev.kind == tch::Kind::Float)?;
        // CPU: one batch stream per core, each single-threaded inside torch.
        // For these matrix sizes this beats splitting every op across cores
        // (no barrier per op, and a busy core stalls only its own stream).
        let workers = if dev.is_cuda() {
            1
        } else {
            tch::get_num_threads().max(1) as usize
        };
        if workers > 1 {
            tch::set_num_threads(1);
        }
        let mut e = SprintEngine {
            model,
            seed,
            addr,
            batch: 1,
            reference_forward: reference,
            workers,
        };
        e.batch = match batch {
            Some(b) => b.max(1),
            None => e.auto_batch(),
        };
        Ok(e)
    }

    pub fn cfg(&self) -> &ModelConfig {
        &self.model.cfg
    }

    /// Number of CPU batch streams (see [`SprintEngine::use_intra_op_threads`]).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Run one batch stream with torch's intra-op pool at `threads` instead of
    /// one stream per core.
    pub fn use_intra_op_threads(&mut self, threads: usize) {
        self.workers = 1;
        tch::set_num_threads(threads.max(1) as i32);
    }

    /// Distances of one batch, on the host.
    fn batch_distances(&self, nonces: Vec<u64>, parallel_prep: bool) -> (Vec<u64>, Vec<f64>) {
        let inp = prepare_batch_with(&self.seed, &self.addr, self.cfg(), nonces, parallel_prep);
        let d = self.launch(&inp);
        let d = Vec::<f64>::try_from(d.to_device(tch::Device::Cpu)).unwrap_or_default();
        (inp.nonces, d)
    }

    /// Run batches `0..` (batch `i` = `make(i)`, `None` = no more) on the CPU
    /// workers; `on_result(i, nonces, distances)` is called on this thread in
    /// increasing `i`; `keep_going(done)` is asked after each emitted batch.
    /// Every batch a worker started is finished and emitted, so the emitted
    /// batches are always `0..n`.
    fn run_workers(
        &self,
        make: impl Fn(u64) -> Option<Vec<u64>> + Sync,
        mut keep_going: impl FnMut(u64) -> bool,
        mut on_result: impl FnMut(u64, &[u64], &[f64]),
    ) -> u64 {
        let next = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let shared = Shared(self);
        let mut done = 0u64;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel::<(u64, Vec<u64>, Vec<f64>)>();
            for _ in 0..self.workers {
                let tx = tx.clone();
                let (shared, next, stop, make) = (&shared, &next, &stop, &make);
                s.spawn(move || {
                    // Each stream runs torch single-threaded. Set on this
                    // thread rather than inherited from the process-wide
                    // default, which another engine executor may change.
                    tch::set_num_threads(1);
                    let _g = tch::no_grad_guard();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(nonces) = make(i) else { break };
                        let (n, d) = shared.0.batch_distances(nonces, false);
                        if tx.send((i, n, d)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut pending = std::collections::BTreeMap::new();
            let mut emit = 0u64;
            while let Ok((i, n, d)) = rx.recv() {
                pending.insert(i, (n, d));
                while let Some((n, d)) = pending.remove(&emit) {
                    on_result(emit, &n, &d);
                    done += n.len() as u64;
                    emit += 1;
                    if !stop.load(Ordering::Relaxed) && !keep_going(done) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        done
    }

    /// CPU: as many nonces as keep the largest activation (`[B·seq,
    /// max(3·dim, 2·ffn)]`) under the heap limit of [`tune_allocator`] (with
    /// 10% margin), rounded down to a multiple of 8 — 152 on devnet.
    /// CUDA: start at 64k rows and halve until a probe forward fits in device
    /// memory.
    ///
    /// [`tune_allocator`]: crate::device::tune_allocator
    fn auto_batch(&self) -> usize {
        let c = self.cfg();
        let seq = c.seq_len.max(1);
        if !self.model.dev.is_cuda() {
            let row_bytes = (3 * c.dim).max(2 * c.ffn_dim).max(c.out_dim) * 4;
            let rows = crate::device::HEAP_ALLOC_LIMIT * 9 / 10 / row_bytes.max(1);
            let b = rows / seq;
            return if b >= 8 { b / 8 * 8 } else { b.max(1) };
        }
        let mut b = (65_536 / seq).clamp(1, 8192);
        while b > 1 {
            let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let inp =
                    prepare_batch(&self.seed, &self.addr, self.cfg(), (0..b as u64).collect());
                let d = self.launch(&inp);
                let _ = d.to_device(tch::Device::Cpu);
            }));
            if probe.is_ok() {
                // Leave headroom for the pipelined next batch.
                return (b / 2).max(1);
            }
            b /= 2;
        }
        1
    }

    fn upload_f32(&self, v: &[f32], shape: &[i64]) -> Tensor {
        let t = Tensor::from_slice(v).reshape(shape);
        let dev = self.model.dev;
        if dev.is_cuda() {
            t.pin_memory(dev.device)
                .to_device_(dev.device, dev.kind, true, false)
        } else {
            t.to_kind(dev.kind)
        }
    }

    fn upload_i64(&self, v: &[i64], shape: &[i64]) -> Tensor {
        let t = Tensor::from_slice(v).reshape(shape);
        let dev = self.model.dev;
        if dev.is_cuda() {
            t.pin_memory(dev.device)
                .to_device_(dev.device, Kind::Int64, true, false)
        } else {
            t
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        if self.reference_forward {
            self.model.forward_last_reference(x)
        } else {
            self.model.forward_last(x)
        }
    }

    /// Enqueue one batch; returns its `[B]` f64 distances on the device.
    pub fn launch(&self, inp: &BatchInputs) -> Tensor {
        let _g = tch::no_grad_guard();
        let c = self.cfg();
        let b = inp.nonces.len() as i64;
        let x = self.upload_f32(&inp.x, &[b, c.seq_len as i64, c.dim as i64]);
        let perm = self.upload_i64(&inp.perm, &[b, c.out_dim as i64]);
        let y = self.forward(&x);
        self.model.distances_from_outputs(&y, &perm)
    }

    /// Outputs at the last position (before permutation), `[B, out]` f32 on the
    /// host, for diagnostics and cross-checks.
    pub fn raw_outputs(&self, nonces: &[u64]) -> Vec<f32> {
        let _g = tch::no_grad_guard();
        let inp = prepare_batch(&self.seed, &self.addr, self.cfg(), nonces.to_vec());
        let c = self.cfg();
        let x = self.upload_f32(
            &inp.x,
            &[nonces.len() as i64, c.seq_len as i64, c.dim as i64],
        );
        let y = self
            .forward(&x)
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu);
        Vec::<f32>::try_from(y.flatten(0, -1)).unwrap_or_default()
    }

    /// Distances of arbitrary nonces (in order), batched.
    pub fn distances(&self, nonces: &[u64]) -> Vec<f64> {
        if self.workers > 1 {
            let chunks: Vec<&[u64]> = nonces.chunks(self.batch).collect();
            let mut out = Vec::with_capacity(nonces.len());
            self.run_workers(
                |i| chunks.get(i as usize).map(|c| c.to_vec()),
                |_| true,
                |_, _, d| out.extend_from_slice(d),
            );
            return out;
        }
        let mut out = Vec::with_capacity(nonces.len());
        for chunk in nonces.chunks(self.batch) {
            let inp = prepare_batch(&self.seed, &self.addr, self.cfg(), chunk.to_vec());
            let d = self.launch(&inp);
            out.extend(Vec::<f64>::try_from(d.to_device(tch::Device::Cpu)).unwrap_or_default());
        }
        out
    }

    /// Sweep consecutive nonces from `start`, batch after batch, until
    /// `keep_going(done)` returns false. Inputs for the next batches are
    /// generated by a producer thread while the device computes; results are
    /// read back every batch on the CPU and every `flush_every` batches on
    /// CUDA (one host sync per flush). `on_batch(nonces, distances)` sees
    /// every computed nonce in increasing order. Returns the nonces computed.
    pub fn sweep(
        &self,
        start: u64,
        mut keep_going: impl FnMut(u64) -> bool,
        mut on_batch: impl FnMut(&[u64], &[f64]),
    ) -> u64 {
        if self.workers > 1 {
            let bsz = self.batch as u64;
            return self.run_workers(
                |i| {
                    let lo = start.checked_add(i.checked_mul(bsz)?)?;
                    let hi = lo.saturating_add(bsz);
                    (hi > lo).then(|| (lo..hi).collect())
                },
                keep_going,
                |_, n, d| on_batch(n, d),
            );
        }
        let flush_every = if self.model.dev.is_cuda() { 16 } else { 1 };
        let stop = AtomicBool::new(false);
        let (tx, rx) = sync_channel::<BatchInputs>(2);
        let bsz = self.batch as u64;
        let (seed, addr, cfg) = (self.seed, self.addr, *self.cfg());
        let parallel = self.model.dev.is_cuda();
        let mut done = 0u64;
        std::thread::scope(|s| {
            let stop_ref = &stop;
            s.spawn(move || {
                let mut next = start;
                while !stop_ref.load(Ordering::Relaxed) {
                    let nonces: Vec<u64> = (next..next.saturating_add(bsz)).collect();
                    if nonces.is_empty() {
                        break;
                    }
                    next = next.saturating_add(bsz);
                    if tx
                        .send(prepare_batch_with(&seed, &addr, &cfg, nonces, parallel))
                        .is_err()
                    {
                        break;
                    }
                }
            });
            let mut pending: Vec<(Vec<u64>, Tensor)> = Vec::new();
            let mut flush = |pending: &mut Vec<(Vec<u64>, Tensor)>, done: &mut u64| {
                if pending.is_empty() {
                    return;
                }
                let ds: Vec<&Tensor> = pending.iter().map(|(_, d)| d).collect();
                let all = Tensor::cat(&ds, 0).to_device(tch::Device::Cpu);
                let all = Vec::<f64>::try_from(all).unwrap_or_default();
                let mut off = 0;
                for (n, _) in pending.iter() {
                    on_batch(n, &all[off..off + n.len()]);
                    off += n.len();
                    *done += n.len() as u64;
                }
                pending.clear();
            };
            while keep_going(done) {
                let Ok(inp) = rx.recv() else { break };
                let d = self.launch(&inp);
                pending.push((inp.nonces, d));
                if pending.len() >= flush_every {
                    flush(&mut pending, &mut done);
                }
            }
            flush(&mut pending, &mut done);
            stop.store(true, Ordering::Relaxed);
            drop(rx);
        });
        done
    }
}
