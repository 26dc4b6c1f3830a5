//! Model dimensions, presets and the portable, bit-exact generation of
//! weights, nonce inputs, the target and the output permutation (SPEC §4).
//! This is worker-side float code: every value is produced by the exact
//! f64 → f32 rule of [`crate::stream::word_to_value`], so all hosts agree bit
//! for bit regardless of thread count or CPU.

use crate::seed::{nonce_key, perm_key, target_key, tensor_key};
use crate::stream::{unit_amplitude, weight_amplitude, Stream};
use crate::{Address, Hash32};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Transformer dimensions (a per-epoch chain parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn_dim: usize,
    pub seq_len: usize,
    pub out_dim: usize,
}

/// Why a [`ModelConfig`] is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("all dimensions must be positive")]
    Zero,
    #[error("dim ({dim}) must be a multiple of heads ({heads})")]
    HeadSplit { dim: usize, heads: usize },
    #[error("head_dim ({0}) must be even for the rotate-half rotary layout")]
    OddHeadDim(usize),
    #[error("out_dim ({0}) must fit in u32")]
    OutTooLarge(usize),
}

impl ModelConfig {
    /// Devnet preset: runs on a laptop CPU.
    pub const DEVNET: ModelConfig = ModelConfig {
        dim: 256,
        layers: 4,
        heads: 4,
        ffn_dim: 768,
        seq_len: 32,
        out_dim: 256,
    };
    /// Mainnet-like preset: needs a large GPU.
    pub const MAINNET: ModelConfig = ModelConfig {
        dim: 1792,
        layers: 64,
        heads: 64,
        ffn_dim: 8192,
        seq_len: 256,
        out_dim: 8192,
    };

    /// Look a preset up by name (`devnet`, `mainnet`).
    pub fn preset(name: &str) -> Option<ModelConfig> {
        match name {
            "devnet" => Some(Self::DEVNET),
            "mainnet" => Some(Self::MAINNET),
            _ => None,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.heads.max(1)
    }

    /// Check the dimensions are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let all = [
            self.dim,
            self.layers,
            self.heads,
            self.ffn_dim,
            self.seq_len,
            self.out_dim,
        ];
        if all.contains(&0) {
            return Err(ConfigError::Zero);
        }
        if !self.dim.is_multiple_of(self.heads) {
            return Err(ConfigError::HeadSplit {
                dim: self.dim,
                heads: self.heads,
            });
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(ConfigError::OddHeadDim(self.head_dim()));
        }
        if self.out_dim > u32::MAX as usize {
            return Err(ConfigError::OutTooLarge(self.out_dim));
        }
        Ok(())
    }

    /// Every weight tensor in generation order (layer by layer, then `out`).
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let mut v = Vec::with_capacity(self.layers * 7 + 1);
        for i in 0..self.layers {
            for p in ["q", "k", "v", "o"] {
                v.push(TensorSpec::new(
                    format!("layers.{i}.attn.{p}"),
                    self.dim,
                    self.dim,
                ));
            }
            v.push(TensorSpec::new(
                format!("layers.{i}.ffn.gate"),
                self.dim,
                self.ffn_dim,
            ));
            v.push(TensorSpec::new(
                format!("layers.{i}.ffn.up"),
                self.dim,
                self.ffn_dim,
            ));
            v.push(TensorSpec::new(
                format!("layers.{i}.ffn.down"),
                self.ffn_dim,
                self.dim,
            ));
        }
        v.push(TensorSpec::new("out".to_string(), self.dim, self.out_dim));
        v
    }

    /// Number of weight parameters.
    pub fn param_count(&self) -> usize {
        self.tensors().iter().map(|t| t.len()).sum()
    }
}

/// Name and `[rows, cols]` shape of a weight tensor (`y = x · W`, `W: [in, out]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
}

impl TensorSpec {
    pub fn new(name: String, rows: usize, cols: usize) -> Self {
        TensorSpec { name, rows, cols }
    }
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Words generated per parallel task (a multiple of the 16-word block).
const CHUNK_WORDS: usize = 1 << 16;

/// Fill `out` with the stream of `key` at amplitude `a`, in parallel chunks
/// (each chunk seeks the keystream to its offset, so the result is identical
/// to a sequential fill for any thread count).
pub fn fill_parallel(key: &Hash32, a: f64, out: &mut [f32]) {
    out.par_chunks_mut(CHUNK_WORDS)
        .enumerate()
        .for_each(|(i, chunk)| {
            Stream::at_word(key, (i * CHUNK_WORDS) as u64).fill_values(a, chunk);
        });
}

/// One weight tensor, row-major, from `stream(SHA256(seed ‖ name))`.
pub fn generate_tensor(seed: &Hash32, spec: &TensorSpec) -> Vec<f32> {
    let mut buf = vec![0f32; spec.len()];
    fill_parallel(&tensor_key(seed, &spec.name), weight_amplitude(), &mut buf);
    buf
}

/// All weight tensors, in [`ModelConfig::tensors`] order, generated in
/// parallel across and within tensors.
pub fn generate_weights(seed: &Hash32, cfg: &ModelConfig) -> Vec<(TensorSpec, Vec<f32>)> {
    generate_tensors(seed, cfg.tensors())
}

/// The given tensors, generated in parallel across and within tensors (the
/// worker loads a model layer by layer with this to bound host memory).
pub fn generate_tensors(seed: &Hash32, specs: Vec<TensorSpec>) -> Vec<(TensorSpec, Vec<f32>)> {
    specs
        .into_par_iter()
        .map(|spec| {
            let w = generate_tensor(seed, &spec);
            (spec, w)
        })
        .collect()
}

/// The raw (not normalised) target: `out_dim` values at amplitude √3.
pub fn target(seed: &Hash32, out_dim: usize) -> Vec<f32> {
    let mut v = vec![0f32; out_dim];
    Stream::new(&target_key(seed)).fill_values(unit_amplitude(), &mut v);
    v
}

/// The nonce input `x` (`seq_len × dim`, row-major) into `out`.
pub fn fill_input(seed: &Hash32, addr: &Address, nonce: u64, cfg: &ModelConfig, out: &mut [f32]) {
    debug_assert_eq!(out.len(), cfg.seq_len * cfg.dim);
    Stream::new(&nonce_key(seed, addr, nonce)).fill_values(unit_amplitude(), out);
}

/// The nonce input `x` (`seq_len × dim`, row-major).
pub fn input(seed: &Hash32, addr: &Address, nonce: u64, cfg: &ModelConfig) -> Vec<f32> {
    let mut v = vec![0f32; cfg.seq_len * cfg.dim];
    fill_input(seed, addr, nonce, cfg, &mut v);
    v
}

/// The Fisher–Yates draws for `nkey`: for `i` from `out_dim−1` down to 1, an
/// integer below `i+1` (returned in draw order).
pub fn perm_draws(nkey: &Hash32, out_dim: usize) -> Vec<u32> {
    let mut s = Stream::new(&perm_key(nkey));
    (1..out_dim)
        .rev()
        .map(|i| s.next_below(i as u32 + 1))
        .collect()
}

/// The permutation as a gather index: `permuted[t] = y[p[t]]`.
pub fn permutation(nkey: &Hash32, out_dim: usize) -> Vec<u32> {
    let mut p: Vec<u32> = (0..out_dim as u32).collect();
    let mut s = Stream::new(&perm_key(nkey));
    for i in (1..out_dim).rev() {
        let j = s.next_below(i as u32 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// Apply the Fisher–Yates shuffle of `nkey` to `y` in place.
pub fn permute_in_place<T>(nkey: &Hash32, y: &mut [T]) {
    let mut s = Stream::new(&perm_key(nkey));
    for i in (1..y.len()).rev() {
        let j = s.next_below(i as u32 + 1) as usize;
        y.swap(i, j);
    }
}

/// Distance between the L2-normalised `permuted` output and the
/// L2-normalised target, in f64 (worker-side reference of the last step).
pub fn distance_f64(permuted: &[f64], target: &[f32]) -> f64 {
    let ny = permuted.iter().map(|v| v * v).sum::<f64>().sqrt();
    let nt = target
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt();
    permuted
        .iter()
        .zip(target)
        .map(|(&y, &t)| {
            let d = y / ny - t as f64 / nt;
            d * d
        })
        .sum::<f64>()
        .sqrt()
}
