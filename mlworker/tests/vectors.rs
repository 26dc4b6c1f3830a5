//! The engine reproduces the distances of `shared/vectors/sprint-v1.json`
//! within sprint_tolerance (f32 and bf16 on the CPU) and their quantisation.

mod common;
use common::*;
use kiln_sprint_protocol::leaf::quantize_distance;
use tch::Kind;

fn check(kind: Kind, tol: f64) {
    let v = vectors();
    let want: Vec<(u64, f64, u64)> = v["distances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["nonce"].as_u64().unwrap(),
                d["d"].as_f64().unwrap(),
                d["d_q"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(want.len(), 12);
    let e = engine(kind, Some(5)); // batches of 5 exercise ragged batching
    let nonces: Vec<u64> = want.iter().map(|w| w.0).collect();
    let got = e.distances(&nonces);
    let mut worst = 0f64;
    for ((n, d, dq), g) in want.iter().zip(&got) {
        let diff = (g - d).abs();
        worst = worst.max(diff);
        assert!(diff <= tol, "{kind:?} nonce {n}: got {g}, want {d}");
        let q = quantize_distance(*g) as i64;
        assert!(
            (q - *dq as i64).abs() <= (tol * 1e4).ceil() as i64,
            "nonce {n}: d_q {q} vs {dq}"
        );
    }
    println!("{kind:?}: worst |d - d_ref| over 12 vector nonces = {worst:.3e}");
}

#[test]
fn f32_distances_match_vectors() {
    check(Kind::Float, TOL);
}

#[test]
fn bf16_distances_match_vectors() {
    check(Kind::BFloat16, TOL);
}
