//! The Rust implementation and the independent PyTorch reference
//! (`scripts/sprint_reference.py`, run with `<workspace>/.venv/bin/python` or
//! `KILN_PYTHON`) agree: every weight tensor, the target, the inputs and the
//! permutation draws bit for bit (SHA-256 of the f32 LE bytes), and the
//! distances within sprint_tolerance, for two fixed seeds/addresses.

mod common;
use common::*;
use kiln_mlworker::device::ComputeDevice;
use kiln_mlworker::sprint::bench::run_reference;
use kiln_mlworker::sprint::engine::SprintEngine;
use kiln_sprint_protocol::model::{generate_weights, input, perm_draws, target, ModelConfig};
use kiln_sprint_protocol::seed::nonce_key;
use sha2::{Digest, Sha256};

fn sha_f32(v: &[f32]) -> String {
    let mut h = Sha256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    hex::encode(h.finalize())
}

fn cases() -> Vec<([u8; 32], [u8; 20])> {
    let (s, a) = seed_addr();
    let s2: [u8; 32] = Sha256::digest(b"another seed").into();
    let a2 = [0xa5u8; 20];
    vec![(s, a), (s2, a2)]
}

#[test]
fn weights_inputs_perms_bit_exact() {
    let cfg = ModelConfig::DEVNET;
    for (seed, addr) in cases() {
        let py = run_reference(&[
            "digests".into(),
            "--seed".into(),
            hex::encode(seed),
            "--addr".into(),
            hex::encode(addr),
            "--nonces".into(),
            "3".into(),
        ])
        .expect("python reference (set KILN_PYTHON or run scripts/setup.sh)");
        let ws = generate_weights(&seed, &cfg);
        assert_eq!(py["weights"].as_object().unwrap().len(), ws.len());
        for (spec, w) in &ws {
            assert_eq!(
                py["weights"][&spec.name].as_str().unwrap(),
                sha_f32(w),
                "tensor {}",
                spec.name
            );
        }
        assert_eq!(
            py["target"].as_str().unwrap(),
            sha_f32(&target(&seed, cfg.out_dim))
        );
        for n in 0..3u64 {
            assert_eq!(
                py["inputs"][n as usize].as_str().unwrap(),
                sha_f32(&input(&seed, &addr, n, &cfg))
            );
            let draws: Vec<u64> = py["perm_draws"][n as usize]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            let ours: Vec<u64> = perm_draws(&nonce_key(&seed, &addr, n), cfg.out_dim)
                .into_iter()
                .map(u64::from)
                .collect();
            assert_eq!(draws, ours, "perm draws of nonce {n}");
        }
    }
}

#[test]
fn distances_within_tolerance() {
    let nonces: Vec<u64> = vec![0, 1, 2, 3, 17, 4242, 1 << 33];
    let list = nonces
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for (seed, addr) in cases() {
        let engine = SprintEngine::new(
            seed,
            addr,
            ModelConfig::DEVNET,
            ComputeDevice::cpu_f32(),
            None,
        )
        .unwrap();
        let ours = engine.distances(&nonces);
        for dtype in ["float64", "float32"] {
            let py = run_reference(&[
                "distances".into(),
                "--seed".into(),
                hex::encode(seed),
                "--addr".into(),
                hex::encode(addr),
                "--nonces".into(),
                list.clone(),
                "--dtype".into(),
                dtype.into(),
            ])
            .unwrap();
            let mut worst = 0f64;
            for (n, d) in nonces.iter().zip(&ours) {
                let p = py["distances"][n.to_string()].as_f64().unwrap();
                worst = worst.max((p - d).abs());
                assert!(
                    (p - d).abs() <= TOL,
                    "nonce {n}: rust {d} python/{dtype} {p}"
                );
            }
            println!(
                "seed {}…: worst |rust f32 - python {dtype}| = {worst:.3e}",
                &hex::encode(seed)[..8]
            );
        }
    }
}
