//! Per-leaf mismatch rule and the one-sided binomial test (SPEC §4
//! "Validation").
//!
//! ## How the chain decides without floats
//! The verdict "p-value < alpha" for `m` mismatches among `k` opened leaves is
//! `P[X ≥ m] < alpha` with `X ~ Binomial(k, p0)`. With `p0 = a/den` and
//! `alpha = α_num/α_den` as exact rationals this is
//!
//! ```text
//!   Σ_{j=m..k} C(k,j) · a^j · (den−a)^(k−j) · α_den  <  α_num · den^k
//! ```
//!
//! which [`is_invalid`] evaluates exactly with arbitrary-precision integers
//! (a few thousand bits for k = 200; microseconds). Because the tail only
//! shrinks as `m` grows, the whole rule collapses to one integer, the
//! **critical mismatch count** `c(k, p0, alpha)` ([`critical_count`]): vote
//! `invalid` iff `m ≥ c`. The chain can compute it on demand, or cache a table
//! for `k = 0..=sprint_samples` ([`critical_table`]) whenever the parameters
//! change. Parameters are carried as rationals ([`Ratio`]), e.g. `p0 =
//! 5/10000`, `alpha = 1/10^7`, so governance values stay exact.
//!
//! The per-leaf mismatch rule is also integer-only ([`is_mismatch`]): the
//! validator converts its recomputed distance to millionths once
//! ([`distance_to_micro`], worker-side float) and compares integers with
//! `r_target`, `sprint_tolerance` and `share_slack`, all stored in
//! millionths. The tolerance bounds `|d − d_q|` (how far a claimed distance
//! may be from the recomputed one); the much smaller share slack bounds how
//! far above the share bound a recomputed distance may lie and still count
//! as a share, so a near-miss nonce cannot be passed off as a share. Shares
//! are defined by the f32 forward pass on every device, which is what lets
//! the slack be a few millionths (README "Protocol notes").
//!
//! [`p_value_f64`] is a float p-value for display by the worker only.

use num_bigint::BigUint;
use num_traits::{One, Zero};

/// An exact non-negative rational `num/den`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    pub num: u64,
    pub den: u64,
}

impl Ratio {
    pub const fn new(num: u64, den: u64) -> Self {
        Ratio { num, den }
    }
}

/// Default honest mismatch rate `p0 = 1e-4`.
///
/// SPEC §4 says 5e-4; Kiln uses 1e-4 (README "Protocol notes"). Measured: f32
/// vs bf16 recomputations differ by at most 8.3e-4 against a 2e-3 tolerance,
/// with 0 mismatches in 2 000 nonces, so 1e-4 is still conservative. At
/// `p0 = 5e-4, alpha = 1e-7, k = 200` the critical count is 5 and a prover
/// fabricating 5% of its shares is caught with only P[Bin(200, 0.05) ≥ 5] =
/// 97.4%; at `p0 = 1e-4` it is 4 and the catch rate is 99.1%, while an honest
/// host is flagged with probability < 1e-8 per opening.
pub const P0_DEFAULT: Ratio = Ratio::new(1, 10_000);
/// Default significance `alpha = 1e-7`.
pub const ALPHA_DEFAULT: Ratio = Ratio::new(1, 10_000_000);
/// Default `sprint_tolerance = 2e-3`, in millionths.
pub const TOLERANCE_MICRO_DEFAULT: u64 = 2_000;
/// Default `share_slack`, in millionths. Shares are defined by the f32
/// forward pass on every device (a bf16 prover rechecks its near-boundary
/// nonces in f32, validators recompute in f32), so the slack only has to
/// cover the disagreement between two f32 implementations: measured at most
/// 5.1e-8 (fused vs SPEC-layout f32 vs f64, devnet and deeper/wider models,
/// `mlworker/tests/f32_implementations_agree_far_inside_the_share_slack.rs`).
/// 5µ is 100× that and is worth ≈ 0.02% of the weight on devnet and ≈ 0.2%
/// on the mainnet-like preset (README "Protocol notes", near-miss shares).
pub const SHARE_SLACK_MICRO_DEFAULT: u64 = 5;

/// Bad test parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerdictError {
    #[error("p0 must be a probability with a non-zero denominator")]
    BadP0,
    #[error("alpha must have a non-zero denominator")]
    BadAlpha,
    #[error("mismatches ({m}) exceed opened leaves ({k})")]
    TooManyMismatches { m: u32, k: u32 },
}

fn check(p0: Ratio, alpha: Ratio) -> Result<(), VerdictError> {
    if p0.den == 0 || p0.num > p0.den {
        return Err(VerdictError::BadP0);
    }
    if alpha.den == 0 {
        return Err(VerdictError::BadAlpha);
    }
    Ok(())
}

#[cfg(feature = "float")]
/// Worker-side: a float distance in millionths, `floor(d·10^6 + 0.5)`
/// (saturating; NaN → u64::MAX, which always mismatches).
pub fn distance_to_micro(d: f64) -> u64 {
    let q = (d * 1e6 + 0.5).floor();
    if q.is_nan() || q >= u64::MAX as f64 {
        u64::MAX
    } else if q <= 0.0 {
        0
    } else {
        q as u64
    }
}

/// Where the share predicate ends, in millionths: a leaf claims a share when
/// its quantized distance `d_q = floor(d·10^4 + 0.5)` has `d_q·100 <
/// r_target` ([`crate::leaf::claims_share`]), i.e. exactly when `d <
/// share_bound(r_target) = 100·⌈r_target/100⌉ − 50` µ. Validators measure the
/// slack from here, not from `r_target`: the up-to-100µ gap between the two
/// would otherwise be free slack.
pub fn share_bound_micro(r_target_micro: u64) -> u64 {
    r_target_micro
        .div_ceil(100)
        .saturating_mul(100)
        .saturating_sub(50)
}

/// A leaf mismatches when the recomputed distance differs from the claimed
/// `d_q` (1e-4 units) by more than the tolerance, or the recomputed distance is
/// `≥ share_bound(r_target) + share_slack` (all in millionths; see
/// [`share_bound_micro`]). Integer-only.
pub fn is_mismatch(
    recomputed_micro: u64,
    claimed_dq: u32,
    r_target_micro: u64,
    tol_micro: u64,
    share_slack_micro: u64,
) -> bool {
    let claimed = claimed_dq as u64 * 100;
    recomputed_micro.abs_diff(claimed) > tol_micro
        || recomputed_micro >= share_bound_micro(r_target_micro).saturating_add(share_slack_micro)
}

/// `C(k, j) · a^j · b^(k−j)` for `j = 0..=k` as exact integers.
fn terms(k: u32, a: u64, b: u64) -> Vec<BigUint> {
    let a = BigUint::from(a);
    let b = BigUint::from(b);
    let mut binom = BigUint::one();
    let mut out = Vec::with_capacity(k as usize + 1);
    for j in 0..=k {
        out.push(&binom * a.pow(j) * b.pow(k - j));
        // C(k, j+1) = C(k, j) · (k−j) / (j+1), exact.
        binom = binom * BigUint::from(k - j) / BigUint::from(j + 1);
    }
    out
}

/// Exact test: `P[Binomial(k, p0) ≥ m] < alpha`, i.e. vote `invalid`.
pub fn is_invalid(m: u32, k: u32, p0: Ratio, alpha: Ratio) -> Result<bool, VerdictError> {
    check(p0, alpha)?;
    if m > k {
        return Err(VerdictError::TooManyMismatches { m, k });
    }
    let t = terms(k, p0.num, p0.den - p0.num);
    let tail: BigUint = t[m as usize..].iter().sum();
    Ok(tail * BigUint::from(alpha.den) < BigUint::from(alpha.num) * BigUint::from(p0.den).pow(k))
}

/// The smallest `m` with `P[X ≥ m] < alpha` for `X ~ Binomial(k, p0)`: the
/// verdict is `invalid` iff `mismatches ≥ c`. `None` when even `m = k` is not
/// significant (then no opening of `k` leaves can be rejected by the test).
pub fn critical_count(k: u32, p0: Ratio, alpha: Ratio) -> Result<Option<u32>, VerdictError> {
    check(p0, alpha)?;
    let t = terms(k, p0.num, p0.den - p0.num);
    let bound = BigUint::from(alpha.num) * BigUint::from(p0.den).pow(k);
    let ad = BigUint::from(alpha.den);
    let mut tail = BigUint::zero();
    // The tail grows as m decreases; find the first m (from the top) where it
    // stops being significant.
    for j in (0..=k).rev() {
        tail += &t[j as usize];
        if &tail * &ad >= bound {
            return Ok(if j == k { None } else { Some(j + 1) });
        }
    }
    // Even m = 0 is significant (alpha > 1): everything is invalid.
    Ok(Some(0))
}

/// [`critical_count`] for every `k = 0..=max_k` (a table the chain can cache
/// per parameter set).
pub fn critical_table(
    max_k: u32,
    p0: Ratio,
    alpha: Ratio,
) -> Result<Vec<Option<u32>>, VerdictError> {
    (0..=max_k).map(|k| critical_count(k, p0, alpha)).collect()
}

/// Verdict from the mismatch count using a precomputed critical count.
pub fn invalid_by_critical(mismatches: u32, critical: Option<u32>) -> bool {
    critical.is_some_and(|c| mismatches >= c)
}

#[cfg(feature = "float")]
/// Worker-side float p-value `P[Binomial(k, p0) ≥ m]` (log-space sum).
pub fn p_value_f64(m: u32, k: u32, p0: f64) -> f64 {
    if m == 0 {
        return 1.0;
    }
    if m > k {
        return 0.0;
    }
    if p0 <= 0.0 {
        return 0.0;
    }
    if p0 >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p0.ln(), (1.0 - p0).ln());
    // ln C(k, j) built incrementally.
    let mut ln_c = 0.0f64;
    let mut sum = 0.0f64;
    for j in 0..=k {
        if j >= m {
            sum += (ln_c + j as f64 * lp + (k - j) as f64 * lq).exp();
        }
        if j < k {
            ln_c += ((k - j) as f64).ln() - ((j + 1) as f64).ln();
        }
    }
    sum.min(1.0)
}
