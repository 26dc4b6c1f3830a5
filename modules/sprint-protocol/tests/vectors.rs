//! The protocol crate reproduces every protocol value of
//! `shared/vectors/sprint-v1.json` bit for bit.

//! The seed, Merkle and challenge checks also run without the `float`
//! feature (the chain's build).

use kiln_sprint_protocol::challenge::sample_indices;
use kiln_sprint_protocol::leaf::Leaf;
use kiln_sprint_protocol::merkle::{root_of, verify_proof, MerkleTree};
#[cfg(feature = "float")]
use kiln_sprint_protocol::model::{generate_tensor, input, perm_draws, target, ModelConfig};
#[cfg(feature = "float")]
use kiln_sprint_protocol::seed::nonce_key;
use kiln_sprint_protocol::seed::sprint_seed;
use serde_json::Value;

/// The spec's vectors, vendored at `modules/sprint-protocol/vectors/` so a
/// fresh clone is self-contained (`KILN_SPRINT_VECTORS` overrides).
fn vectors() -> Value {
    let path = std::env::var("KILN_SPRINT_VECTORS")
        .unwrap_or_else(|_| format!("{}/vectors/sprint-v1.json", env!("CARGO_MANIFEST_DIR")));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn h32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[cfg(feature = "float")]
fn bits(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            u32::from_le_bytes(
                hex::decode(x.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            )
        })
        .collect()
}

#[cfg(feature = "float")]
fn cfg(v: &Value) -> ModelConfig {
    let p = &v["preset"];
    let g = |k: &str| p[k].as_u64().unwrap() as usize;
    ModelConfig {
        dim: g("dim"),
        layers: g("layers"),
        heads: g("heads"),
        ffn_dim: g("ffn"),
        seq_len: g("seq"),
        out_dim: g("out"),
    }
}

#[cfg(feature = "float")]
#[test]
fn preset_matches_devnet() {
    assert_eq!(cfg(&vectors()), ModelConfig::DEVNET);
}

#[test]
fn seed_derivation() {
    let v = vectors();
    let si = &v["seed_inputs"];
    let seed = sprint_seed(
        si["chain_id"].as_str().unwrap(),
        si["epoch"].as_u64().unwrap(),
        &hex::decode(si["block_hash_hex"].as_str().unwrap()).unwrap(),
    );
    assert_eq!(hex::encode(seed), v["seed_hex"].as_str().unwrap());
}

#[cfg(feature = "float")]
#[test]
fn weights_bit_exact() {
    let v = vectors();
    let c = cfg(&v);
    let seed = h32(v["seed_hex"].as_str().unwrap());
    let specs = c.tensors();
    let obj = v["weights_first8"].as_object().unwrap();
    assert!(!obj.is_empty());
    for (name, want) in obj {
        let spec = specs
            .iter()
            .find(|s| &s.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"));
        let w = generate_tensor(&seed, spec);
        let got: Vec<u32> = w[..8].iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, bits(want), "tensor {name}");
    }
}

#[cfg(feature = "float")]
#[test]
fn target_input_perm_bit_exact() {
    let v = vectors();
    let c = cfg(&v);
    let seed = h32(v["seed_hex"].as_str().unwrap());
    let addr: [u8; 20] = hex::decode(v["addr_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let t: Vec<u32> = target(&seed, c.out_dim)[..8]
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(t, bits(&v["target_first8"]));
    let x: Vec<u32> = input(&seed, &addr, 0, &c)[..8]
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(x, bits(&v["input_nonce0_first8"]));
    let draws = perm_draws(&nonce_key(&seed, &addr, 0), c.out_dim);
    let want: Vec<u32> = v["perm_nonce0_first8_draws"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(&draws[..8], &want[..]);
}

#[test]
fn quantisation_and_merkle_root() {
    let v = vectors();
    let dist = v["distances"].as_array().unwrap();
    let leaves: Vec<Leaf> = dist[..5]
        .iter()
        .map(|d| {
            let dq = d["d_q"].as_u64().unwrap() as u32;
            // The file's d_q follows from its d by the spec's rounding.
            #[cfg(feature = "float")]
            assert_eq!(
                kiln_sprint_protocol::leaf::quantize_distance(d["d"].as_f64().unwrap()),
                dq
            );
            Leaf {
                nonce: d["nonce"].as_u64().unwrap(),
                d_q: dq,
            }
        })
        .collect();
    let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| l.hash()).collect();
    let want: Vec<String> = v["merkle"]["leaves_from_first5_distances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(hashes.iter().map(hex::encode).collect::<Vec<_>>(), want);
    let root = root_of(&hashes).unwrap();
    assert_eq!(hex::encode(root), v["merkle"]["root"].as_str().unwrap());
    let tree = MerkleTree::new(hashes.clone()).unwrap();
    for (i, h) in hashes.iter().enumerate() {
        let p = tree.proof(i as u64).unwrap();
        verify_proof(&root, h, i as u64, 5, &p).unwrap();
    }
}

#[test]
fn challenge_indices() {
    let v = vectors();
    let ch = &v["challenge"];
    let c = h32(ch["challenge_hex"].as_str().unwrap());
    let got = sample_indices(
        &c,
        ch["count"].as_u64().unwrap() as u32,
        ch["k"].as_u64().unwrap() as u32,
    );
    let want: Vec<u32> = ch["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(got, want);
}

/// The vendored copy must stay identical to the spec's file when the spec
/// folder sits beside the checkout (as in the development workspace).
#[test]
fn vendored_vectors_match_the_spec_copy_when_present() {
    let spec = format!(
        "{}/../../../shared/vectors/sprint-v1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let vendored = format!("{}/vectors/sprint-v1.json", env!("CARGO_MANIFEST_DIR"));
    if let Ok(spec_text) = std::fs::read_to_string(&spec) {
        assert_eq!(
            spec_text,
            std::fs::read_to_string(&vendored).unwrap(),
            "vendored vectors drifted from {spec}"
        );
    }
}
