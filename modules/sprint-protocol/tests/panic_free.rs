//! Consensus-facing functions never panic on arbitrary input and only accept
//! what they should (property tests).

use kiln_sprint_protocol::challenge::sample_indices;
use kiln_sprint_protocol::leaf::{leaf_hash, Leaf};
use kiln_sprint_protocol::merkle::{verify_proof, MerkleTree};
use kiln_sprint_protocol::verdict::{critical_count, is_invalid, is_mismatch, Ratio};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn verify_proof_total(root in any::<[u8; 32]>(), leaf in any::<[u8; 32]>(), index in any::<u64>(),
                          count in any::<u64>(), proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70)) {
        // Random data never verifies (and never panics), even for huge counts.
        prop_assert!(verify_proof(&root, &leaf, index, count, &proof).is_err());
    }

    #[test]
    fn real_proofs_verify_and_mutations_fail(n in 1u64..300, pick in any::<u64>(), flip in any::<(usize, u8)>()) {
        let hashes: Vec<[u8; 32]> = (0..n).map(|i| Leaf { nonce: i * 5, d_q: i as u32 }.hash()).collect();
        let t = MerkleTree::new(hashes.clone()).unwrap();
        let i = pick % n;
        let p = t.proof(i).unwrap();
        prop_assert!(verify_proof(&t.root(), &hashes[i as usize], i, n, &p).is_ok());
        if !p.is_empty() {
            let mut bad = p.clone();
            let k = flip.0 % bad.len();
            bad[k][flip.0 % 32] ^= flip.1 | 1;
            prop_assert!(verify_proof(&t.root(), &hashes[i as usize], i, n, &bad).is_err());
        }
        let other = leaf_hash(u64::MAX, u32::MAX);
        prop_assert!(verify_proof(&t.root(), &other, i, n, &p).is_err());
    }

    #[test]
    fn sample_indices_distinct_and_in_range(ch in any::<[u8; 32]>(), count in 0u32..5000, k in 0u32..300) {
        let idx = sample_indices(&ch, count, k);
        prop_assert_eq!(idx.len() as u32, count.min(k));
        let mut s = idx.clone();
        s.sort();
        s.dedup();
        prop_assert_eq!(s.len(), idx.len());
        prop_assert!(idx.iter().all(|&i| i < count));
    }

    #[test]
    fn verdict_total(m in any::<u32>(), k in 0u32..260, pn in any::<u64>(), pd in any::<u64>(),
                     an in any::<u64>(), ad in any::<u64>()) {
        let p0 = Ratio::new(pn, pd);
        let alpha = Ratio::new(an, ad);
        let _ = is_invalid(m, k, p0, alpha);
        let _ = critical_count(k, p0, alpha);
    }

    #[test]
    fn verdict_monotone(k in 1u32..260, pn in 1u64..1000, an in 1u64..1000) {
        let p0 = Ratio::new(pn, 100_000);
        let alpha = Ratio::new(an, 1_000_000_000);
        let c = critical_count(k, p0, alpha).unwrap();
        for m in 0..=k {
            let inv = is_invalid(m, k, p0, alpha).unwrap();
            prop_assert_eq!(inv, c.is_some_and(|c| m >= c));
        }
    }

    #[test]
    fn mismatch_total(r in any::<u64>(), d in any::<u32>(), t in any::<u64>(), tol in any::<u64>()) {
        let _ = is_mismatch(r, d, t, tol, tol / 2);
    }
}
