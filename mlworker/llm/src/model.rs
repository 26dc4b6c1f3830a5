//! A Llama-family decoder (Llama/SmolLM, Qwen2) on libtorch, loaded from a GGUF.
//!
//! **Weights** are dequantized at load to `f32` (CPU) or `bf16` (CUDA), see
//! [`LoadOptions`]. Q/K/V and gate/up are fused into one matrix each so a
//! layer runs four matmuls.
//!
//! **Q/K row permutation.** llama.cpp's converter reorders the rows of
//! `attn_q`/`attn_k` of `llama`-arch models so that its RoPE can rotate
//! *adjacent* pairs `(x[2i], x[2i+1])`; Hugging Face's Llama rotates the two
//! *halves* `(x[i], x[i + d/2])` ("rotate_half"). The converter's
//! `permute(w, n_head)` is `w.reshape(n_head, 2, d/2, in).swapaxes(1, 2)`;
//! [`unpermute_qk`] applies the inverse (`reshape(n_head, d/2, 2, in).swapaxes(1, 2)`)
//! at load, so the standard rotate-half RoPE below is correct and the
//! weights equal the original checkpoint's. Qwen2 GGUFs are not permuted
//! (llama.cpp runs them with NEOX = rotate-half RoPE) and are loaded as is.
//!
//! **KV cache and batching.** Each request owns a [`Sequence`]: per layer a
//! K and a V buffer `[kv_heads, capacity, head_dim]` (grown by doubling) and
//! its length. [`LlamaModel::prefill`] appends any number of tokens (call it
//! repeatedly for chunked prefill); [`LlamaModel::decode_step`] advances
//! several sequences of different lengths by one token each in one forward
//! pass; [`LlamaModel::forward_batch`] does both at once (a serving step:
//! every running request's next token and joining requests' prompt chunks).
//! The projections, the MLP and the LM head run as one matmul over all the
//! rows; the decode rows' attention is one batched matmul over their caches
//! stacked to the longest (`[b, kv_heads, len, head_dim]`, shorter ones
//! masked), and each prefill chunk attends on its own against its cache.
//! Sequences can join and leave between steps.
//!
//! **Numerics.** Same order of operations as Hugging Face's `LlamaForCausalLM`
//! (RMSNorm in f32, RoPE tables in f32, softmax in f32, logits in f32), so
//! an f32 CPU run matches `transformers` loading the same GGUF to ~1e-4 in
//! logprobs. CPU runs are deterministic for the same inputs and batch
//! composition. This module never sets torch's thread count: the caller
//! owns it (the sprint engine sets it process-wide).
//!
//! **Threads.** [`LlamaModel`] and [`Sequence`] are `Send` but not `Sync`
//! (tch tensors): one engine thread owns the model and every sequence.
//!
//! **Cost.** A CPU decode step is memory-bound: it reads every f32 weight
//! (~0.6 GB for SmolLM2-135M), so batching B sequences into one
//! `decode_step` costs far less than B steps.

use tch::{Device, Kind, Tensor};

use crate::decode_attention;
use crate::gguf::{GgufError, GgufFile};
use crate::quant::QuantMatrix;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("architecture {0:?} is not supported (supported: llama, qwen2)")]
    UnsupportedArch(String),
    #[error("bad model config: {0}")]
    Config(String),
    #[error("tensor {name}: shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        found: Vec<i64>,
        expected: Vec<i64>,
    },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("{needed} tokens exceed the context length {context}")]
    ContextFull { needed: usize, context: usize },
    #[error("{0}")]
    BadInput(String),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// The most tokens one forward pass of a prefill takes; longer prompts run
/// in consecutive chunks (same result up to float rounding).
pub const PREFILL_CHUNK: usize = 512;

/// Up to this many rows, a CPU f32 projection runs as `(w · xᵀ)ᵀ` (see
/// `LlamaModel::project`).
const SMALL_BATCH_ROWS: i64 = 16;

/// Up to this many rows, a product with quantized weights runs on their
/// blocks ([`QuantMatrix::matmul`]); more rows use the f32 weights.
const BLOCK_ROWS: i64 = 8;

thread_local! {
    /// While a [`BlockThreads`] is alive on this thread: the threads a
    /// product on blocks splits over.
    static LENT_THREADS: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// For a pass that runs its products on blocks: torch's threads (as the
/// caller set them on this thread) are lent to the block products, and
/// torch's own ops run on one thread until the guard drops. Both at once
/// would fight over the cores: after each parallel op torch's OpenMP
/// threads spin for milliseconds waiting for the next one, and a helper of
/// the block products then gets no core (measured on two cores: a batch-8
/// decode step took 135 ms instead of 52). Nested guards are no-ops; the
/// outermost restores the thread count when dropped. Get one from
/// [`LlamaModel::block_threads`].
pub struct BlockThreads {
    /// `Some(torch's threads before)` for the outermost guard.
    restore: Option<i32>,
}

impl BlockThreads {
    fn enter() -> Self {
        if LENT_THREADS.with(|l| l.get()).is_some() {
            return BlockThreads { restore: None };
        }
        let torch_threads = tch::get_num_threads().max(1);
        LENT_THREADS.with(|l| l.set(Some(torch_threads as usize)));
        if torch_threads > 1 {
            tch::set_num_threads(1);
        }
        BlockThreads {
            restore: Some(torch_threads),
        }
    }

    /// Threads for a product on blocks on this thread now.
    fn lent() -> usize {
        LENT_THREADS
            .with(|l| l.get())
            .unwrap_or_else(|| tch::get_num_threads().max(1) as usize)
    }
}

impl Drop for BlockThreads {
    fn drop(&mut self) {
        if let Some(threads) = self.restore {
            LENT_THREADS.with(|l| l.set(None));
            if threads > 1 {
                tch::set_num_threads(threads);
            }
        }
    }
}

/// Hyper-parameters read from the GGUF metadata (`{arch}.*` keys).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// `general.architecture` (`llama`, `qwen2`).
    pub arch: String,
    pub n_layers: usize,
    pub hidden: usize,
    pub ffn_hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_eps: f64,
    pub rope_base: f64,
    pub context_length: usize,
    /// No `output.weight`: the LM head is the token embedding.
    pub tied_embeddings: bool,
    /// Q/K/V projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// `attn_q`/`attn_k` rows were permuted by llama.cpp's converter (llama arch).
    pub permuted_qk: bool,
}

impl LlamaConfig {
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.str("general.architecture")?.to_string();
        let permuted_qk = match arch.as_str() {
            "llama" => true,
            "qwen2" => false,
            _ => return Err(ModelError::UnsupportedArch(arch)),
        };
        let key = |k: &str| format!("{arch}.{k}");
        let int = |k: &str| -> Result<usize> {
            usize::try_from(file.u64(&key(k))?)
                .map_err(|_| ModelError::Config(format!("{} does not fit", key(k))))
        };
        let n_layers = int("block_count")?;
        let hidden = int("embedding_length")?;
        let ffn_hidden = int("feed_forward_length")?;
        let n_heads = int("attention.head_count")?;
        let n_kv_heads = match file.get(&key("attention.head_count_kv")) {
            Some(_) => int("attention.head_count_kv")?,
            None => n_heads,
        };
        let rms_eps = file.f32(&key("attention.layer_norm_rms_epsilon"))? as f64;
        let rope_base = match file.get(&key("rope.freq_base")) {
            Some(_) => file.f32(&key("rope.freq_base"))? as f64,
            None => 10_000.0,
        };
        let context_length = int("context_length")?;
        let embd = file
            .tensor("token_embd.weight")
            .ok_or_else(|| GgufError::MissingTensor("token_embd.weight".into()))?;
        let vocab_size = *embd.shape().first().unwrap_or(&0) as usize;
        if n_layers == 0 || hidden == 0 || n_heads == 0 || n_kv_heads == 0 || vocab_size == 0 {
            return Err(ModelError::Config(format!(
                "zero in layers {n_layers}, width {hidden}, heads {n_heads}/{n_kv_heads}, vocab {vocab_size}"
            )));
        }
        if hidden % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(ModelError::Config(format!(
                "width {hidden}, {n_heads} heads and {n_kv_heads} KV heads do not divide"
            )));
        }
        let head_dim = hidden / n_heads;
        if head_dim % 2 != 0 {
            return Err(ModelError::Config(format!("odd head dim {head_dim}")));
        }
        if let Some(rope_dims) = file.get(&key("rope.dimension_count")) {
            if rope_dims.as_u64() != Some(head_dim as u64) {
                return Err(ModelError::Config(format!(
                    "partial RoPE ({rope_dims:?} of {head_dim} dims) is not supported"
                )));
            }
        }
        Ok(LlamaConfig {
            tied_embeddings: file.tensor("output.weight").is_none(),
            qkv_bias: file.tensor("blk.0.attn_q.bias").is_some(),
            arch,
            n_layers,
            hidden,
            ffn_hidden,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            rms_eps,
            rope_base,
            context_length,
            permuted_qk,
        })
    }

    fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// Where the weights live and in which precision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadOptions {
    pub device: Device,
    /// `Kind::Float` or `Kind::BFloat16` (`Kind::Half` works on CUDA).
    pub kind: Kind,
}

impl LoadOptions {
    /// CPU, f32: the reference configuration.
    pub fn cpu() -> Self {
        LoadOptions {
            device: Device::Cpu,
            kind: Kind::Float,
        }
    }

    /// CUDA in bf16 when torch sees a GPU, otherwise CPU f32.
    pub fn auto() -> Self {
        if tch::Cuda::is_available() {
            LoadOptions {
                device: Device::Cuda(0),
                kind: Kind::BFloat16,
            }
        } else {
            Self::cpu()
        }
    }
}

/// Undoes llama.cpp's Q/K row permutation (see the module doc): `w` is
/// `[n_head * head_dim, in]` in llama.cpp's interleaved order, the result is
/// in Hugging Face's rotate-half order.
pub fn unpermute_qk(w: &Tensor, n_head: usize) -> Tensor {
    let (rows, cols) = w.size2().unwrap_or((0, 0));
    let n_head = n_head as i64;
    w.reshape([n_head, rows / n_head / 2, 2, cols])
        .transpose(1, 2)
        .reshape([rows, cols])
}

struct Layer {
    attn_norm: Tensor,
    /// `[q_dim + 2 kv_dim, hidden]`: Q, K, V stacked.
    wqkv: Tensor,
    bqkv: Option<Tensor>,
    wo: Tensor,
    ffn_norm: Tensor,
    /// `[2 ffn, hidden]`: gate, up stacked.
    w_gate_up: Tensor,
    w_down: Tensor,
    /// The same four matrices in the file's blocks, for decode steps on the
    /// CPU (see [`crate::quant`]); `None` where the file holds floats.
    blocks: LayerBlocks,
}

#[derive(Default)]
struct LayerBlocks {
    wqkv: Option<QuantMatrix>,
    wo: Option<QuantMatrix>,
    w_gate_up: Option<QuantMatrix>,
    w_down: Option<QuantMatrix>,
}

/// The model: weights on their device, and the RoPE inverse frequencies.
pub struct LlamaModel {
    config: LlamaConfig,
    options: LoadOptions,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// `[vocab, hidden]`; the embedding itself when tied.
    lm_head: Tensor,
    lm_head_blocks: Option<QuantMatrix>,
    /// `[head_dim / 2]`, f32 on the device.
    inv_freq: Tensor,
    /// The small vectors a decode step on blocks reads, as plain `f32`s;
    /// `Some` when every product of a layer has blocks (see
    /// [`LlamaModel::decode_on_cpu`]).
    cpu_decode: Option<CpuDecodeWeights>,
}

/// Per layer, the norms' weights and the QKV bias, for
/// [`LlamaModel::decode_on_cpu`].
struct CpuDecodeWeights {
    layers: Vec<CpuLayerWeights>,
    final_norm: Vec<f32>,
}

struct CpuLayerWeights {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    bqkv: Option<Vec<f32>>,
}

impl std::fmt::Debug for LlamaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaModel")
            .field("config", &self.config)
            .field("options", &self.options)
            .finish()
    }
}

/// One layer's K and V history for a sequence.
struct KvCache {
    /// `[kv_heads, capacity, head_dim]`; positions `0..len` are filled.
    k: Tensor,
    v: Tensor,
}

/// A request's state: its KV cache and how many tokens it holds. Created by
/// [`LlamaModel::new_sequence`]; only valid with the model that made it.
pub struct Sequence {
    caches: Vec<KvCache>,
    len: usize,
    capacity: usize,
}

impl std::fmt::Debug for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Sequence {
    /// Tokens in the cache (the position the next token will take).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything after the first `len` tokens (e.g. to reuse a prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Layer `layer`'s cache as [`decode_attention`] reads it during a
    /// decode step (the new token's keys already written: `len + 1`
    /// positions); `None` unless both tensors are contiguous f32 on the CPU.
    fn decode_view(&self, layer: usize) -> Option<decode_attention::CacheView<'_>> {
        let cache = self.caches.get(layer)?;
        for t in [&cache.k, &cache.v] {
            if !t.is_contiguous() || t.kind() != Kind::Float || t.device() != Device::Cpu {
                return None;
            }
        }
        // SAFETY: contiguous f32 CPU tensors of `numel` elements, borrowed
        // with `self` for as long as the view lives; nothing writes them
        // meanwhile (writers need `&mut Sequence`).
        let (k, v) = unsafe {
            (
                std::slice::from_raw_parts(cache.k.data_ptr() as *const f32, cache.k.numel()),
                std::slice::from_raw_parts(cache.v.data_ptr() as *const f32, cache.v.numel()),
            )
        };
        Some(decode_attention::CacheView {
            k,
            v,
            capacity: self.capacity,
            len: self.len + 1,
        })
    }

    /// Bytes held by the cache buffers.
    pub fn cache_bytes(&self) -> usize {
        self.caches
            .iter()
            .map(|c| 2 * c.k.numel() * c.k.kind().elt_size_in_bytes())
            .sum()
    }
}

/// A token and its log-probability.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
}

/// One position of a response: the token that was there, its logprob under
/// the model, and the model's top-k at that position (best first).
#[derive(Clone, Debug, PartialEq)]
pub struct PositionLogprobs {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<TokenLogprob>,
}

/// Top-k logprobs of each row of `logits` (`[vocab]` or `[n, vocab]`), best
/// first, plus the logprob of `chosen[i]` when given.
pub fn logprobs_of(
    logits: &Tensor,
    k: usize,
    chosen: Option<&[u32]>,
) -> Result<Vec<PositionLogprobs>> {
    let logits = if logits.dim() == 1 {
        logits.unsqueeze(0)
    } else {
        logits.shallow_clone()
    };
    let (rows, vocab) = logits.size2()?;
    if let Some(c) = chosen {
        if c.len() != rows as usize {
            return Err(ModelError::BadInput(format!(
                "{} chosen tokens for {rows} rows",
                c.len()
            )));
        }
    }
    let lp = logits
        .to_kind(Kind::Float)
        .log_softmax(-1, Kind::Float)
        .to_device(Device::Cpu);
    let k = (k as i64).min(vocab);
    let (top_v, top_i) = lp.topk(k.max(1), -1, true, true);
    let top_v = Vec::<f32>::try_from(top_v.reshape([-1]))?;
    let top_i = Vec::<i64>::try_from(top_i.reshape([-1]))?;
    let kk = k.max(1) as usize;
    // The chosen tokens' logprobs: a gather, not a copy of every row.
    let chosen_lp = match chosen {
        Some(c) => {
            if let Some(&id) = c.iter().find(|&&t| t as i64 >= vocab) {
                return Err(ModelError::TokenOutOfRange {
                    id,
                    vocab: vocab as usize,
                });
            }
            let idx: Vec<i64> = c.iter().map(|&t| t as i64).collect();
            let idx = Tensor::from_slice(&idx).unsqueeze(1);
            Vec::<f32>::try_from(lp.gather(1, &idx, false).reshape([-1]))?
        }
        None => (0..rows as usize).map(|r| top_v[r * kk]).collect(),
    };
    let mut out = Vec::with_capacity(rows as usize);
    for r in 0..rows as usize {
        let top: Vec<TokenLogprob> = (0..k as usize)
            .map(|j| TokenLogprob {
                token: top_i[r * kk + j] as u32,
                logprob: top_v[r * kk + j],
            })
            .collect();
        let token = match chosen {
            Some(c) => c[r],
            None => top_i[r * kk] as u32,
        };
        out.push(PositionLogprobs {
            token,
            logprob: chosen_lp[r],
            top,
        });
    }
    Ok(out)
}

/// Rewrites a weight at load: called with the GGUF tensor name and the
/// dequantized f32 CPU tensor (before any Q/K unpermutation or fusion),
/// returns the tensor to use (same shape). Used to build substitute models
/// for the validation tests (see [`crate::validation`]).
pub type WeightTransform<'a> = &'a dyn Fn(&str, Tensor) -> Tensor;

fn load_tensor(
    file: &GgufFile,
    name: &str,
    expected: &[i64],
    opts: &LoadOptions,
    transform: WeightTransform,
) -> Result<Tensor> {
    let (shape, values) = file.dequantize(name)?;
    if shape != expected {
        return Err(ModelError::Shape {
            name: name.to_string(),
            found: shape,
            expected: expected.to_vec(),
        });
    }
    let tensor = transform(name, Tensor::from_slice(&values).reshape(&shape));
    if tensor.size() != shape {
        return Err(ModelError::Shape {
            name: format!("{name} (after the load transform)"),
            found: tensor.size(),
            expected: shape,
        });
    }
    Ok(tensor.to_device(opts.device).to_kind(opts.kind))
}

/// A weight's blocks as the file holds them, when it is `[rows, cols]` in a
/// format [`QuantMatrix`] computes with.
fn load_blocks(file: &GgufFile, name: &str, rows: i64, cols: i64) -> Option<QuantMatrix> {
    let info = file.tensor(name)?;
    if info.shape() != [rows, cols] {
        return None;
    }
    QuantMatrix::new(
        info.ggml_type,
        rows as usize,
        cols as usize,
        file.tensor_bytes(info).ok()?,
    )
}

/// The order of rows [`unpermute_qk`] produces: row `i` of the result is row
/// `order[i]` of `w`.
fn unpermute_order(rows: i64, n_head: usize) -> Vec<usize> {
    let index = Tensor::arange(rows, (Kind::Int64, Device::Cpu)).reshape([rows, 1]);
    Vec::<i64>::try_from(unpermute_qk(&index, n_head).reshape([-1]))
        .map(|v| v.into_iter().map(|i| i as usize).collect())
        .unwrap_or_default()
}

impl LlamaModel {
    /// Loads every weight of `file` (see the module doc for the layout). On
    /// the CPU in f32, the quantized matrices are also kept in their blocks
    /// for decode steps (see [`crate::quant`]).
    pub fn load(file: &GgufFile, options: LoadOptions) -> Result<Self> {
        Self::load_inner(file, options, None)
    }

    /// As [`load`](Self::load), with every weight passed through `transform`
    /// (see [`WeightTransform`]) after dequantization. The file's blocks no
    /// longer describe such weights, so every product runs in `options.kind`.
    pub fn load_with(
        file: &GgufFile,
        options: LoadOptions,
        transform: WeightTransform,
    ) -> Result<Self> {
        Self::load_inner(file, options, Some(transform))
    }

    /// Computes every product with the f32 weights (MKL), as before the
    /// quantized decode path: a reference for benchmarks and tests.
    pub fn without_block_products(mut self) -> Self {
        for layer in &mut self.layers {
            layer.blocks = LayerBlocks::default();
        }
        self.lm_head_blocks = None;
        self.cpu_decode = None;
        self
    }

    /// Whether decode steps use the file's blocks (see [`crate::quant`]).
    pub fn uses_block_products(&self) -> bool {
        self.lm_head_blocks.is_some() || self.layers.iter().any(|l| l.blocks.wqkv.is_some())
    }

    fn load_inner(
        file: &GgufFile,
        options: LoadOptions,
        transform: Option<WeightTransform>,
    ) -> Result<Self> {
        let keep_blocks =
            transform.is_none() && options.device == Device::Cpu && options.kind == Kind::Float;
        let transform: WeightTransform = transform.unwrap_or(&|_, t| t);
        let _guard = tch::no_grad_guard();
        let config = LlamaConfig::from_gguf(file)?;
        let c = &config;
        let (h, q, kv, ffn, vocab) = (
            c.hidden as i64,
            c.q_dim() as i64,
            c.kv_dim() as i64,
            c.ffn_hidden as i64,
            c.vocab_size as i64,
        );
        // Unpermute in f32 on the CPU before moving, so it is exact.
        let f32_cpu = LoadOptions::cpu();
        let to_dev = |t: Tensor| t.to_device(options.device).to_kind(options.kind);
        let embed = load_tensor(file, "token_embd.weight", &[vocab, h], &options, transform)?;
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let name = |s: &str| format!("blk.{i}.{s}");
            let mut wq = load_tensor(file, &name("attn_q.weight"), &[q, h], &f32_cpu, transform)?;
            let mut wk = load_tensor(file, &name("attn_k.weight"), &[kv, h], &f32_cpu, transform)?;
            let wv = load_tensor(file, &name("attn_v.weight"), &[kv, h], &f32_cpu, transform)?;
            if c.permuted_qk {
                wq = unpermute_qk(&wq, c.n_heads);
                wk = unpermute_qk(&wk, c.n_kv_heads);
            }
            let bqkv = if c.qkv_bias {
                let bq = load_tensor(file, &name("attn_q.bias"), &[q], &f32_cpu, transform)?;
                let bk = load_tensor(file, &name("attn_k.bias"), &[kv], &f32_cpu, transform)?;
                let bv = load_tensor(file, &name("attn_v.bias"), &[kv], &f32_cpu, transform)?;
                Some(to_dev(Tensor::cat(&[bq, bk, bv], 0)))
            } else {
                None
            };
            let gate = load_tensor(
                file,
                &name("ffn_gate.weight"),
                &[ffn, h],
                &f32_cpu,
                transform,
            )?;
            let up = load_tensor(file, &name("ffn_up.weight"), &[ffn, h], &f32_cpu, transform)?;
            let blocks = if keep_blocks {
                let q_blocks = load_blocks(file, &name("attn_q.weight"), q, h);
                let k_blocks = load_blocks(file, &name("attn_k.weight"), kv, h);
                let (q_blocks, k_blocks) = if c.permuted_qk {
                    (
                        q_blocks.and_then(|m| m.select_rows(&unpermute_order(q, c.n_heads))),
                        k_blocks.and_then(|m| m.select_rows(&unpermute_order(kv, c.n_kv_heads))),
                    )
                } else {
                    (q_blocks, k_blocks)
                };
                let v_blocks = load_blocks(file, &name("attn_v.weight"), kv, h);
                let gate_blocks = load_blocks(file, &name("ffn_gate.weight"), ffn, h);
                let up_blocks = load_blocks(file, &name("ffn_up.weight"), ffn, h);
                LayerBlocks {
                    wqkv: match (q_blocks, k_blocks, v_blocks) {
                        (Some(a), Some(b), Some(v)) => QuantMatrix::stack(&[&a, &b, &v]),
                        _ => None,
                    },
                    wo: load_blocks(file, &name("attn_output.weight"), h, q),
                    w_gate_up: match (gate_blocks, up_blocks) {
                        (Some(g), Some(u)) => QuantMatrix::stack(&[&g, &u]),
                        _ => None,
                    },
                    w_down: load_blocks(file, &name("ffn_down.weight"), h, ffn),
                }
            } else {
                LayerBlocks::default()
            };
            layers.push(Layer {
                blocks,
                attn_norm: load_tensor(file, &name("attn_norm.weight"), &[h], &options, transform)?,
                wqkv: to_dev(Tensor::cat(&[wq, wk, wv], 0)),
                bqkv,
                wo: load_tensor(
                    file,
                    &name("attn_output.weight"),
                    &[h, q],
                    &options,
                    transform,
                )?,
                ffn_norm: load_tensor(file, &name("ffn_norm.weight"), &[h], &options, transform)?,
                w_gate_up: to_dev(Tensor::cat(&[gate, up], 0)),
                w_down: load_tensor(
                    file,
                    &name("ffn_down.weight"),
                    &[h, ffn],
                    &options,
                    transform,
                )?,
            });
        }
        let norm = load_tensor(file, "output_norm.weight", &[h], &options, transform)?;
        let lm_head = if c.tied_embeddings {
            embed.shallow_clone()
        } else {
            load_tensor(file, "output.weight", &[vocab, h], &options, transform)?
        };
        let lm_head_blocks = match (keep_blocks, c.tied_embeddings) {
            (false, _) => None,
            (true, true) => load_blocks(file, "token_embd.weight", vocab, h),
            (true, false) => load_blocks(file, "output.weight", vocab, h),
        };
        // As transformers' default RoPE: base ** (arange(0, d, 2) / d) in f32, inverted.
        let d = c.head_dim as i64;
        let exponent = Tensor::arange_start_step(0, d, 2, (Kind::Int64, Device::Cpu))
            .to_kind(Kind::Float)
            / (d as f64);
        let inv_freq = Tensor::pow_scalar(c.rope_base, &exponent)
            .reciprocal()
            .to_device(options.device);
        let all_blocks = lm_head_blocks.is_some()
            && layers.iter().all(|l| {
                let b = &l.blocks;
                b.wqkv.is_some() && b.wo.is_some() && b.w_gate_up.is_some() && b.w_down.is_some()
            });
        let cpu_decode = if all_blocks {
            let floats = |t: &Tensor| Vec::<f32>::try_from(&t.contiguous().view([-1]));
            let mut cpu_layers = Vec::with_capacity(layers.len());
            for layer in &layers {
                cpu_layers.push(CpuLayerWeights {
                    attn_norm: floats(&layer.attn_norm)?,
                    ffn_norm: floats(&layer.ffn_norm)?,
                    bqkv: layer.bqkv.as_ref().map(floats).transpose()?,
                });
            }
            Some(CpuDecodeWeights {
                layers: cpu_layers,
                final_norm: floats(&norm)?,
            })
        } else {
            None
        };
        Ok(LlamaModel {
            config,
            options,
            embed,
            layers,
            norm,
            lm_head,
            lm_head_blocks,
            inv_freq,
            cpu_decode,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn options(&self) -> LoadOptions {
        self.options
    }

    /// An empty sequence (no cache memory until its first prefill).
    pub fn new_sequence(&self) -> Sequence {
        let empty = || Tensor::zeros([0], (self.options.kind, self.options.device));
        Sequence {
            caches: (0..self.config.n_layers)
                .map(|_| KvCache {
                    k: empty(),
                    v: empty(),
                })
                .collect(),
            len: 0,
            capacity: 0,
        }
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        let vocab = self.config.vocab_size;
        match tokens.iter().find(|&&t| t as usize >= vocab) {
            Some(&id) => Err(ModelError::TokenOutOfRange { id, vocab }),
            None => Ok(()),
        }
    }

    /// Makes room for `needed` tokens in `seq`'s cache (doubling, capped at the context).
    fn reserve(&self, seq: &mut Sequence, needed: usize) -> Result<()> {
        let context = self.config.context_length;
        if needed > context {
            return Err(ModelError::ContextFull { needed, context });
        }
        if needed <= seq.capacity {
            return Ok(());
        }
        if seq.caches.len() != self.config.n_layers {
            return Err(ModelError::BadInput(
                "sequence belongs to another model".into(),
            ));
        }
        let capacity = needed.max(seq.capacity * 2).max(64).min(context);
        let shape = [
            self.config.n_kv_heads as i64,
            capacity as i64,
            self.config.head_dim as i64,
        ];
        let opts = (self.options.kind, self.options.device);
        for cache in &mut seq.caches {
            let k = Tensor::zeros(shape, opts);
            let v = Tensor::zeros(shape, opts);
            if seq.len > 0 {
                let n = seq.len as i64;
                k.narrow(1, 0, n).copy_(&cache.k.narrow(1, 0, n));
                v.narrow(1, 0, n).copy_(&cache.v.narrow(1, 0, n));
            }
            cache.k = k;
            cache.v = v;
        }
        seq.capacity = capacity;
        Ok(())
    }

    /// `x · wᵀ (+ bias)` for `x` `[rows, in]` and `w` `[out, in]`.
    ///
    /// A decode step has a few rows. For those, MKL's f32 `x · wᵀ` spends
    /// most of its time packing `w` into a scratch copy on every call (`perf`:
    /// ~40% of a batch-8 step in `sgemm_scopy`), streaming each weight from
    /// memory twice; computed as `(w · xᵀ)ᵀ` the same product skips that
    /// copy (measured on this model's 121 matrices, cold cache, 2 threads:
    /// 44 ms instead of 61 at 8 rows, 62 instead of 75 at 16; equal at 1
    /// row, where both are a matrix-vector product). Same values up to f32
    /// rounding (bit-identical from 12 rows on). Other precisions and
    /// devices, and more rows, keep `linear`.
    ///
    /// With the weight's `blocks` (CPU, f32, a quantized file), up to
    /// `SMALL_BATCH_ROWS` rows are multiplied by the blocks themselves
    /// ([`QuantMatrix::matmul`]): the same f32 weights, ~5× less memory read.
    fn project(
        &self,
        x: &Tensor,
        w: &Tensor,
        blocks: Option<&QuantMatrix>,
        bias: Option<&Tensor>,
    ) -> Tensor {
        let rows = x.size().first().copied().unwrap_or(0);
        if let Some(blocks) = blocks.filter(|_| (1..=BLOCK_ROWS).contains(&rows)) {
            let values = x.contiguous().view([-1]);
            if let Ok(values) = Vec::<f32>::try_from(&values) {
                if values.len() == rows as usize * blocks.cols() {
                    let threads = BlockThreads::lent();
                    let y = blocks.matmul(&values, rows as usize, threads);
                    let y = Tensor::from_slice(&y).reshape([rows, blocks.rows() as i64]);
                    return match bias {
                        Some(b) => y + b,
                        None => y,
                    };
                }
            }
        }
        if self.options.device == Device::Cpu
            && self.options.kind == Kind::Float
            && (1..=SMALL_BATCH_ROWS).contains(&rows)
        {
            // The result is a transposed view, and elementwise ops keep that
            // layout (the MLP's activation reaches `w_down` column-major),
            // which MKL's product takes on a much slower path: rows first.
            let x = x.contiguous();
            let y = if rows == 1 {
                // MKL's matrix-vector path is slower still: a product with
                // the row twice is a small matrix product (28 ms instead of
                // 39 for the model's matrices).
                w.mm(&Tensor::cat(&[&x, &x], 0).tr()).narrow(1, 0, 1).tr()
            } else {
                w.mm(&x.tr()).tr()
            };
            match bias {
                Some(b) => y + b,
                None => y,
            }
        } else {
            x.linear(w, bias)
        }
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Tensor {
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = xf * (var + self.config.rms_eps).rsqrt();
        weight * normed.to_kind(self.options.kind)
    }

    /// `(cos, sin)` of shape `[n, head_dim]` for the given absolute positions.
    fn rope_tables(&self, positions: &[i64]) -> (Tensor, Tensor) {
        let pos = Tensor::from_slice(positions)
            .to_device(self.options.device)
            .to_kind(Kind::Float);
        let freqs = pos.unsqueeze(1) * self.inv_freq.unsqueeze(0);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (
            emb.cos().to_kind(self.options.kind),
            emb.sin().to_kind(self.options.kind),
        )
    }

    /// Rotate-half RoPE on `x` of shape `[n, heads, head_dim]`, tables `[n, head_dim]`.
    fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let half = x.size()[2] / 2;
        let x1 = x.narrow(2, 0, half);
        let x2 = x.narrow(2, half, half);
        let rotated = Tensor::cat(&[&(-&x2), &x1], 2);
        x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1)
    }

    /// Attention of `n` new queries `q` `[n, n_heads, hd]` of one sequence
    /// whose cache already holds the new keys: positions `0..total`, the new
    /// ones being the last `n`. Returns `[n, n_heads * hd]`.
    fn attend(&self, q: &Tensor, k_all: &Tensor, v_all: &Tensor, n: i64, total: i64) -> Tensor {
        let c = &self.config;
        let (kvh, hd) = (c.n_kv_heads as i64, c.head_dim as i64);
        let group = (c.n_heads / c.n_kv_heads) as i64;
        // [n, heads, hd] → [kvh, group, n, hd] → [kvh, group*n, hd]
        let qg = q.permute([1, 0, 2]).reshape([kvh, group * n, hd]);
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = qg.matmul(&k_all.transpose(1, 2)) * scale; // [kvh, group*n, total]
        let scores = if n > 1 {
            // Query i sits at absolute position total - n + i and sees keys 0..=that.
            let qpos = Tensor::arange_start(total - n, total, (Kind::Int64, self.options.device));
            let kpos = Tensor::arange(total, (Kind::Int64, self.options.device));
            let masked = kpos.unsqueeze(0).gt_tensor(&qpos.unsqueeze(1)); // [n, total]
            scores
                .reshape([kvh, group, n, total])
                .masked_fill(&masked, f64::NEG_INFINITY)
                .reshape([kvh, group * n, total])
        } else {
            scores
        };
        let probs = scores.softmax(-1, Kind::Float).to_kind(self.options.kind);
        probs
            .matmul(v_all) // [kvh, group*n, hd]
            .reshape([c.n_heads as i64, n, hd])
            .permute([1, 0, 2])
            .reshape([n, c.n_heads as i64 * hd])
    }

    /// Attention for `decode` sequences that take one new token each (rows
    /// `0..decode.len()` of `q`, `[rows, n_heads, hd]`), all in one batched
    /// matmul: their caches (already holding the new keys, room for `tmax`
    /// positions each) are stacked to `[b, kvh, tmax, hd]` and positions at or
    /// past a sequence's length are masked (`mask`, `[b, 1, 1, tmax]`, true =
    /// hidden). Returns `[b, n_heads * hd]`.
    fn attend_decode(
        &self,
        q: &Tensor,
        seqs: &[&mut Sequence],
        decode: &[usize],
        layer: usize,
        tmax: i64,
        mask: Option<&Tensor>,
    ) -> Tensor {
        let c = &self.config;
        let (kvh, hd) = (c.n_kv_heads as i64, c.head_dim as i64);
        let group = (c.n_heads / c.n_kv_heads) as i64;
        let b = decode.len() as i64;
        if let Some(out) = self.attend_decode_on_cpu(q, seqs, decode, layer) {
            return out;
        }
        let gather = |pick: fn(&KvCache) -> &Tensor| -> Tensor {
            if let [only] = decode {
                pick(&seqs[*only].caches[layer])
                    .narrow(1, 0, tmax)
                    .unsqueeze(0)
            } else {
                let views: Vec<Tensor> = decode
                    .iter()
                    .map(|&s| pick(&seqs[s].caches[layer]).narrow(1, 0, tmax))
                    .collect();
                Tensor::stack(&views, 0)
            }
        };
        let k_all = gather(|cache| &cache.k); // [b, kvh, tmax, hd]
        let v_all = gather(|cache| &cache.v);
        // Head h = kv_head * group + g (as repeat_kv): [b, heads, hd] → [b, kvh, group, hd].
        let qg = q.narrow(0, 0, b).reshape([b, kvh, group, hd]);
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = qg.matmul(&k_all.transpose(2, 3)) * scale; // [b, kvh, group, tmax]
        let scores = match mask {
            Some(mask) => scores.masked_fill(mask, f64::NEG_INFINITY),
            None => scores,
        };
        let probs = scores.softmax(-1, Kind::Float).to_kind(self.options.kind);
        probs
            .matmul(&v_all) // [b, kvh, group, hd]
            .reshape([b, c.n_heads as i64 * hd])
    }

    /// [`attend_decode`](Self::attend_decode) by [`decode_attention`]
    /// (CPU, f32, contiguous caches), which reads each cache in place;
    /// `None` where that does not apply.
    fn attend_decode_on_cpu(
        &self,
        q: &Tensor,
        seqs: &[&mut Sequence],
        decode: &[usize],
        layer: usize,
    ) -> Option<Tensor> {
        if self.options.device != Device::Cpu || self.options.kind != Kind::Float {
            return None;
        }
        let c = &self.config;
        let b = decode.len() as i64;
        let queries = Vec::<f32>::try_from(q.narrow(0, 0, b).contiguous().view([-1])).ok()?;
        let views = decode
            .iter()
            .map(|&s| seqs[s].decode_view(layer))
            .collect::<Option<Vec<_>>>()?;
        let shape = decode_attention::Heads {
            heads: c.n_heads,
            kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
        };
        let out = decode_attention::attend(&queries, &views, shape, BlockThreads::lent())?;
        Some(Tensor::from_slice(&out).reshape([b, (c.n_heads * c.head_dim) as i64]))
    }

    /// The transformer over a flat batch of `rows` tokens: `segments` lists
    /// each sequence's rows (consecutive, in order) as `(seq index, start row,
    /// count)`. The leading one-token segments (decode steps) attend in one
    /// batched matmul, each other segment (a prefill chunk) on its own.
    /// Caches must have room, and the decode sequences room for the longest
    /// of them. Returns the final hidden states `[rows, hidden]`.
    fn forward_rows(
        &self,
        seqs: &mut [&mut Sequence],
        tokens: &[u32],
        segments: &[(usize, i64, i64)],
    ) -> Tensor {
        let _threads = self.block_threads(tokens.len());
        if let Some(hidden) = self.decode_on_cpu(seqs, tokens, segments) {
            return hidden;
        }
        let c = &self.config;
        let (qd, kvd, hd) = (c.q_dim() as i64, c.kv_dim() as i64, c.head_dim as i64);
        let dev = self.options.device;
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let ids = Tensor::from_slice(&ids).to_device(dev);
        let mut x = self.embed.index_select(0, &ids);
        let mut positions = Vec::with_capacity(tokens.len());
        for &(s, _, count) in segments {
            let start = seqs[s].len as i64;
            positions.extend(start..start + count);
        }
        let (cos, sin) = self.rope_tables(&positions);
        let rows = tokens.len() as i64;
        // The decode segments: rows 0..decode.len(), one token each.
        let n_decode = segments
            .iter()
            .enumerate()
            .take_while(|(i, &(_, row, count))| count == 1 && row == *i as i64)
            .count();
        let decode: Vec<usize> = segments[..n_decode].iter().map(|&(s, _, _)| s).collect();
        let decode_lens: Vec<i64> = decode.iter().map(|&s| seqs[s].len as i64 + 1).collect();
        let tmax = decode_lens.iter().copied().max().unwrap_or(0);
        let decode_mask = if decode_lens.iter().any(|&l| l != tmax) {
            let lens = Tensor::from_slice(&decode_lens).to_device(dev);
            let kpos = Tensor::arange(tmax, (Kind::Int64, dev));
            Some(kpos.unsqueeze(0).ge_tensor(&lens.unsqueeze(1)).reshape([
                n_decode as i64,
                1,
                1,
                tmax,
            ]))
        } else {
            None
        };
        for (li, layer) in self.layers.iter().enumerate() {
            let normed = self.rms_norm(&x, &layer.attn_norm);
            let qkv = self.project(
                &normed,
                &layer.wqkv,
                layer.blocks.wqkv.as_ref(),
                layer.bqkv.as_ref(),
            );
            let q = qkv.narrow(1, 0, qd).reshape([rows, c.n_heads as i64, hd]);
            let k = qkv
                .narrow(1, qd, kvd)
                .reshape([rows, c.n_kv_heads as i64, hd]);
            let v = qkv
                .narrow(1, qd + kvd, kvd)
                .reshape([rows, c.n_kv_heads as i64, hd]);
            let q = Self::apply_rope(&q, &cos, &sin);
            let k = Self::apply_rope(&k, &cos, &sin);
            for &(s, row, count) in segments {
                let seq = &mut *seqs[s];
                let start = seq.len as i64;
                let cache = &mut seq.caches[li];
                // [count, kvh, hd] → [kvh, count, hd] into the cache.
                cache
                    .k
                    .narrow(1, start, count)
                    .copy_(&k.narrow(0, row, count).transpose(0, 1));
                cache
                    .v
                    .narrow(1, start, count)
                    .copy_(&v.narrow(0, row, count).transpose(0, 1));
            }
            let mut outs = Vec::with_capacity(segments.len() - n_decode + 1);
            if n_decode > 0 {
                outs.push(self.attend_decode(&q, seqs, &decode, li, tmax, decode_mask.as_ref()));
            }
            for &(s, row, count) in &segments[n_decode..] {
                let seq = &*seqs[s];
                let cache = &seq.caches[li];
                let total = seq.len as i64 + count;
                outs.push(self.attend(
                    &q.narrow(0, row, count),
                    &cache.k.narrow(1, 0, total),
                    &cache.v.narrow(1, 0, total),
                    count,
                    total,
                ));
            }
            let attn = if outs.len() == 1 {
                outs.pop()
                    .unwrap_or_else(|| Tensor::zeros([0], (self.options.kind, dev)))
            } else {
                Tensor::cat(&outs, 0)
            };
            x += self.project(&attn, &layer.wo, layer.blocks.wo.as_ref(), None);
            let normed = self.rms_norm(&x, &layer.ffn_norm);
            let gate_up = self.project(
                &normed,
                &layer.w_gate_up,
                layer.blocks.w_gate_up.as_ref(),
                None,
            );
            let ffn = c.ffn_hidden as i64;
            let act = gate_up.narrow(1, 0, ffn).silu() * gate_up.narrow(1, ffn, ffn);
            x += self.project(&act, &layer.w_down, layer.blocks.w_down.as_ref(), None);
        }
        for &(s, _, count) in segments {
            seqs[s].len += count as usize;
        }
        self.rms_norm(&x, &self.norm)
    }

    /// [`forward_rows`](Self::forward_rows) for a decode step on blocks, in
    /// plain Rust over `f32` slices: every segment one token, at most
    /// `BLOCK_ROWS` of them, the model on the CPU in f32 with blocks for
    /// every product, contiguous f32 caches. `None` where that does not
    /// hold; the sequences' lengths are then unchanged (cache slots past them
    /// may have been written, which the torch pass that follows overwrites).
    /// The torch path's ~100 small ops per layer (norms,
    /// RoPE, each sequence's cache writes, views and copies between tensors
    /// and the products' buffers) cost more than the products' arithmetic at
    /// these sizes. Same operations in the same order per element as the
    /// torch path except the norms' mean of squares (summed in f64 here) and
    /// SiLU's exponential: equal up to f32 rounding (test
    /// `decode_on_quantized_blocks_equals_decode_on_f32_weights`), and each
    /// row computed alone, so independent of the batch.
    fn decode_on_cpu(
        &self,
        seqs: &mut [&mut Sequence],
        tokens: &[u32],
        segments: &[(usize, i64, i64)],
    ) -> Option<Tensor> {
        let weights = self.cpu_decode.as_ref()?;
        let b = tokens.len();
        if b == 0
            || b > BLOCK_ROWS as usize
            || segments.len() != b
            || segments
                .iter()
                .enumerate()
                .any(|(i, &(_, row, count))| count != 1 || row != i as i64)
        {
            return None;
        }
        for &(s, _, _) in segments {
            let seq = &seqs[s];
            if seq.len >= seq.capacity {
                return None;
            }
            for cache in &seq.caches {
                for t in [&cache.k, &cache.v] {
                    if !t.is_contiguous()
                        || t.kind() != Kind::Float
                        || t.device() != Device::Cpu
                        || t.numel() != self.config.kv_dim() * seq.capacity
                    {
                        return None;
                    }
                }
            }
        }
        let c = &self.config;
        let (h, qd, kvd, hd) = (c.hidden, c.q_dim(), c.kv_dim(), c.head_dim);
        let ffn = c.ffn_hidden;
        let eps = c.rms_eps as f32;
        let threads = BlockThreads::lent();
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let mut x = Vec::<f32>::try_from(
            &self
                .embed
                .index_select(0, &Tensor::from_slice(&ids))
                .contiguous()
                .view([-1]),
        )
        .ok()?;
        let positions: Vec<i64> = segments
            .iter()
            .map(|&(s, _, _)| seqs[s].len as i64)
            .collect();
        let (cos, sin) = self.rope_tables(&positions);
        let cos = Vec::<f32>::try_from(&cos.contiguous().view([-1])).ok()?;
        let sin = Vec::<f32>::try_from(&sin.contiguous().view([-1])).ok()?;
        if x.len() != b * h || cos.len() != b * hd || sin.len() != b * hd {
            return None;
        }
        let shape = decode_attention::Heads {
            heads: c.n_heads,
            kv_heads: c.n_kv_heads,
            head_dim: hd,
        };
        let mut normed = vec![0f32; b * h];
        for ((layer, lw), li) in self.layers.iter().zip(&weights.layers).zip(0..) {
            let blocks = &layer.blocks;
            let (wqkv, wo, w_gate_up, w_down) = (
                blocks.wqkv.as_ref()?,
                blocks.wo.as_ref()?,
                blocks.w_gate_up.as_ref()?,
                blocks.w_down.as_ref()?,
            );
            rms_norm_rows(&x, &lw.attn_norm, eps, &mut normed);
            let mut qkv = wqkv.matmul(&normed, b, threads);
            let width = qd + 2 * kvd;
            if let Some(bias) = &lw.bqkv {
                for row in qkv.chunks_exact_mut(width) {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
            }
            let mut queries = Vec::with_capacity(b * qd);
            for (r, row) in qkv.chunks_exact_mut(width).enumerate() {
                let (cos, sin) = (&cos[r * hd..(r + 1) * hd], &sin[r * hd..(r + 1) * hd]);
                let (q, kv) = row.split_at_mut(qd);
                let (k, v) = kv.split_at_mut(kvd);
                q.chunks_exact_mut(hd)
                    .for_each(|head| rope_rotate_half(head, cos, sin));
                k.chunks_exact_mut(hd)
                    .for_each(|head| rope_rotate_half(head, cos, sin));
                queries.extend_from_slice(q);
                let seq = &mut *seqs[segments[r].0];
                let cache = &mut seq.caches[li];
                let (pos, capacity) = (seq.len, seq.capacity);
                for (tensor, values) in [(&mut cache.k, &*k), (&mut cache.v, &*v)] {
                    // SAFETY: a contiguous f32 CPU tensor of `kv_dim ×
                    // capacity` elements (checked above), `[kv_heads,
                    // capacity, head_dim]`, owned by this sequence, which we
                    // borrow mutably; `pos < capacity`.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            tensor.data_ptr() as *mut f32,
                            kvd * capacity,
                        )
                    };
                    for (g, head) in values.chunks_exact(hd).enumerate() {
                        let at = (g * capacity + pos) * hd;
                        dst[at..at + hd].copy_from_slice(head);
                    }
                }
            }
            let views = segments
                .iter()
                .map(|&(s, _, _)| seqs[s].decode_view(li))
                .collect::<Option<Vec<_>>>()?;
            let attn = decode_attention::attend(&queries, &views, shape, threads)?;
            drop(views);
            let o = wo.matmul(&attn, b, threads);
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            rms_norm_rows(&x, &lw.ffn_norm, eps, &mut normed);
            let gate_up = w_gate_up.matmul(&normed, b, threads);
            let mut act = Vec::with_capacity(b * ffn);
            for row in gate_up.chunks_exact(2 * ffn) {
                let (gate, up) = row.split_at(ffn);
                act.extend(gate.iter().zip(up).map(|(&g, &u)| silu(g) * u));
            }
            let d = w_down.matmul(&act, b, threads);
            x.iter_mut().zip(&d).for_each(|(x, d)| *x += d);
        }
        for &(s, _, _) in segments {
            seqs[s].len += 1;
        }
        rms_norm_rows(&x, &weights.final_norm, eps, &mut normed);
        Some(Tensor::from_slice(&normed).reshape([b as i64, h as i64]))
    }

    /// For a forward pass of `rows` rows (one per decoding sequence) that
    /// runs its products on blocks, a guard that keeps torch's own ops on
    /// one thread and lends the others to the products (see
    /// [`BlockThreads`]); `None` when the pass does not use blocks. Passes
    /// take one themselves; a caller holds one over a pass *and* what it
    /// does with the logits, so no torch op of its own wakes torch's
    /// threads between two passes.
    pub fn block_threads(&self, rows: usize) -> Option<BlockThreads> {
        (self.uses_block_products() && (1..=BLOCK_ROWS as usize).contains(&rows))
            .then(BlockThreads::enter)
    }

    fn lm_logits(&self, hidden: &Tensor) -> Tensor {
        let _threads = self.block_threads(hidden.size().first().copied().unwrap_or(0) as usize);
        self.project(hidden, &self.lm_head, self.lm_head_blocks.as_ref(), None)
            .to_kind(Kind::Float)
    }

    /// Appends `tokens` to `seq` and returns the logits `[vocab]` (f32, on
    /// the model's device) predicting the token after the last one. Calling it
    /// several times with consecutive chunks equals one call with all of them.
    pub fn prefill(&self, seq: &mut Sequence, tokens: &[u32]) -> Result<Tensor> {
        let hidden = self.prefill_hidden(seq, tokens)?;
        Ok(self
            .lm_logits(&hidden.narrow(0, tokens.len() as i64 - 1, 1))
            .squeeze_dim(0))
    }

    /// As [`prefill`](Self::prefill) but returns the logits at every new
    /// position, `[tokens.len(), vocab]` (row i predicts token i + 1).
    pub fn prefill_all(&self, seq: &mut Sequence, tokens: &[u32]) -> Result<Tensor> {
        let hidden = self.prefill_hidden(seq, tokens)?;
        Ok(self.lm_logits(&hidden))
    }

    fn prefill_hidden(&self, seq: &mut Sequence, tokens: &[u32]) -> Result<Tensor> {
        if tokens.is_empty() {
            return Err(ModelError::BadInput("prefill of no tokens".into()));
        }
        self.check_tokens(tokens)?;
        let _guard = tch::no_grad_guard();
        self.reserve(seq, seq.len + tokens.len())?;
        // Attention scores are [heads, chunk, cache length]: chunking bounds
        // them (~150 MB at 512 × 8192 for SmolLM2) whatever the prompt length.
        let hidden: Vec<Tensor> = tokens
            .chunks(PREFILL_CHUNK)
            .map(|chunk| self.forward_rows(&mut [&mut *seq], chunk, &[(0, 0, chunk.len() as i64)]))
            .collect();
        Ok(Tensor::cat(&hidden, 0))
    }

    /// Feeds `next_tokens[i]` to `seqs[i]` for every i in one forward pass and
    /// returns the logits `[batch, vocab]` (f32, on the model's device). The
    /// sequences may have any lengths; each must have been prefilled.
    pub fn decode_step(&self, seqs: &mut [&mut Sequence], next_tokens: &[u32]) -> Result<Tensor> {
        if seqs.len() != next_tokens.len() || seqs.is_empty() {
            return Err(ModelError::BadInput(format!(
                "{} sequences and {} tokens",
                seqs.len(),
                next_tokens.len()
            )));
        }
        let inputs: Vec<&[u32]> = next_tokens.iter().map(std::slice::from_ref).collect();
        self.forward_batch(seqs, &inputs)
    }

    /// One forward pass that appends `inputs[i]` to `seqs[i]` for every i
    /// (one token for a decode step, a prompt chunk for a prefill) and returns
    /// the logits `[n, vocab]` (f32, on the model's device) at each input's
    /// last position. Continuous batching runs a step's decodes and prefill
    /// chunks in one pass, so the weights are read once for all of them. The
    /// sequences must be distinct; the total is not chunked (keep it to a few
    /// hundred tokens: prefill attention scores are `[heads, chunk, length]`).
    pub fn forward_batch(&self, seqs: &mut [&mut Sequence], inputs: &[&[u32]]) -> Result<Tensor> {
        if seqs.len() != inputs.len() || seqs.is_empty() {
            return Err(ModelError::BadInput(format!(
                "{} sequences and {} inputs",
                seqs.len(),
                inputs.len()
            )));
        }
        if inputs.iter().any(|i| i.is_empty()) {
            return Err(ModelError::BadInput("an empty input".into()));
        }
        for input in inputs {
            self.check_tokens(input)?;
        }
        let _guard = tch::no_grad_guard();
        // Decode steps (one token) first, as forward_rows batches them.
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs[i].len() != 1);
        let tmax = order
            .iter()
            .filter(|&&i| inputs[i].len() == 1)
            .map(|&i| seqs[i].len + 1)
            .max()
            .unwrap_or(0);
        for (seq, input) in seqs.iter_mut().zip(inputs) {
            let needed = seq.len + input.len();
            if needed > self.config.context_length {
                return Err(ModelError::ContextFull {
                    needed,
                    context: self.config.context_length,
                });
            }
            // A decode sequence's cache is stacked to the batch's longest.
            let room = if input.len() == 1 {
                needed.max(tmax)
            } else {
                needed
            };
            self.reserve(seq, room)?;
        }
        let mut tokens = Vec::new();
        let mut segments = Vec::with_capacity(order.len());
        let mut last_rows = vec![0i64; inputs.len()];
        for &i in &order {
            let row = tokens.len() as i64;
            tokens.extend_from_slice(inputs[i]);
            segments.push((i, row, inputs[i].len() as i64));
            last_rows[i] = tokens.len() as i64 - 1;
        }
        let hidden = self.forward_rows(seqs, &tokens, &segments);
        let hidden = if hidden.size()[0] == inputs.len() as i64
            && order.iter().enumerate().all(|(r, &i)| r == i)
        {
            hidden
        } else {
            let rows = Tensor::from_slice(&last_rows).to_device(self.options.device);
            hidden.index_select(0, &rows)
        };
        Ok(self.lm_logits(&hidden))
    }

    /// Validation replay: one prefill of `prompt ++ response` (teacher
    /// forcing) and, for every response position, the response token's
    /// logprob and the top-`k` logprobs.
    pub fn replay_logprobs(
        &self,
        prompt: &[u32],
        response: &[u32],
        k: usize,
    ) -> Result<Vec<PositionLogprobs>> {
        if prompt.is_empty() {
            return Err(ModelError::BadInput("replay needs a prompt".into()));
        }
        if response.is_empty() {
            return Ok(Vec::new());
        }
        let mut seq = self.new_sequence();
        let all: Vec<u32> = prompt.iter().chain(response).copied().collect();
        // The last response token predicts nothing we compare: feed all but it.
        let fed = &all[..all.len() - 1];
        let hidden = self.prefill_hidden(&mut seq, fed)?;
        let from = prompt.len() as i64 - 1;
        let logits = self.lm_logits(&hidden.narrow(0, from, response.len() as i64));
        logprobs_of(&logits, k, Some(response))
    }

    /// Greedy generation of up to `max_new` tokens after `prompt` (stops
    /// after emitting a token in `stop`), with each step's top-`k` logprobs.
    pub fn generate_greedy(
        &self,
        prompt: &[u32],
        max_new: usize,
        k: usize,
        stop: &[u32],
    ) -> Result<Vec<PositionLogprobs>> {
        let mut seq = self.new_sequence();
        let mut logits = self.prefill(&mut seq, prompt)?;
        let mut out = Vec::with_capacity(max_new);
        for step in 0..max_new {
            let pos = logprobs_of(&logits, k, None)?.remove(0);
            let token = pos.token;
            out.push(pos);
            if stop.contains(&token) || step + 1 == max_new {
                break;
            }
            logits = self.decode_step(&mut [&mut seq], &[token])?.squeeze_dim(0);
        }
        Ok(out)
    }
}

/// `out[r] = weight ⊙ x[r] / √(mean(x[r]²) + eps)` for each row of `x`, as
/// `LlamaModel::rms_norm` (the mean of squares summed in f64).
fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    for (row, dst) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let squares: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let mean = (squares / width as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((d, &v), &w) in dst.iter_mut().zip(row).zip(weight) {
            *d = w * (v * scale);
        }
    }
}

/// Rotate-half RoPE of one head in place, as `LlamaModel::apply_rope`:
/// `x ⊙ cos + (−x₂, x₁) ⊙ sin`.
fn rope_rotate_half(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = head.len() / 2;
    for i in 0..half {
        let (x1, x2) = (head[i], head[i + half]);
        head[i] = x1 * cos[i] + (-x2) * sin[i];
        head[i + half] = x2 * cos[i + half] + x1 * sin[i + half];
    }
}

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's converter permutation, as written in convert_hf_to_gguf.py.
    fn permute(w: &Tensor, n_head: i64) -> Tensor {
        let (rows, cols) = w.size2().unwrap();
        w.reshape([n_head, 2, rows / n_head / 2, cols])
            .transpose(1, 2)
            .reshape([rows, cols])
    }

    #[test]
    fn unpermute_inverts_the_converters_permutation() {
        let w = Tensor::arange(3 * 8 * 5, (Kind::Float, Device::Cpu)).reshape([24, 5]);
        let back = unpermute_qk(&permute(&w, 3), 3);
        assert!(back.equal(&w));
        // Head 0 of the permuted matrix interleaves the two halves: rows 0, 4, 1, 5, …
        let p = permute(&w, 3);
        let first_col: Vec<f32> = Vec::try_from(p.narrow(0, 0, 8).select(1, 0)).unwrap();
        assert_eq!(first_col, vec![0., 20., 5., 25., 10., 30., 15., 35.]);
    }

    #[test]
    fn logprobs_of_rows_and_chosen_tokens() {
        let logits = Tensor::from_slice(&[0f32, 1., 2., 3., 3., 2., 1., 0.]).reshape([2, 4]);
        let lp = logprobs_of(&logits, 2, Some(&[0, 0])).unwrap();
        let lse = (0f32.exp() + 1f32.exp() + 2f32.exp() + 3f32.exp()).ln();
        assert_eq!(
            lp[0].top.iter().map(|t| t.token).collect::<Vec<_>>(),
            vec![3, 2]
        );
        assert_eq!(lp[1].top[0].token, 0);
        assert!((lp[0].logprob - (0.0 - lse)).abs() < 1e-6);
        assert!((lp[1].logprob - (3.0 - lse)).abs() < 1e-6);
        assert!(logprobs_of(&logits, 2, Some(&[0, 9])).is_err());
    }
}
