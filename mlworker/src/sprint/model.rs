//! The SPEC §4 transformer on libtorch: weights from the portable generator
//! (protocol crate), moved to the device and cast to the compute dtype, and a
//! batched forward pass that returns the output projection at the last
//! position only.
//!
//! Layout choices (all mathematically identical to SPEC §4, which defines one
//! matmul per projection; only the floating-point summation order may differ,
//! which the tolerance covers):
//! - q|k|v are concatenated into one `[dim, 3·dim]` matrix and gate|up into one
//!   `[dim, 2·ffn]` matrix, so each layer runs 4 big matmuls over all
//!   `B·seq` rows of the batch.
//! - Only the last position's output is needed, so the last layer computes q,
//!   the attention output, o, the FFN, the final norm and `out` for that
//!   position only (k and v still cover every position).

use crate::device::ComputeDevice;
use anyhow::{ensure, Result};
use kiln_sprint_protocol::model::{generate_tensor, generate_tensors, target, ModelConfig};
use kiln_sprint_protocol::Hash32;
use tch::{Device, Kind, Tensor};

/// RMSNorm epsilon.
pub const RMS_EPS: f64 = 1e-5;
/// Rotary base θ.
pub const ROPE_THETA: f64 = 10_000.0;

struct Layer {
    /// `[dim, 3·dim]` = q | k | v (layers before the last).
    wqkv: Tensor,
    /// `[dim, dim]` (last layer only: q is needed at the last position only).
    wq: Tensor,
    /// `[dim, 2·dim]` = k | v (last layer only).
    wkv: Tensor,
    wo: Tensor,
    /// `[dim, 2·ffn]` = gate | up.
    wgu: Tensor,
    wdown: Tensor,
}

/// The model on its device.
pub struct SprintModel {
    pub cfg: ModelConfig,
    pub dev: ComputeDevice,
    layers: Vec<Layer>,
    out: Tensor,
    /// `[seq, head_dim]` rotary tables in the compute dtype.
    cos: Tensor,
    sin: Tensor,
    /// `sin` with the first half negated (for `roll`-based RoPE).
    sin_signed: Tensor,
    /// `[seq, half]` complex64 `cos + i·sin` when q/k use the interleaved
    /// head layout (f32 only, see [`SprintModel::new_with`]).
    rope_complex: Option<Tensor>,
    /// L2-normalised target, f64, on the device.
    target_n: Tensor,
}

fn empty() -> Tensor {
    Tensor::zeros([0], (Kind::Float, Device::Cpu))
}

/// Rotary tables `[seq, head_dim]` (rotate-half layout: the frequency table is
/// repeated for both halves), computed in f64.
pub fn rope_tables(seq: usize, head_dim: usize) -> (Vec<f64>, Vec<f64>) {
    let half = head_dim / 2;
    let mut cos = vec![0f64; seq * head_dim];
    let mut sin = vec![0f64; seq * head_dim];
    for p in 0..seq {
        for i in 0..half {
            let inv = 1.0 / ROPE_THETA.powf((2 * i) as f64 / head_dim as f64);
            let a = p as f64 * inv;
            for j in [i, i + half] {
                cos[p * head_dim + j] = a.cos();
                sin[p * head_dim + j] = a.sin();
            }
        }
    }
    (cos, sin)
}

impl SprintModel {
    /// Generate the weights for `seed` (portable CPU code, parallel across
    /// tensors) and load them onto `dev`, in the fastest layout for the dtype.
    pub fn new(seed: &Hash32, cfg: ModelConfig, dev: ComputeDevice) -> Result<Self> {
        Self::new_with(seed, cfg, dev, dev.kind == Kind::Float)
    }

    /// [`SprintModel::new`] choosing the q/k head layout.
    ///
    /// With `interleaved_rope` the columns of `q` and `k` are permuted inside
    /// every head from SPEC's rotate-half order `(0..half, half..hd)` to the
    /// interleaved order `(0, half, 1, half+1, …)`. Attention only uses dot
    /// products `q·k` over a head, which a common permutation of both leaves
    /// unchanged, and in the interleaved order the rotation of each pair
    /// `(x_j, x_{j+half})` is one complex multiply by `cos + i·sin`: one pass
    /// over q and k instead of three. Needs complex64, so f32 only. The
    /// model is the same function either way (tests compare them).
    pub fn new_with(
        seed: &Hash32,
        cfg: ModelConfig,
        dev: ComputeDevice,
        interleaved_rope: bool,
    ) -> Result<Self> {
        cfg.validate()?;
        let interleaved_rope = interleaved_rope && dev.kind == Kind::Float;
        let hd = cfg.head_dim();
        let qk_perm: Vec<i64> = (0..cfg.dim)
            .map(|c| {
                let (head, j) = (c / hd, c % hd);
                let src = if j % 2 == 0 { j / 2 } else { j / 2 + hd / 2 };
                (head * hd + src) as i64
            })
            .collect();
        let qk_perm = Tensor::from_slice(&qk_perm).to_device(dev.device);
        let qk_layout = |t: Tensor| {
            if interleaved_rope {
                t.index_select(1, &qk_perm)
            } else {
                t
            }
        };
        let _g = tch::no_grad_guard();
        let to_dev = |v: &[f32], r: usize, c: usize| -> Tensor {
            Tensor::from_slice(v)
                .reshape([r as i64, c as i64])
                .to_device(dev.device)
                .to_kind(dev.kind)
        };
        let all = cfg.tensors();
        let mut layers = Vec::with_capacity(cfg.layers);
        // Layer by layer (7 tensors generated in parallel, each in parallel
        // chunks), so host memory stays at one layer's worth on top of the
        // device copy.
        for (i, specs) in all.chunks(7).take(cfg.layers).enumerate() {
            let ws = generate_tensors(seed, specs.to_vec());
            let get = |suffix: &str| -> Result<&(kiln_sprint_protocol::TensorSpec, Vec<f32>)> {
                let name = format!("layers.{i}.{suffix}");
                ws.iter()
                    .find(|(s, _)| s.name == name)
                    .ok_or_else(|| anyhow::anyhow!("missing tensor {name}"))
            };
            let last = i + 1 == cfg.layers;
            let (d, f) = (cfg.dim, cfg.ffn_dim);
            let tq = qk_layout(to_dev(&get("attn.q")?.1, d, d));
            let tk = qk_layout(to_dev(&get("attn.k")?.1, d, d));
            let tv = to_dev(&get("attn.v")?.1, d, d);
            let (wqkv, wq, wkv) = if last {
                (empty(), tq, Tensor::cat(&[tk, tv], 1).contiguous())
            } else {
                (Tensor::cat(&[tq, tk, tv], 1).contiguous(), empty(), empty())
            };
            layers.push(Layer {
                wqkv,
                wq,
                wkv,
                wo: to_dev(&get("attn.o")?.1, d, d),
                wgu: Tensor::cat(
                    &[
                        to_dev(&get("ffn.gate")?.1, d, f),
                        to_dev(&get("ffn.up")?.1, d, f),
                    ],
                    1,
                )
                .contiguous(),
                wdown: to_dev(&get("ffn.down")?.1, f, d),
            });
        }
        let out_spec = all
            .last()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no tensors"))?;
        ensure!(out_spec.name == "out", "last tensor must be out");
        let w = generate_tensor(seed, &out_spec);
        let (d, od) = (out_spec.rows, out_spec.cols);
        let out = to_dev(&w, d, od);
        let (c, s) = rope_tables(cfg.seq_len, cfg.head_dim());
        let ss: Vec<f64> = s
            .iter()
            .enumerate()
            .map(|(i, &v)| if i % hd < hd / 2 { -v } else { v })
            .collect();
        let rt = |v: Vec<f64>| {
            Tensor::from_slice(&v)
                .reshape([cfg.seq_len as i64, cfg.head_dim() as i64])
                .to_kind(Kind::Float)
                .to_device(dev.device)
                .to_kind(dev.kind)
        };
        let t = target(seed, cfg.out_dim);
        let tt = Tensor::from_slice(&t).to_kind(Kind::Double);
        let target_n = (&tt / tt.norm()).to_device(dev.device);
        let rope_complex = if interleaved_rope {
            let half = (hd / 2) as i64;
            let cos_h = Tensor::from_slice(&c)
                .reshape([cfg.seq_len as i64, hd as i64])
                .narrow(1, 0, half);
            let sin_h = Tensor::from_slice(&s)
                .reshape([cfg.seq_len as i64, hd as i64])
                .narrow(1, 0, half);
            let z = Tensor::complex(&cos_h.to_kind(Kind::Float), &sin_h.to_kind(Kind::Float));
            Some(z.to_device(dev.device))
        } else {
            None
        };
        Ok(SprintModel {
            cfg,
            dev,
            layers,
            out,
            cos: rt(c),
            sin: rt(s),
            sin_signed: rt(ss),
            rope_complex,
            target_n,
        })
    }

    fn rms(x: &Tensor, dim: i64) -> Tensor {
        x.rms_norm([dim], None::<Tensor>, RMS_EPS)
    }

    /// RMSNorm with two memory passes: a fused L2-norm reduction (accumulated
    /// and returned in f32) and one multiply.
    fn rms_fast(x: &Tensor, dim: i64) -> Tensor {
        let n = x.norm_scalaropt_dim_dtype(2, [-1i64].as_slice(), true, Kind::Float);
        let r = (n.square() / dim as f64 + RMS_EPS)
            .rsqrt()
            .to_kind(x.kind());
        x * r
    }

    /// RoPE over the last dimension of `x` (`[..., S, H, hd]`-broadcastable
    /// with `pos`: rows of the tables to use, shaped like `cos`). Complex
    /// multiply in the interleaved layout, else the roll-based form.
    fn rope_any(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        zc: Option<&Tensor>,
        half: i64,
    ) -> Tensor {
        match zc {
            Some(z) => {
                let xc = x.unflatten(-1, [half, 2]).view_as_complex();
                (xc * z).view_as_real().flatten(-2, -1)
            }
            None => Self::rope_fast(x, cos, sin, half),
        }
    }

    /// Rotary embedding as `x·cos + roll(x, half)·sin_signed` (identical to
    /// `x·cos + rotate_half(x)·sin`): three passes instead of five.
    fn rope_fast(x: &Tensor, cos: &Tensor, sin_signed: &Tensor, half: i64) -> Tensor {
        let rolled = x.roll([half].as_slice(), [-1i64].as_slice());
        let mut out = x * cos;
        let _ = out.addcmul_(&rolled, sin_signed);
        out
    }

    /// Forward pass of a batch `x: [B, seq, dim]` (compute dtype, on the
    /// device). Returns the output projection at the last position, `[B, out_dim]`.
    ///
    /// Memory-traffic optimisations over [`SprintModel::forward_last_reference`]:
    /// residual adds fused into the matmul (`addmm_`, `C += A·B`), SiLU and
    /// the gate⊙up product in place, RoPE on q and k together in three passes,
    /// RMSNorm in two passes.
    pub fn forward_last(&self, x: &Tensor) -> Tensor {
        let c = &self.cfg;
        let (s, d, h, hd, f) = (
            c.seq_len as i64,
            c.dim as i64,
            c.heads as i64,
            c.head_dim() as i64,
            c.ffn_dim as i64,
        );
        let b = x.size()[0];
        let half = hd / 2;
        let scale = 1.0 / (hd as f64).sqrt();
        let cos = self.cos.reshape([s, 1, 1, hd]);
        let sin = self.sin_signed.reshape([s, 1, 1, hd]);
        // [S, 1, 1, half] complex table broadcasting like cos/sin.
        let zc = self
            .rope_complex
            .as_ref()
            .map(|z| z.reshape([s, 1, 1, half]));
        let mut hcur = x.reshape([b * s, d]).contiguous();
        let nl = self.layers.len();
        for (i, l) in self.layers.iter().enumerate() {
            let xn = Self::rms_fast(&hcur, d);
            if i + 1 < nl {
                let qkv = xn.matmul(&l.wqkv).reshape([b, s, 3, h, hd]);
                let qk = self.rope_any(&qkv.narrow(2, 0, 2), &cos, &sin, zc.as_ref(), half);
                let q = qk.select(2, 0).transpose(1, 2);
                let k = qk.select(2, 1).transpose(1, 2);
                let v = qkv.select(2, 2).transpose(1, 2);
                let a = Tensor::scaled_dot_product_attention(
                    &q,
                    &k,
                    &v,
                    None::<Tensor>,
                    0.0,
                    true,
                    scale,
                    false,
                );
                let a = a.transpose(1, 2).reshape([b * s, d]);
                let _ = hcur.addmm_(&a, &l.wo);
                let hn = Self::rms_fast(&hcur, d);
                let gu = hn.matmul(&l.wgu);
                let mut g = gu.narrow(1, 0, f);
                let _ = g.silu_();
                let _ = g.g_mul_(&gu.narrow(1, f, f));
                let _ = hcur.addmm_(&g, &l.wdown);
            } else {
                // Last layer: k, v over all positions; everything else at the
                // last position only.
                let kv = xn.matmul(&l.wkv).reshape([b, s, 2, h, hd]);
                let zk = zc.as_ref().map(|z| z.squeeze_dim(1));
                let k = self
                    .rope_any(
                        &kv.select(2, 0),
                        &cos.squeeze_dim(1),
                        &sin.squeeze_dim(1),
                        zk.as_ref(),
                        half,
                    )
                    .transpose(1, 2);
                let v = kv.select(2, 1).transpose(1, 2);
                let xn_last = xn.reshape([b, s, d]).select(1, s - 1);
                let q = xn_last.matmul(&l.wq).reshape([b, 1, h, hd]);
                let zq = zc.as_ref().map(|z| z.narrow(0, s - 1, 1).squeeze_dim(1));
                let q = self
                    .rope_any(
                        &q,
                        &cos.narrow(0, s - 1, 1).squeeze_dim(1),
                        &sin.narrow(0, s - 1, 1).squeeze_dim(1),
                        zq.as_ref(),
                        half,
                    )
                    .transpose(1, 2);
                // The last position attends to every position: no mask.
                let a = Tensor::scaled_dot_product_attention(
                    &q,
                    &k,
                    &v,
                    None::<Tensor>,
                    0.0,
                    false,
                    scale,
                    false,
                );
                let a = a.reshape([b, d]);
                let mut h2 = hcur.reshape([b, s, d]).select(1, s - 1).contiguous();
                let _ = h2.addmm_(&a, &l.wo);
                let hn = Self::rms_fast(&h2, d);
                let gu = hn.matmul(&l.wgu);
                let mut g = gu.narrow(1, 0, f);
                let _ = g.silu_();
                let _ = g.g_mul_(&gu.narrow(1, f, f));
                let _ = h2.addmm_(&g, &l.wdown);
                hcur = h2;
            }
        }
        let last = if nl == 0 {
            hcur.reshape([b, s, d]).select(1, s - 1)
        } else {
            hcur
        };
        Self::rms_fast(&last, d).matmul(&self.out)
    }

    /// `x·cos + rotate_half(x)·sin` over the last dimension.
    fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, half: i64) -> Tensor {
        let x1 = x.narrow(-1, 0, half);
        let x2 = x.narrow(-1, half, half);
        let rot = Tensor::cat(&[x2.neg(), x1], -1);
        x * cos + rot * sin
    }

    /// Straightforward forward pass (one op per formula of SPEC §4, fresh
    /// tensors everywhere). Kept as an in-crate reference that tests compare
    /// the optimised [`SprintModel::forward_last`] with.
    ///
    /// Needs the spec's rotate-half head layout (a model built with
    /// `interleaved_rope = false`).
    pub fn forward_last_reference(&self, x: &Tensor) -> Tensor {
        assert!(
            self.rope_complex.is_none(),
            "reference forward needs the rotate-half layout"
        );
        let c = &self.cfg;
        let (s, d, h, hd) = (
            c.seq_len as i64,
            c.dim as i64,
            c.heads as i64,
            c.head_dim() as i64,
        );
        let b = x.size()[0];
        let half = hd / 2;
        let scale = 1.0 / (hd as f64).sqrt();
        // [S, 1, hd] broadcasts over [B, S, H, hd]
        let cos = self.cos.reshape([s, 1, hd]);
        let sin = self.sin.reshape([s, 1, hd]);
        let mut hcur = x.reshape([b * s, d]);
        let nl = self.layers.len();
        for (i, l) in self.layers.iter().enumerate() {
            if i + 1 < nl {
                let xn = Self::rms(&hcur, d);
                let qkv = xn.matmul(&l.wqkv).reshape([b, s, 3, h, hd]);
                let q = Self::rope(&qkv.select(2, 0), &cos, &sin, half).transpose(1, 2);
                let k = Self::rope(&qkv.select(2, 1), &cos, &sin, half).transpose(1, 2);
                let v = qkv.select(2, 2).transpose(1, 2);
                let a = Tensor::scaled_dot_product_attention(
                    &q,
                    &k,
                    &v,
                    None::<Tensor>,
                    0.0,
                    true,
                    scale,
                    false,
                );
                let a = a.transpose(1, 2).reshape([b * s, d]);
                hcur += a.matmul(&l.wo);
                let hn = Self::rms(&hcur, d);
                let gu = hn.matmul(&l.wgu);
                let f = c.ffn_dim as i64;
                let g = gu.narrow(1, 0, f);
                let u = gu.narrow(1, f, f);
                hcur += (g.silu() * u).matmul(&l.wdown);
            } else {
                // Last layer: k, v over all positions; everything else at the
                // last position only.
                let xn = Self::rms(&hcur, d);
                let kv = xn.matmul(&l.wkv).reshape([b, s, 2, h, hd]);
                let k = Self::rope(&kv.select(2, 0), &cos, &sin, half).transpose(1, 2);
                let v = kv.select(2, 1).transpose(1, 2);
                let h_last = hcur.reshape([b, s, d]).select(1, s - 1); // [B, D]
                let xn_last = xn.reshape([b, s, d]).select(1, s - 1);
                let q = xn_last.matmul(&l.wq).reshape([b, 1, h, hd]);
                let q = Self::rope(&q, &cos.narrow(0, s - 1, 1), &sin.narrow(0, s - 1, 1), half)
                    .transpose(1, 2);
                // The last position attends to every position: no mask.
                let a = Tensor::scaled_dot_product_attention(
                    &q,
                    &k,
                    &v,
                    None::<Tensor>,
                    0.0,
                    false,
                    scale,
                    false,
                );
                let a = a.reshape([b, d]);
                let h2 = h_last + a.matmul(&l.wo);
                let hn = Self::rms(&h2, d);
                let gu = hn.matmul(&l.wgu);
                let f = c.ffn_dim as i64;
                let g = gu.narrow(1, 0, f);
                let u = gu.narrow(1, f, f);
                hcur = h2 + (g.silu() * u).matmul(&l.wdown);
            }
        }
        let last = if nl == 0 {
            hcur.reshape([b, s, d]).select(1, s - 1)
        } else {
            hcur
        };
        Self::rms(&last, d).matmul(&self.out)
    }

    /// Distances of a batch: `y: [B, out]` last-position outputs and `perm:
    /// [B, out]` int64 gather indices (on the device). Returns `[B]` f64.
    pub fn distances_from_outputs(&self, y: &Tensor, perm: &Tensor) -> Tensor {
        let y = y.to_kind(Kind::Double).gather(1, perm, false);
        let n = y
            .square()
            .sum_dim_intlist([1i64].as_slice(), true, Kind::Double)
            .sqrt();
        let yn = y / n;
        (yn - self.target_n.unsqueeze(0))
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
            .sqrt()
    }

    /// Weight tensor count on the device (for diagnostics).
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }
}

/// Matmul FLOPs per nonce that this engine actually performs (projections,
/// attention scores and values with the causal half only, last-position
/// pruning in the last layer, `out` at one position). Elementwise work is not
/// counted: this is the "useful" work compared with dense matmul throughput.
pub fn flops_per_nonce(c: &ModelConfig) -> f64 {
    let (s, d, f, o) = (
        c.seq_len as f64,
        c.dim as f64,
        c.ffn_dim as f64,
        c.out_dim as f64,
    );
    let causal_pairs = s * (s + 1.0) / 2.0;
    let full_layer = 2.0 * s * d * 3.0 * d
        + 2.0 * s * d * d
        + 2.0 * s * d * 2.0 * f
        + 2.0 * s * f * d
        + 2.0 * 2.0 * causal_pairs * d;
    let last_layer =
        2.0 * s * d * 2.0 * d + 2.0 * d * d + 2.0 * 2.0 * s * d + 2.0 * d * d + 2.0 * d * 3.0 * f;
    let layers = c.layers as f64;
    (layers - 1.0).max(0.0) * full_layer + if c.layers > 0 { last_layer } else { 0.0 } + 2.0 * d * o
}

/// Matmul FLOPs per nonce of the unpruned model (every position through every
/// layer, `out` at one position) — the nominal work SPEC §4 describes.
pub fn nominal_flops_per_nonce(c: &ModelConfig) -> f64 {
    let (s, d, f, o) = (
        c.seq_len as f64,
        c.dim as f64,
        c.ffn_dim as f64,
        c.out_dim as f64,
    );
    let causal_pairs = s * (s + 1.0) / 2.0;
    let full_layer = 2.0 * s * d * 4.0 * d + 2.0 * s * d * 3.0 * f + 2.0 * 2.0 * causal_pairs * d;
    c.layers as f64 * full_layer + 2.0 * d * o
}
