//! Sprint results on disk, openings (prove) and validation (verify).

use super::engine::SprintEngine;
use anyhow::{bail, ensure, Context, Result};
use kiln_sprint_protocol::challenge::{
    challenge_seed, opening_indices, ordered_opening, sample_indices,
};
use kiln_sprint_protocol::leaf::{strictly_increasing, Leaf};
use kiln_sprint_protocol::merkle::{verify_proof, MerkleTree};
use kiln_sprint_protocol::model::ModelConfig;
use kiln_sprint_protocol::verdict::{self, distance_to_micro, is_mismatch, p_value_f64, Ratio};
use kiln_sprint_protocol::Hash32;
use serde::{Deserialize, Serialize};

/// Default `r_target` (millionths) of a preset.
pub fn default_r_target(cfg: &ModelConfig) -> Option<u64> {
    if *cfg == ModelConfig::DEVNET {
        Some(1_346_000)
    } else if *cfg == ModelConfig::MAINNET {
        Some(1_391_480)
    } else {
        None
    }
}

/// Output of `sprint run`: every share found, in increasing nonce order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunFile {
    pub version: u32,
    pub seed: String,
    pub address: String,
    pub model: ModelConfig,
    pub r_target_micro: u64,
    pub start_nonce: u64,
    pub nonces_computed: u64,
    pub seconds: f64,
    pub count: u64,
    pub root: String,
    pub leaves: Vec<Leaf>,
}

impl RunFile {
    pub fn root_of(leaves: &[Leaf]) -> Option<Hash32> {
        MerkleTree::new(leaves.iter().map(|l| l.hash()).collect()).map(|t| t.root())
    }

    pub fn check(&self) -> Result<()> {
        ensure!(
            !self.leaves.is_empty(),
            "no shares in the run file (count must be ≥ 1)"
        );
        ensure!(
            strictly_increasing(&self.leaves),
            "leaves are not in strictly increasing nonce order"
        );
        ensure!(
            self.count == self.leaves.len() as u64,
            "count does not match the leaves"
        );
        let root = Self::root_of(&self.leaves)
            .map(hex::encode)
            .unwrap_or_default();
        ensure!(
            root == self.root,
            "root in the file does not match its leaves"
        );
        Ok(())
    }
}

/// One opened leaf with its Merkle proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Opening {
    pub index: u64,
    pub nonce: u64,
    pub d_q: u32,
    pub proof: Vec<String>,
}

/// Output of `sprint prove`: what `MsgSprintOpen` carries plus the context a
/// validator needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProofFile {
    pub version: u32,
    pub seed: String,
    pub address: String,
    pub model: ModelConfig,
    pub r_target_micro: u64,
    pub root: String,
    pub count: u64,
    pub challenge_block_hash: String,
    pub challenge: String,
    pub sprint_samples: u32,
    pub openings: Vec<Opening>,
}

/// Open the challenged leaves of `run`: each sampled leaf followed by its
/// right-hand neighbour, as the chain wants them. `challenge_block_hash` is
/// the epoch's beacon on a real chain (the challenge is `SHA256(beacon ‖ addr)`).
pub fn prove(
    run: &RunFile,
    addr: &[u8; 20],
    challenge_block_hash: &[u8],
    k: u32,
) -> Result<ProofFile> {
    run.check()?;
    ensure!(run.count <= u32::MAX as u64, "too many leaves");
    let tree =
        MerkleTree::new(run.leaves.iter().map(|l| l.hash()).collect()).context("empty tree")?;
    let ch = challenge_seed(challenge_block_hash, addr);
    let sampled = sample_indices(&ch, run.count as u32, k);
    let idx = opening_indices(&sampled, run.count as u32);
    let mut openings = Vec::with_capacity(idx.len());
    for i in idx {
        let l = run.leaves[i as usize];
        let proof = tree.proof(i as u64).context("proof")?;
        openings.push(Opening {
            index: i as u64,
            nonce: l.nonce,
            d_q: l.d_q,
            proof: proof.iter().map(hex::encode).collect(),
        });
    }
    Ok(ProofFile {
        version: 1,
        seed: run.seed.clone(),
        address: run.address.clone(),
        model: run.model,
        r_target_micro: run.r_target_micro,
        root: run.root.clone(),
        count: run.count,
        challenge_block_hash: hex::encode(challenge_block_hash),
        challenge: hex::encode(ch),
        sprint_samples: k,
        openings,
    })
}

/// Per-leaf result of validation.
#[derive(Clone, Debug, Serialize)]
pub struct LeafCheck {
    pub index: u64,
    pub nonce: u64,
    pub claimed_d_q: u32,
    pub recomputed_d: f64,
    pub diff: f64,
    pub proof_ok: bool,
    pub mismatch: bool,
}

/// Validation of an opening.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub structural_ok: bool,
    pub structural_error: Option<String>,
    pub k: u32,
    pub mismatches: u32,
    pub p_value: f64,
    pub critical_count: Option<u32>,
    pub invalid: bool,
    pub leaves: Vec<LeafCheck>,
}

/// Test parameters of validation.
#[derive(Clone, Copy, Debug)]
pub struct VerifyParams {
    pub tol_micro: u64,
    /// How far above `r_target` a recomputed distance may lie (millionths).
    pub share_slack_micro: u64,
    pub p0: Ratio,
    pub alpha: Ratio,
}

impl Default for VerifyParams {
    fn default() -> Self {
        VerifyParams {
            tol_micro: verdict::TOLERANCE_MICRO_DEFAULT,
            share_slack_micro: verdict::SHARE_SLACK_MICRO_DEFAULT,
            p0: verdict::P0_DEFAULT,
            alpha: verdict::ALPHA_DEFAULT,
        }
    }
}

fn h32(s: &str) -> Result<Hash32> {
    let v = hex::decode(s).with_context(|| format!("bad hex {s:?}"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("expected 32 bytes of hex"))
}

/// Structural checks a chain would do (indices = the challenge's sample,
/// every Merkle proof valid). Integer-only.
pub fn check_structure(p: &ProofFile, addr: &[u8; 20]) -> Result<Vec<bool>> {
    ensure!(
        p.count >= 1 && p.count <= u32::MAX as u64,
        "count out of range"
    );
    let root = h32(&p.root)?;
    let block = hex::decode(&p.challenge_block_hash).context("challenge_block_hash")?;
    let ch = challenge_seed(&block, addr);
    ensure!(
        hex::encode(ch) == p.challenge,
        "challenge does not derive from the challenge block and address"
    );
    let sampled = sample_indices(&ch, p.count as u32, p.sprint_samples);
    let want = opening_indices(&sampled, p.count as u32);
    let got: Vec<u32> = p.openings.iter().map(|o| o.index as u32).collect();
    if got != want {
        bail!(
            "opened indices {got:?} are not the challenge's indices with their neighbours {want:?}"
        );
    }
    let by_index: Vec<(u64, u64)> = p.openings.iter().map(|o| (o.index, o.nonce)).collect();
    ensure!(
        ordered_opening(&by_index).is_some(),
        "opened nonces do not strictly increase by index (a nonce counted twice)"
    );
    let mut oks = Vec::new();
    for o in &p.openings {
        let proof: Result<Vec<Hash32>> = o.proof.iter().map(|s| h32(s)).collect();
        let ok = proof.map(|pr| {
            verify_proof(
                &root,
                &Leaf {
                    nonce: o.nonce,
                    d_q: o.d_q,
                }
                .hash(),
                o.index,
                p.count,
                &pr,
            )
            .is_ok()
        });
        oks.push(ok.unwrap_or(false));
    }
    Ok(oks)
}

/// Recompute the opened leaves and decide (SPEC §4 "Validation").
pub fn verify(p: &ProofFile, engine: &SprintEngine, params: VerifyParams) -> Result<VerifyReport> {
    let addr = engine.addr;
    let (structural_ok, structural_error, proof_ok) = match check_structure(p, &addr) {
        Ok(v) => (v.iter().all(|&b| b), None, v),
        Err(e) => (false, Some(format!("{e:#}")), vec![false; p.openings.len()]),
    };
    let nonces: Vec<u64> = p.openings.iter().map(|o| o.nonce).collect();
    let ds = engine.distances(&nonces);
    let mut leaves = Vec::new();
    let mut mismatches = 0u32;
    for ((o, d), pok) in p.openings.iter().zip(&ds).zip(&proof_ok) {
        let m = is_mismatch(
            distance_to_micro(*d),
            o.d_q,
            p.r_target_micro,
            params.tol_micro,
            params.share_slack_micro,
        );
        mismatches += m as u32;
        leaves.push(LeafCheck {
            index: o.index,
            nonce: o.nonce,
            claimed_d_q: o.d_q,
            recomputed_d: *d,
            diff: d - o.d_q as f64 / 1e4,
            proof_ok: *pok,
            mismatch: m,
        });
    }
    let k = p.openings.len() as u32;
    let critical = verdict::critical_count(k, params.p0, params.alpha)?;
    let invalid_stat = verdict::invalid_by_critical(mismatches, critical);
    let p0 = params.p0.num as f64 / params.p0.den as f64;
    Ok(VerifyReport {
        structural_ok,
        structural_error,
        k,
        mismatches,
        p_value: p_value_f64(mismatches, k, p0),
        critical_count: critical,
        invalid: invalid_stat || !structural_ok,
        leaves,
    })
}
