//! Merkle proofs: every leaf of trees of many sizes verifies; a wrong leaf,
//! index, root or count and truncated / extended proofs are rejected.

use kiln_sprint_protocol::leaf::{leaf_hash, Leaf};
use kiln_sprint_protocol::merkle::{verify_proof, MerkleError, MerkleTree};

fn tree(n: u64) -> (MerkleTree, Vec<[u8; 32]>) {
    let hashes: Vec<[u8; 32]> = (0..n)
        .map(|i| leaf_hash(i * 3 + 1, (i * 7 % 13000) as u32))
        .collect();
    (MerkleTree::new(hashes.clone()).unwrap(), hashes)
}

#[test]
fn all_leaves_verify_for_many_sizes() {
    for n in 1..=70u64 {
        let (t, h) = tree(n);
        assert_eq!(t.count(), n);
        for i in 0..n {
            let p = t.proof(i).unwrap();
            assert_eq!(
                verify_proof(&t.root(), &h[i as usize], i, n, &p),
                Ok(()),
                "n={n} i={i}"
            );
        }
        assert!(t.proof(n).is_none());
    }
}

#[test]
fn rejections() {
    for n in [2u64, 3, 5, 8, 13, 100] {
        let (t, h) = tree(n);
        let root = t.root();
        for i in 0..n {
            let p = t.proof(i).unwrap();
            let leaf = h[i as usize];
            // wrong leaf
            let wrong = Leaf {
                nonce: 999_999,
                d_q: 1,
            }
            .hash();
            assert!(verify_proof(&root, &wrong, i, n, &p).is_err());
            // wrong index (every other index)
            for j in 0..n {
                if j != i {
                    assert!(
                        verify_proof(&root, &leaf, j, n, &p).is_err(),
                        "n={n} i={i} j={j}"
                    );
                }
            }
            assert!(matches!(
                verify_proof(&root, &leaf, n, n, &p),
                Err(MerkleError::IndexOutOfRange { .. })
            ));
            // wrong root
            let mut r2 = root;
            r2[0] ^= 1;
            assert_eq!(
                verify_proof(&r2, &leaf, i, n, &p),
                Err(MerkleError::RootMismatch)
            );
            // truncated
            if !p.is_empty() {
                assert!(verify_proof(&root, &leaf, i, n, &p[..p.len() - 1]).is_err());
                assert!(verify_proof(&root, &leaf, i, n, &[]).is_err());
            }
            // extended
            let mut p2 = p.clone();
            p2.push([7u8; 32]);
            assert_eq!(
                verify_proof(&root, &leaf, i, n, &p2),
                Err(MerkleError::TooLong)
            );
            // tampered sibling
            if let Some(first) = p.first() {
                let mut p3 = p.clone();
                p3[0] = [first[0] ^ 0x80; 32];
                assert!(verify_proof(&root, &leaf, i, n, &p3).is_err());
            }
        }
        // The count is committed on chain next to the root; a zero count is rejected.
        let p = t.proof(0).unwrap();
        assert_eq!(
            verify_proof(&root, &h[0], 0, 0, &p),
            Err(MerkleError::Empty)
        );
    }
}

#[test]
fn empty_tree_and_odd_carry() {
    assert!(MerkleTree::new(vec![]).is_none());
    let (t, h) = tree(3);
    // level 1 = [H(h0,h1), h2]; root = H(H(h0,h1), h2): the odd leaf is carried.
    let n01 = kiln_sprint_protocol::merkle::node_hash(&h[0], &h[1]);
    assert_eq!(
        t.root(),
        kiln_sprint_protocol::merkle::node_hash(&n01, &h[2])
    );
    assert_eq!(t.proof(2).unwrap(), vec![n01]);
}

#[test]
fn leaf_bytes_roundtrip() {
    let l = Leaf {
        nonce: 0x0102030405060708,
        d_q: 13480,
    };
    assert_eq!(Leaf::from_bytes(&l.to_bytes()), Some(l));
    assert_eq!(Leaf::from_bytes(&[0u8; 5]), None);
}
