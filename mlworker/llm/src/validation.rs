//! Inference validation (SPEC §5): the executor's per-position record, the
//! distance between it and a validator's replay, the threshold and the
//! verdict; and substitute models for testing that the threshold works.
//!
//! **The payload.** For every generated position the executor keeps an
//! [`ExecutorPosition`]: the token it emitted, that token's logprob under its
//! model (untempered `log_softmax` of the logits) and the model's top-k
//! alternatives (k = [`PAYLOAD_TOP_K`] = 5, best first). The validator runs
//! [`LlamaModel::replay_logprobs`] on prompt + response (one prefill,
//! teacher forcing) and compares.
//!
//! **The distance.** Let position `i` of the record have the emitted token
//! `t_i` with logprob `a(t_i)` and alternatives `T_i` with logprobs `a(t)`;
//! let the replay at `i` give the exact logprob `b(t_i)` of the emitted
//! token and its own top-k. The compared set is `S_i = T_i ∪ {t_i}`. For
//! `t` in `S_i` other than `t_i`, `b(t)` is the replay's logprob of `t` when
//! `t` is in the replay's top-k, otherwise the replay's k-th (smallest)
//! top logprob — an upper bound on `t`'s true replay logprob, so a token
//! missing from the replay's top-k is charged the *least* it can be
//! (lenient: it never penalises an honest executor for the replay's
//! truncation). Then
//!
//! ```text
//! d_i      = Σ_{t∈S_i} |a(t) − b(t)|  /  max(Σ_{t∈S_i} (|a(t)| + |b(t)|), DENOMINATOR_FLOOR)
//! distance = (1/n) Σ_i d_i                       (n = number of response positions)
//! score    = 1 − distance                        (SPEC §5's validation score)
//! ```
//!
//! Each `d_i` is in `[0, 1]` (`|a − b| ≤ |a| + |b|`), so the distance is too.
//! This is Gonka's per-token normalised difference `|a − b| / (|a| + |b|)`
//! pooled over the position's tokens before dividing: Gonka divides token
//! by token, and a token the model is sure of (logprob ≈ −1e-5) then turns
//! a harmless rounding difference of 1e-5 into a ratio near 1. Pooling
//! weights each token by its magnitude, so a position's ratio is driven by
//! the alternatives (logprobs of several nats) whose values a different
//! model changes; [`DENOMINATOR_FLOOR`] only guards the degenerate
//! all-zero case.
//!
//! **The threshold.** `distance > THRESHOLD` flags the execution
//! ([`Verdict::Flagged`]); see [`THRESHOLD`] for the measured distributions
//! it sits between. Everything here is deterministic (plain `f64`
//! arithmetic in a fixed order) and returns [`ValidationError`] on a
//! malformed record instead of panicking.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::model::{LlamaModel, ModelError, PositionLogprobs};

/// Alternatives per position kept in the payload (SPEC §5: k = 5).
pub const PAYLOAD_TOP_K: usize = 5;

/// Most alternatives a record may carry per position (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_K: usize = 20;

/// Guards `d_i`'s denominator (nats) when every compared logprob is ~0.
pub const DENOMINATOR_FLOOR: f64 = 1e-3;

/// Distances above this flag the execution (score below 0.995).
///
/// Measured on SmolLM2-135M (Q4_1 GGUF, CPU, `tests/replay_validation.rs`:
/// sampled executions of ≤ 8 tokens on 20 prompts, the executor decoding 25
/// sequences per pass, the validator replaying each alone with one prefill):
///
/// | executor → validator                         | n   | min     | median  | p99     | max     |
/// |----------------------------------------------|-----|---------|---------|---------|---------|
/// | honest f32 → f32                             | 200 | 3.2e-7  | 6.4e-7  | 1.2e-6  | 1.4e-6  |
/// | weights × (1 + 0.01·N(0,1)) f32 → honest f32 | 100 | 1.05e-2 | 2.2e-2  | 3.8e-2  | 5.8e-2  |
/// | requantized Q4_1 → Q4_0 f32 → honest f32     | 100 | 5.6e-2  | 1.26e-1 | 1.84e-1 | 1.84e-1 |
/// | honest bf16 → bf16                           | 40  | 0       | 0       | 1.1e-2  | 1.1e-2  |
/// | honest bf16 → f32                            | 40  | 5.6e-3  | 8.3e-3  | 1.4e-2  | 1.4e-2  |
///
/// 0.005 sits ~3500× above the honest f32 maximum (batch-composition and
/// kernel noise) and 2× below the nearest substitute (1% noise, min 0.0105):
/// both substitutes are flagged on every replay. SPEC §5's default
/// `validation_threshold` 0.98 (distance 0.02) would let 38% of the 1%
/// substitute's executions through (124/200 flagged, measured).
///
/// **Precision.** bf16 rounding is itself a ~0.4% perturbation of every
/// weight and activation, and it shows: bf16 work replayed in f32, and even
/// 2 of 40 bf16 replays in bf16, land in the 1% substitute's range. So this
/// threshold holds when executor and validator both compute in f32; a model
/// served in bf16 needs its own threshold (and longer replays, which average
/// the sporadic bf16 outliers down) calibrated on that hardware — a 1%
/// perturbation cannot be told from bf16 noise in 8 tokens.
pub const THRESHOLD: f64 = 0.005;

/// One generated position as the executor records it.
pub type ExecutorPosition = PositionLogprobs;

/// Why a record cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("the record has no positions")]
    Empty,
    #[error("the record has {record} positions, the replay {replay}")]
    LengthMismatch { record: usize, replay: usize },
    #[error("position {position}: the record's token is {record}, the replay's {replay}")]
    TokenMismatch {
        position: usize,
        record: u32,
        replay: u32,
    },
    #[error("position {position}: logprob {value} is not a finite number ≤ 0")]
    BadLogprob { position: usize, value: f32 },
    #[error("position {position}: {count} alternatives (at most {MAX_TOP_K})")]
    TooManyAlternatives { position: usize, count: usize },
    #[error("position {position}: token {token} is listed twice")]
    DuplicateToken { position: usize, token: u32 },
    #[error("position {position}: the replay has no top logprobs")]
    EmptyReplay { position: usize },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Whether a replay accepts an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `distance ≤ THRESHOLD`.
    Accepted,
    /// `distance > THRESHOLD`: the validator reports a score below the
    /// threshold, which opens a dispute (SPEC §5).
    Flagged,
}

/// A validator's result for one execution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Validation {
    pub distance: f64,
    /// `1 − distance`.
    pub score: f64,
    pub verdict: Verdict,
}

/// The verdict for a distance (see [`THRESHOLD`]).
pub fn verdict(distance: f64) -> Verdict {
    if distance <= THRESHOLD {
        Verdict::Accepted
    } else {
        Verdict::Flagged
    }
}

fn checked_logprob(position: usize, value: f32) -> Result<f64, ValidationError> {
    // A logprob may round a hair above 0 for a token of probability ~1.
    if value.is_finite() && value <= 1e-4 {
        Ok(f64::from(value.min(0.0)))
    } else {
        Err(ValidationError::BadLogprob { position, value })
    }
}

/// The distance of the module doc between the executor's `record` and the
/// validator's `replay` of the same response (same length, same tokens).
pub fn replay_distance(
    record: &[ExecutorPosition],
    replay: &[PositionLogprobs],
) -> Result<f64, ValidationError> {
    if record.is_empty() {
        return Err(ValidationError::Empty);
    }
    if record.len() != replay.len() {
        return Err(ValidationError::LengthMismatch {
            record: record.len(),
            replay: replay.len(),
        });
    }
    let mut sum = 0f64;
    for (position, (rec, rep)) in record.iter().zip(replay).enumerate() {
        if rec.token != rep.token {
            return Err(ValidationError::TokenMismatch {
                position,
                record: rec.token,
                replay: rep.token,
            });
        }
        if rec.top.len() > MAX_TOP_K {
            return Err(ValidationError::TooManyAlternatives {
                position,
                count: rec.top.len(),
            });
        }
        // The replay's top-k by token, and its smallest value (the bound for
        // tokens outside it).
        let mut replay_top = BTreeMap::new();
        let mut replay_floor = f64::INFINITY;
        for alt in &rep.top {
            let lp = checked_logprob(position, alt.logprob)?;
            replay_top.insert(alt.token, lp);
            replay_floor = replay_floor.min(lp);
        }
        if replay_top.is_empty() {
            return Err(ValidationError::EmptyReplay { position });
        }
        // S_i: the alternatives, then the emitted token when not among them.
        let mut compared: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
        for alt in &rec.top {
            let a = checked_logprob(position, alt.logprob)?;
            let b = replay_top.get(&alt.token).copied().unwrap_or(replay_floor);
            if compared.insert(alt.token, (a, b)).is_some() {
                return Err(ValidationError::DuplicateToken {
                    position,
                    token: alt.token,
                });
            }
        }
        let a = checked_logprob(position, rec.logprob)?;
        let b = checked_logprob(position, rep.logprob)?;
        // The emitted token's exact replay logprob replaces any bound.
        compared.insert(rec.token, (a, b));
        let (mut diff, mut magnitude) = (0f64, 0f64);
        for (a, b) in compared.values() {
            diff += (a - b).abs();
            magnitude += a.abs() + b.abs();
        }
        sum += diff / magnitude.max(DENOMINATOR_FLOOR);
    }
    Ok(sum / record.len() as f64)
}

/// Replays `prompt ++ record's tokens` on `model` (one prefill) and scores
/// the record against it.
pub fn validate(
    model: &LlamaModel,
    prompt: &[u32],
    record: &[ExecutorPosition],
) -> Result<Validation, ValidationError> {
    if record.is_empty() {
        return Err(ValidationError::Empty);
    }
    let response: Vec<u32> = record.iter().map(|p| p.token).collect();
    let replay = model.replay_logprobs(prompt, &response, PAYLOAD_TOP_K)?;
    let distance = replay_distance(record, &replay)?;
    Ok(Validation {
        distance,
        score: 1.0 - distance,
        verdict: verdict(distance),
    })
}

/// Weight transforms (for [`LlamaModel::load_with`]) that build the
/// substitutes a validator must catch: the same model slightly changed.
pub mod substitute {
    use super::*;

    /// `w · (1 + relative · N(0, 1))` elementwise, the noise seeded by
    /// `seed` and the tensor's name (so it does not depend on load order).
    pub fn perturb(seed: u64, relative: f64) -> impl Fn(&str, Tensor) -> Tensor {
        move |name, w| {
            let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
            for byte in name.bytes() {
                h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
            tch::manual_seed((h >> 1) as i64);
            let noise = Tensor::randn(w.size(), (Kind::Float, w.device()));
            &w * (noise * relative + 1.0)
        }
    }

    /// Requantizes every matrix (2-D weight) with ggml's symmetric
    /// `Q4_0`-style rounding at `bits` bits per weight (4 is Q4_0; 3 is
    /// coarser): per block of 32 along a row, `d = m / −2^(bits−1)` where `m`
    /// is the block's value of largest magnitude, `q = min(2^bits − 1,
    /// ⌊x/d + 2^(bits−1) + 0.5⌋)`, `x' = (q − 2^(bits−1)) · d`. Norm vectors
    /// and matrices whose rows are not a multiple of 32 stay as they are.
    pub fn requantize(bits: u32) -> impl Fn(&str, Tensor) -> Tensor {
        move |_, w| {
            let size = w.size();
            if size.len() != 2 || size[1] % 32 != 0 {
                return w;
            }
            let half = f64::from(1u32 << (bits - 1));
            let top = f64::from((1u32 << bits) - 1);
            let blocks = w.reshape([-1, 32]);
            let at_max = blocks.abs().argmax(1, true);
            let m = blocks.gather(1, &at_max, false);
            let d = &m / -half;
            let inv = d.reciprocal().nan_to_num(0.0, 0.0, 0.0);
            let q = (&blocks * inv + (half + 0.5)).floor().clamp(0.0, top);
            ((q - half) * d).reshape(size.as_slice())
        }
    }
}

/// The executor's record of one position from its logits (`[vocab]`) and the
/// emitted token: what [`LlamaModel::generate_greedy`] and the serving engine
/// keep, for callers that sample themselves.
pub fn record_position(logits: &Tensor, token: u32) -> Result<ExecutorPosition, ValidationError> {
    let mut rows = crate::model::logprobs_of(logits, PAYLOAD_TOP_K, Some(&[token]))?;
    rows.pop().ok_or(ValidationError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TokenLogprob;

    fn pos(token: u32, logprob: f32, top: &[(u32, f32)]) -> PositionLogprobs {
        PositionLogprobs {
            token,
            logprob,
            top: top
                .iter()
                .map(|&(token, logprob)| TokenLogprob { token, logprob })
                .collect(),
        }
    }

    #[test]
    fn identical_records_are_at_distance_zero() {
        let p = pos(1, -0.5, &[(1, -0.5), (2, -1.5), (3, -2.0)]);
        assert_eq!(
            replay_distance(std::slice::from_ref(&p), std::slice::from_ref(&p)).unwrap(),
            0.0
        );
    }

    #[test]
    fn the_distance_follows_its_definition() {
        // Token 3 is missing from the replay's top: bounded by its last, −3.
        let record = pos(9, -4.0, &[(1, -0.5), (2, -1.5), (3, -2.0)]);
        let replay = pos(9, -5.0, &[(1, -0.25), (2, -1.5), (4, -3.0)]);
        let diff = 0.25 + 0.0 + 1.0 + 1.0;
        let magnitude = 0.75 + 3.0 + 5.0 + 9.0;
        let d = replay_distance(&[record.clone(), record.clone()], &[replay, record]).unwrap();
        assert!((d - diff / magnitude / 2.0).abs() < 1e-12, "{d}");
    }

    #[test]
    fn malformed_records_are_errors() {
        let ok = pos(1, -0.1, &[(1, -0.1)]);
        assert!(matches!(
            replay_distance(&[], &[]),
            Err(ValidationError::Empty)
        ));
        assert!(matches!(
            replay_distance(std::slice::from_ref(&ok), &[]),
            Err(ValidationError::LengthMismatch { .. })
        ));
        assert!(matches!(
            replay_distance(&[pos(2, -0.1, &[])], std::slice::from_ref(&ok)),
            Err(ValidationError::TokenMismatch { .. })
        ));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5] {
            assert!(matches!(
                replay_distance(&[pos(1, bad, &[])], std::slice::from_ref(&ok)),
                Err(ValidationError::BadLogprob { .. })
            ));
        }
        assert!(matches!(
            replay_distance(
                &[pos(1, -0.1, &[(5, -1.0), (5, -1.0)])],
                std::slice::from_ref(&ok)
            ),
            Err(ValidationError::DuplicateToken { .. })
        ));
        let many: Vec<(u32, f32)> = (0..21).map(|t| (t, -1.0)).collect();
        assert!(matches!(
            replay_distance(&[pos(1, -0.1, &many)], std::slice::from_ref(&ok)),
            Err(ValidationError::TooManyAlternatives { .. })
        ));
        assert!(matches!(
            replay_distance(std::slice::from_ref(&ok), &[pos(1, -0.1, &[])]),
            Err(ValidationError::EmptyReplay { .. })
        ));
    }

    #[test]
    fn verdict_splits_at_the_threshold() {
        assert_eq!(verdict(0.0), Verdict::Accepted);
        assert_eq!(verdict(THRESHOLD), Verdict::Accepted);
        assert_eq!(verdict(THRESHOLD * 1.01), Verdict::Flagged);
        assert_eq!(verdict(f64::NAN), Verdict::Flagged);
    }

    #[test]
    fn requantizing_at_4_bits_is_q4_0() {
        // One block: largest magnitude −8 → d = 1, values round to integers.
        let mut v: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.26).collect();
        v[0] = -8.0;
        let w = Tensor::from_slice(&v).reshape([1, 32]);
        let q: Vec<f32> = Vec::try_from(substitute::requantize(4)("x", w).reshape([-1])).unwrap();
        for (x, y) in v.iter().zip(&q) {
            assert_eq!(*y, (x + 8.5).floor().min(15.0) - 8.0, "{x}");
        }
        let norm = Tensor::ones([32], (Kind::Float, tch::Device::Cpu));
        assert!(substitute::requantize(4)("n", norm.shallow_clone()).equal(&norm));
    }

    #[test]
    fn perturbation_is_seeded_and_relative() {
        let w = Tensor::ones([64, 64], (Kind::Float, tch::Device::Cpu));
        let a = substitute::perturb(7, 0.01)("blk.0.x", w.shallow_clone());
        let b = substitute::perturb(7, 0.01)("blk.0.x", w.shallow_clone());
        assert!(a.equal(&b));
        let std = (a - 1.0).std(true).double_value(&[]);
        assert!((std - 0.01).abs() < 0.001, "{std}");
    }
}
