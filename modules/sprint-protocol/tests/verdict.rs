//! The exact (integer) binomial verdict agrees with the float p-value, the
//! critical count at the spec's parameters, and the mismatch rule.

use kiln_sprint_protocol::challenge::sample_indices;
use kiln_sprint_protocol::verdict::*;

#[cfg(feature = "float")]
#[test]
fn exact_matches_float_p_value() {
    let p0 = P0_DEFAULT;
    let alpha = ALPHA_DEFAULT;
    for k in [1u32, 5, 16, 50, 200, 300] {
        for m in 0..=k.min(12) {
            let p = p_value_f64(m, k, 1e-4);
            let exact = is_invalid(m, k, p0, alpha).unwrap();
            // Skip razor-thin cases where float rounding could flip.
            if (p / 1e-7 - 1.0).abs() > 1e-6 {
                assert_eq!(exact, p < 1e-7, "k={k} m={m} p={p}");
            }
        }
    }
}

#[test]
fn critical_count_at_spec_parameters() {
    // P[Bin(200, 1e-4) >= 3] ≈ 1.3e-6 > 1e-7 and P[>= 4] ≈ 6.4e-9 < 1e-7.
    assert_eq!(
        critical_count(200, P0_DEFAULT, ALPHA_DEFAULT).unwrap(),
        Some(4)
    );
    // The SPEC's original p0 = 5e-4 gives 5.
    assert_eq!(
        critical_count(200, Ratio::new(5, 10_000), ALPHA_DEFAULT).unwrap(),
        Some(5)
    );
    // devnet sprint_samples = 16.
    let c16 = critical_count(16, P0_DEFAULT, ALPHA_DEFAULT).unwrap();
    assert_eq!(c16, Some(3));
    // tiny openings can never be rejected by the test
    assert_eq!(critical_count(1, P0_DEFAULT, ALPHA_DEFAULT).unwrap(), None);
    let table = critical_table(200, P0_DEFAULT, ALPHA_DEFAULT).unwrap();
    for (k, c) in table.iter().enumerate() {
        for m in 0..=k as u32 {
            assert_eq!(
                invalid_by_critical(m, *c),
                is_invalid(m, k as u32, P0_DEFAULT, ALPHA_DEFAULT).unwrap()
            );
        }
    }
}

#[test]
fn bad_parameters_are_errors_not_panics() {
    assert_eq!(
        is_invalid(1, 10, Ratio::new(1, 0), ALPHA_DEFAULT),
        Err(VerdictError::BadP0)
    );
    assert_eq!(
        is_invalid(1, 10, Ratio::new(3, 2), ALPHA_DEFAULT),
        Err(VerdictError::BadP0)
    );
    assert_eq!(
        is_invalid(1, 10, P0_DEFAULT, Ratio::new(1, 0)),
        Err(VerdictError::BadAlpha)
    );
    assert!(is_invalid(11, 10, P0_DEFAULT, ALPHA_DEFAULT).is_err());
    assert!(sample_indices(&[0u8; 32], 0, 200).is_empty());
    let all = sample_indices(&[9u8; 32], 20, 200);
    let mut s = all.clone();
    s.sort();
    assert_eq!(s, (0..20).collect::<Vec<_>>());
}

#[test]
fn mismatch_rule() {
    let r = 1_346_000;
    let tol = TOLERANCE_MICRO_DEFAULT;
    let slack = SHARE_SLACK_MICRO_DEFAULT;
    assert!(!is_mismatch(1_300_040, 13000, r, tol, slack));
    assert!(!is_mismatch(1_302_000, 13000, r, tol, slack));
    assert!(is_mismatch(1_302_001, 13000, r, tol, slack));
    assert!(is_mismatch(1_297_999, 13000, r, tol, slack));
    assert!(is_mismatch(1_348_000, 13480, r, tol, slack)); // not a share at all
                                                           // A near miss: within the tolerance of its claim, but at or above the
                                                           // share bound (where honest shares end) + slack.
    let bound = share_bound_micro(r);
    assert_eq!(bound, 1_345_950);
    assert!(is_mismatch(bound + slack, 13450, r, tol, slack));
    assert!(!is_mismatch(bound + slack - 1, 13450, r, tol, slack));
    // Between the share bound + slack and r_target: no longer free slack.
    assert!(is_mismatch(r - 1, 13459, r, tol, slack));
    assert!(is_mismatch(u64::MAX, 13000, u64::MAX, tol, slack));
}

/// The share bound is exactly where `claims_share(quantize(d))` flips.
#[cfg(feature = "float")]
#[test]
fn the_share_bound_is_where_quantized_claims_stop() {
    use kiln_sprint_protocol::leaf::{claims_share, quantize_distance};
    for r in [
        1_346_000u64,
        1_391_480,
        1_391_401,
        1_391_499,
        1,
        100,
        2_000_000,
    ] {
        let bound = share_bound_micro(r);
        let just_below = (bound as f64 - 0.01) / 1e6;
        let at = bound as f64 / 1e6;
        assert!(claims_share(quantize_distance(just_below), r), "r {r}");
        assert!(!claims_share(quantize_distance(at), r), "r {r}");
        assert!(bound < r + 50 && bound + 150 > r, "r {r}: bound {bound}");
    }
}

#[cfg(feature = "float")]
#[test]
fn distance_to_micro_rounds_and_saturates() {
    assert_eq!(distance_to_micro(f64::NAN), u64::MAX);
    assert_eq!(distance_to_micro(1.3480451), 1_348_045);
    assert_eq!(distance_to_micro(-1.0), 0);
}

/// P[Binomial(k, p) ≥ c] as an exact rational compared with `num/den`.
fn tail_at_least(k: u32, c: u32, p: Ratio, num: u64, den: u64) -> bool {
    use num_bigint::BigUint;
    let (a, b) = (BigUint::from(p.num), BigUint::from(p.den - p.num));
    let mut binom = BigUint::from(1u32);
    let mut tail = BigUint::from(0u32);
    for j in 0..=k {
        if j >= c {
            tail += &binom * a.pow(j) * b.pow(k - j);
        }
        binom = binom * BigUint::from(k - j) / BigUint::from(j + 1);
    }
    tail * BigUint::from(den) >= BigUint::from(num) * BigUint::from(p.den).pow(k)
}

/// Detection power when the opened leaves are an (effectively) independent
/// sample, i.e. count ≫ k. With Kiln's p0 = 1e-4 and alpha = 1e-7 the
/// critical count at k = 200 is 4, so a prover with 5% fabricated leaves is
/// flagged with probability P[Bin(200, 0.05) ≥ 4] = 0.99095 (≥ 99%, the
/// issue's target). At the SPEC's original p0 = 5e-4 the count is 5 and the
/// power only 0.97355 — why Kiln deviates (README "Protocol notes").
#[test]
fn detection_power_at_kiln_parameters() {
    let five_pct = Ratio::new(1, 20);
    let c200 = critical_count(200, P0_DEFAULT, ALPHA_DEFAULT)
        .unwrap()
        .unwrap();
    assert_eq!(c200, 4);
    assert!(tail_at_least(200, c200, five_pct, 99, 100));
    assert!(!tail_at_least(200, c200, five_pct, 99_096, 100_000));
    let c_spec = critical_count(200, Ratio::new(5, 10_000), ALPHA_DEFAULT)
        .unwrap()
        .unwrap();
    assert!(tail_at_least(200, c_spec, five_pct, 97_355, 100_000));
    assert!(!tail_at_least(200, c_spec, five_pct, 97_356, 100_000));
}
