//! Attention of one new token per sequence against its own KV cache, on the
//! CPU in f32, for decode steps.
//!
//! With torch, a batch of decodes first copies every sequence's cache into
//! one stacked tensor (`[batch, kv heads, longest, head dim]`, ~1.7 MB per
//! layer at 8 sequences of 136 tokens), masks the shorter ones, and runs
//! eight more small ops per layer — on a CPU decode step that was most of
//! what the products on quantized blocks left. Here each (sequence, head)
//! reads its cache where it lies, for its own length only: scores
//! `q · k_t` then `× 1/√d` (as torch: product, then scale), softmax
//! `exp(s − max) / Σ`, and `Σ p_t v_t`. The same mathematics as the torch
//! path up to float rounding; pairs are split over the threads of
//! [`crate::quant::pool`].

use crate::quant::{pool, SharedOut};

/// One sequence's cache for one layer: `k` and `v` are `[kv_heads,
/// capacity, head_dim]` row-major, positions `0..len` filled.
#[derive(Clone, Copy)]
pub struct CacheView<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub capacity: usize,
    pub len: usize,
}

/// Shapes of one call.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// `out[i, h] = softmax(q[i, h] · K_iᵀ / √d) · V_i` for query rows `q`
/// `[caches.len(), heads, head_dim]`; returns `[caches.len(), heads *
/// head_dim]`. Query head `h` reads kv head `h / (heads / kv_heads)` (as
/// `repeat_kv`). `None` when the shapes do not fit together.
pub fn attend(q: &[f32], caches: &[CacheView], shape: Heads, threads: usize) -> Option<Vec<f32>> {
    let Heads {
        heads,
        kv_heads,
        head_dim,
    } = shape;
    if kv_heads == 0 || head_dim == 0 || heads % kv_heads != 0 {
        return None;
    }
    if q.len() != caches.len() * heads * head_dim {
        return None;
    }
    for c in caches {
        let size = kv_heads * c.capacity * head_dim;
        if c.len == 0 || c.len > c.capacity || c.k.len() < size || c.v.len() < size {
            return None;
        }
    }
    let group = heads / kv_heads;
    let scale = (1.0 / (head_dim as f64).sqrt()) as f32;
    let mut out = vec![0f32; q.len()];
    let out_ptr = SharedOut(out.as_mut_ptr());
    let part = |pair: usize| {
        let (i, h) = (pair / heads, pair % heads);
        let c = &caches[i];
        let base = (h / group) * c.capacity * head_dim;
        let keys = &c.k[base..base + c.len * head_dim];
        let values = &c.v[base..base + c.len * head_dim];
        let query = &q[pair * head_dim..(pair + 1) * head_dim];
        // SAFETY: pair `pair` writes only its own `head_dim` values of
        // `out`, which outlives `pool::run`.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(pair * head_dim), head_dim) };
        one_head(query, keys, values, head_dim, scale, dst);
    };
    let pairs = caches.len() * heads;
    if threads > 1 {
        pool::run(pairs, threads, &part);
    } else {
        (0..pairs).for_each(part);
    }
    Some(out)
}

fn one_head(q: &[f32], keys: &[f32], values: &[f32], d: usize, scale: f32, out: &mut [f32]) {
    let len = keys.len() / d;
    let mut scores: Vec<f32> = Vec::with_capacity(len);
    #[cfg(target_arch = "x86_64")]
    let simd = d.is_multiple_of(8) && crate::quant::has_avx2_fma();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    for t in 0..len {
        let k = &keys[t * d..(t + 1) * d];
        let dot = if simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA checked; both slices hold `d`, a multiple of 8.
            unsafe {
                avx2::dot(q, k)
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!()
        } else {
            q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>()
        };
        scores.push(dot * scale);
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in &mut scores {
        *s = (*s - max).exp();
        sum += *s;
    }
    for s in &mut scores {
        *s /= sum;
    }
    if simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; `values` holds `len × d`, `out` holds `d`.
        unsafe {
            avx2::weighted_sum(&scores, values, out)
        }
        return;
    }
    out.fill(0.0);
    for (t, &p) in scores.iter().enumerate() {
        let v = &values[t * d..(t + 1) * d];
        for (o, &x) in out.iter_mut().zip(v) {
            *o += p * x;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `a · b` for slices of the same length, a multiple of 8.
    ///
    /// # Safety
    /// AVX2 and FMA present; `b.len() >= a.len()`; `a.len() % 8 == 0`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 2];
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut i = 0;
        while i < a.len() {
            let l = (i / 8) % 2;
            acc[l] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[l],
            );
            i += 8;
        }
        let v = _mm256_add_ps(acc[0], acc[1]);
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }

    /// `out = Σ_t p[t] · v[t]` for the rows `v[t]` (`out.len()` values each)
    /// of `values`, each element summed in ascending `t` from zero with
    /// FMAs. Up to 32 columns at a time stay in registers across all rows
    /// (a load and a store of `out` per row cost as much as the FMA).
    ///
    /// # Safety
    /// AVX2 and FMA present; `out.len() % 8 == 0`; `values` holds
    /// `p.len() × out.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn weighted_sum(p: &[f32], values: &[f32], out: &mut [f32]) {
        let d = out.len();
        let mut c0 = 0;
        while c0 < d {
            let at = values.as_ptr().add(c0);
            let dst = out.as_mut_ptr().add(c0);
            c0 += match (d - c0) / 8 {
                1 => columns::<1>(p, at, d, dst),
                2 => columns::<2>(p, at, d, dst),
                3 => columns::<3>(p, at, d, dst),
                _ => columns::<4>(p, at, d, dst),
            };
        }
    }

    /// `8 × W` columns of [`weighted_sum`] starting at `src` (row stride
    /// `d`) into `dst`; returns how many columns.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn columns<const W: usize>(
        p: &[f32],
        src: *const f32,
        d: usize,
        dst: *mut f32,
    ) -> usize {
        let mut acc = [_mm256_setzero_ps(); W];
        for (t, &pt) in p.iter().enumerate() {
            let pv = _mm256_set1_ps(pt);
            let row = src.add(t * d);
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(pv, _mm256_loadu_ps(row.add(8 * j)), *a);
            }
        }
        for (j, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(dst.add(8 * j), *a);
        }
        8 * W
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The textbook formula in f64.
    fn reference(q: &[f32], c: &CacheView, shape: Heads, i: usize, h: usize) -> Vec<f64> {
        let d = shape.head_dim;
        let kv = h / (shape.heads / shape.kv_heads);
        let base = kv * c.capacity * d;
        let qv = &q[(i * shape.heads + h) * d..][..d];
        let scores: Vec<f64> = (0..c.len)
            .map(|t| {
                (0..d)
                    .map(|j| qv[j] as f64 * c.k[base + t * d + j] as f64)
                    .sum::<f64>()
                    / (d as f64).sqrt()
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        (0..d)
            .map(|j| {
                (0..c.len)
                    .map(|t| e[t] / sum * c.v[base + t * d + j] as f64)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn each_sequence_attends_to_its_own_length_of_its_own_cache() {
        let shape = Heads {
            heads: 6,
            kv_heads: 2,
            head_dim: 16,
        };
        let capacity = 12;
        let lens = [1usize, 7, 12];
        let store: Vec<(Vec<f32>, Vec<f32>)> = (0..lens.len())
            .map(|i| {
                let n = shape.kv_heads * capacity * shape.head_dim;
                (values(n, 10 + i as u32), values(n, 20 + i as u32))
            })
            .collect();
        fn views<'a>(
            store: &'a [(Vec<f32>, Vec<f32>)],
            lens: &[usize],
            capacity: usize,
        ) -> Vec<CacheView<'a>> {
            store
                .iter()
                .zip(lens)
                .map(|((k, v), &len)| CacheView {
                    k,
                    v,
                    capacity,
                    len,
                })
                .collect()
        }
        let caches = views(&store, &lens, capacity);
        let q = values(lens.len() * shape.heads * shape.head_dim, 3);
        for threads in [1, 2] {
            let out = attend(&q, &caches, shape, threads).unwrap();
            for (i, c) in caches.iter().enumerate() {
                for h in 0..shape.heads {
                    let want = reference(&q, c, shape, i, h);
                    let got = &out[(i * shape.heads + h) * shape.head_dim..][..shape.head_dim];
                    for (g, w) in got.iter().zip(&want) {
                        assert!((*g as f64 - w).abs() < 1e-5, "seq {i} head {h}: {g} vs {w}");
                    }
                }
            }
        }
        // Garbage past a sequence's length is never read: change it, same result.
        let mut changed = store.clone();
        for x in changed[1]
            .0
            .iter_mut()
            .skip(7 * shape.head_dim)
            .take(shape.head_dim)
        {
            *x = 1e30;
        }
        assert_eq!(
            attend(&q, &views(&changed, &lens, capacity), shape, 1),
            attend(&q, &caches, shape, 1)
        );
        // Shapes that do not fit are refused.
        assert!(attend(&q[1..], &caches, shape, 1).is_none());
        let bad = Heads {
            kv_heads: 4,
            ..shape
        };
        assert!(attend(&q, &caches, bad, 1).is_none());
        let empty = CacheView {
            len: 0,
            ..caches[0]
        };
        assert!(attend(&q[..shape.heads * shape.head_dim], &[empty], shape, 1).is_none());
    }
}
