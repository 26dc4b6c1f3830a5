//! State-sync snapshots (SPEC §10): a committed version of the verifiable
//! state as deterministic chunks, and the restore that rebuilds a store from
//! them and checks the root.
//!
//! **Format 1.** The state's `(key, value)` pairs in ascending key order,
//! each written as `u32 BE key length ‖ key ‖ u32 BE value length ‖ value`;
//! a chunk is closed after the entry that makes it reach `chunk_bytes`
//! (never in the middle of an entry), and each chunk starts with the format
//! byte `0x01`. The bytes depend only on the state and `chunk_bytes`, so two
//! nodes holding the same state produce identical chunks: hashes do not
//! depend on history ([`Storage`] roots do not either).
//!
//! The [`Manifest`] (height, root, the SHA-256 of every chunk) travels as
//! ABCI `Snapshot.metadata`; `Snapshot.hash` is the SHA-256 of the encoded
//! manifest. A [`Restore`] accepts chunks in order, refuses one whose hash is
//! not the manifest's (so the caller refetches it from another peer and
//! rejects its sender), and at the end commits everything as one version,
//! whose root must equal both the manifest's and the app hash the light
//! client verified.

use sha2::{Digest, Sha256};

use crate::{Changes, StateRead, Storage, StoreError};

/// The chunk format this code writes and reads.
pub const FORMAT: u32 = 1;

/// Default target size of a chunk (CometBFT's state sync fetches chunks of
/// up to 16 MiB; smaller chunks retry faster).
pub const DEFAULT_CHUNK_BYTES: usize = 4 << 20;

/// Largest number of chunks a manifest may list (a bound on what a peer can
/// make a restoring node allocate before the first chunk is checked).
pub const MAX_CHUNKS: usize = 100_000;

/// What a snapshot is: listed in ABCI `Snapshot.metadata`.
#[derive(Debug, Clone, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct Manifest {
    pub format: u32,
    /// The version (block height) of the state.
    pub height: u64,
    /// Its root (the app hash of that height).
    pub root: [u8; 32],
    /// SHA-256 of each chunk, in order.
    pub chunk_hashes: Vec<[u8; 32]>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).unwrap_or_default()
    }

    /// Decodes and sanity-checks a manifest from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, StoreError> {
        let m: Manifest = borsh::from_slice(bytes)
            .map_err(|e| StoreError(format!("snapshot metadata does not decode: {e}")))?;
        if m.format != FORMAT {
            return Err(StoreError(format!(
                "snapshot format {} is not supported (this node reads format {FORMAT})",
                m.format
            )));
        }
        if m.chunk_hashes.is_empty() || m.chunk_hashes.len() > MAX_CHUNKS {
            return Err(StoreError(format!(
                "snapshot lists {} chunks (expected 1 to {MAX_CHUNKS})",
                m.chunk_hashes.len()
            )));
        }
        Ok(m)
    }

    /// ABCI `Snapshot.hash`: SHA-256 of the encoded manifest.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

/// A snapshot: its manifest and chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub manifest: Manifest,
    pub chunks: Vec<Vec<u8>>,
}

/// Exports the state at a retained `version` of `storage` in format 1.
pub fn export(storage: &Storage, version: u64, chunk_bytes: usize) -> Result<Exported, StoreError> {
    let root = storage.root_hash(version)?;
    let view = storage.snapshot(version)?;
    let target = chunk_bytes.max(64);
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut current = vec![FORMAT as u8];
    let mut failure: Option<StoreError> = None;
    view.prefix_visit(b"", &mut |key, value| {
        let (Ok(kl), Ok(vl)) = (u32::try_from(key.len()), u32::try_from(value.len())) else {
            failure = Some(StoreError(
                "a key or value above 4 GiB cannot be exported".into(),
            ));
            return std::ops::ControlFlow::Break(());
        };
        current.extend_from_slice(&kl.to_be_bytes());
        current.extend_from_slice(key);
        current.extend_from_slice(&vl.to_be_bytes());
        current.extend_from_slice(value);
        if current.len() >= target {
            chunks.push(std::mem::replace(&mut current, vec![FORMAT as u8]));
        }
        std::ops::ControlFlow::Continue(())
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if current.len() > 1 || chunks.is_empty() {
        chunks.push(current);
    }
    // The state may not change under a retained version, but a version can be
    // pruned while we read it: check it is still there.
    storage.root_hash(version)?;
    let chunk_hashes = chunks.iter().map(|c| Sha256::digest(c).into()).collect();
    Ok(Exported {
        manifest: Manifest {
            format: FORMAT,
            height: version,
            root,
            chunk_hashes,
        },
        chunks,
    })
}

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// Its SHA-256 is not the manifest's: refetch it, reject the sender.
    WrongHash { index: u32 },
    /// Not the next chunk expected.
    OutOfOrder { index: u32, expected: u32 },
    /// The hash matched but the content is malformed (the snapshot itself is
    /// bad: reject the whole snapshot).
    Malformed { index: u32, reason: String },
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::WrongHash { index } => {
                write!(
                    f,
                    "chunk {index} does not match the SHA-256 in the snapshot metadata"
                )
            }
            ChunkError::OutOfOrder { index, expected } => {
                write!(f, "chunk {index} arrived but chunk {expected} is next")
            }
            ChunkError::Malformed { index, reason } => {
                write!(f, "chunk {index} is malformed: {reason}")
            }
        }
    }
}

/// A restore in progress: chunks are checked and decoded as they arrive.
#[derive(Debug)]
pub struct Restore {
    manifest: Manifest,
    next: u32,
    changes: Changes,
    last_key: Option<Vec<u8>>,
}

impl Restore {
    pub fn new(manifest: Manifest) -> Restore {
        Restore {
            manifest,
            next: 0,
            changes: Changes::new(),
            last_key: None,
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The index of the next chunk wanted, or `None` when all arrived.
    pub fn next_chunk(&self) -> Option<u32> {
        (usize::try_from(self.next).ok()? < self.manifest.chunk_hashes.len()).then_some(self.next)
    }

    /// Checks and decodes chunk `index`.
    pub fn apply_chunk(&mut self, index: u32, chunk: &[u8]) -> Result<(), ChunkError> {
        if Some(index) != self.next_chunk() {
            return Err(ChunkError::OutOfOrder {
                index,
                expected: self.next,
            });
        }
        let expected = self.manifest.chunk_hashes[index as usize];
        if <[u8; 32]>::from(Sha256::digest(chunk)) != expected {
            return Err(ChunkError::WrongHash { index });
        }
        let malformed = |reason: &str| ChunkError::Malformed {
            index,
            reason: reason.to_string(),
        };
        let Some((&format, mut rest)) = chunk.split_first() else {
            return Err(malformed("empty"));
        };
        if u32::from(format) != FORMAT {
            return Err(malformed("wrong format byte"));
        }
        let take = |rest: &mut &[u8]| -> Result<Vec<u8>, ChunkError> {
            if rest.len() < 4 {
                return Err(malformed("truncated length"));
            }
            let (len, tail) = rest.split_at(4);
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if tail.len() < len {
                return Err(malformed("truncated entry"));
            }
            let (bytes, tail) = tail.split_at(len);
            *rest = tail;
            Ok(bytes.to_vec())
        };
        let mut decoded = Vec::new();
        while !rest.is_empty() {
            let key = take(&mut rest)?;
            let value = take(&mut rest)?;
            decoded.push((key, value));
        }
        for (key, value) in decoded {
            if self.last_key.as_ref().is_some_and(|last| *last >= key) {
                return Err(malformed("keys are not strictly increasing"));
            }
            self.last_key = Some(key.clone());
            self.changes.insert(key, Some(value));
        }
        self.next += 1;
        Ok(())
    }

    /// After the last chunk: commits the state into the empty `storage` as
    /// version `manifest.height` and checks its root against the manifest
    /// and `trusted_app_hash` (what the light client verified). On a
    /// mismatch nothing is written.
    pub fn finish(
        self,
        storage: &Storage,
        trusted_app_hash: &[u8],
    ) -> Result<[u8; 32], StoreError> {
        if self.next_chunk().is_some() {
            return Err(StoreError(format!(
                "snapshot restore is missing chunks from {}",
                self.next
            )));
        }
        if storage.latest_version().is_some() {
            return Err(StoreError(
                "a snapshot restores only into an empty store".into(),
            ));
        }
        let prepared = storage.prepare_commit(self.manifest.height, &self.changes)?;
        if prepared.root != self.manifest.root {
            return Err(StoreError(format!(
                "restored root {} is not the snapshot's root {}",
                hex(&prepared.root),
                hex(&self.manifest.root)
            )));
        }
        if prepared.root.as_slice() != trusted_app_hash {
            return Err(StoreError(format!(
                "restored root {} is not the trusted app hash {}",
                hex(&prepared.root),
                hex(trusted_app_hash)
            )));
        }
        storage.commit(prepared)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Overlay, StateWrite, StorageConfig};
    use proptest::prelude::*;

    fn store() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), StorageConfig { keep_recent: 0 }).unwrap();
        (dir, s)
    }

    fn commit(s: &Storage, version: u64, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> [u8; 32] {
        let mut o = Overlay::new(s.latest());
        for (k, v) in writes {
            match v {
                Some(v) => o.put_raw(k.clone(), v.clone()),
                None => o.delete_raw(k.clone()),
            }
        }
        let p = s.prepare_commit(version, o.changes()).unwrap();
        s.commit(p).unwrap()
    }

    fn restore(e: &Exported) -> (tempfile::TempDir, Storage, [u8; 32]) {
        let (dir, s) = store();
        let mut r = Restore::new(Manifest::decode(&e.manifest.encode()).unwrap());
        for (i, c) in e.chunks.iter().enumerate() {
            r.apply_chunk(i as u32, c).unwrap();
        }
        let root = r.finish(&s, &e.manifest.root).unwrap();
        (dir, s, root)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Random histories export and restore to the same root and the same
        /// key-value pairs, at any chunk size.
        #[test]
        fn export_then_restore_round_trips_to_the_same_root(
            blocks in proptest::collection::vec(
                proptest::collection::vec(
                    (proptest::collection::vec(0u8..8, 1..6), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))),
                    0..20),
                1..6),
            chunk_bytes in 64usize..600,
        ) {
            let (_d, s) = store();
            let mut root = [0u8; 32];
            for (i, b) in blocks.iter().enumerate() {
                root = commit(&s, i as u64 + 1, b);
            }
            let v = blocks.len() as u64;
            let e = export(&s, v, chunk_bytes).unwrap();
            prop_assert_eq!(e.manifest.root, root);
            let (_d2, s2, restored) = restore(&e);
            prop_assert_eq!(restored, root);
            prop_assert_eq!(s2.latest_version(), Some(v));
            // Same pairs on both sides.
            let pairs = |st: &Storage| st.latest().prefix_raw(b"").unwrap();
            prop_assert_eq!(pairs(&s), pairs(&s2));
            // And the restored store exports byte-identical chunks.
            prop_assert_eq!(export(&s2, v, chunk_bytes).unwrap(), e);
        }
    }

    #[test]
    fn the_same_state_reached_by_different_histories_exports_identical_bytes() {
        let (_a, a) = store();
        commit(
            &a,
            1,
            &[
                (b"x".to_vec(), Some(b"1".to_vec())),
                (b"gone".to_vec(), Some(b"z".to_vec())),
            ],
        );
        commit(
            &a,
            2,
            &[
                (b"gone".to_vec(), None),
                (b"y".to_vec(), Some(b"2".to_vec())),
            ],
        );
        let (_b, b) = store();
        commit(&b, 1, &[(b"y".to_vec(), Some(b"2".to_vec()))]);
        commit(&b, 2, &[(b"x".to_vec(), Some(b"1".to_vec()))]);
        assert_eq!(export(&a, 2, 64).unwrap(), export(&b, 2, 64).unwrap());
    }

    #[test]
    fn a_corrupted_chunk_is_refused_and_its_good_copy_accepted() {
        let (_d, s) = store();
        let writes: Vec<_> = (0..200u32)
            .map(|i| (format!("key/{i:04}").into_bytes(), Some(vec![i as u8; 30])))
            .collect();
        let root = commit(&s, 7, &writes);
        let e = export(&s, 7, 1000).unwrap();
        assert!(e.chunks.len() > 3, "{}", e.chunks.len());
        let mut r = Restore::new(e.manifest.clone());
        r.apply_chunk(0, &e.chunks[0]).unwrap();
        let mut bad = e.chunks[1].clone();
        bad[10] ^= 1;
        assert_eq!(
            r.apply_chunk(1, &bad),
            Err(ChunkError::WrongHash { index: 1 })
        );
        assert_eq!(
            r.apply_chunk(2, &e.chunks[2]),
            Err(ChunkError::OutOfOrder {
                index: 2,
                expected: 1
            })
        );
        for i in 1..e.chunks.len() {
            r.apply_chunk(i as u32, &e.chunks[i]).unwrap();
        }
        let (_d2, s2) = store();
        // A wrong trusted app hash writes nothing.
        let r2 = {
            let mut r2 = Restore::new(e.manifest.clone());
            for (i, c) in e.chunks.iter().enumerate() {
                r2.apply_chunk(i as u32, c).unwrap();
            }
            r2
        };
        assert!(r2
            .finish(&s2, &[0u8; 32])
            .unwrap_err()
            .0
            .contains("trusted app hash"));
        assert_eq!(s2.latest_version(), None);
        assert_eq!(r.finish(&s2, &root).unwrap(), root);
    }

    #[test]
    fn bad_manifests_are_refused() {
        assert!(Manifest::decode(b"junk").is_err());
        let m = Manifest {
            format: 2,
            height: 1,
            root: [0; 32],
            chunk_hashes: vec![[0; 32]],
        };
        assert!(Manifest::decode(&m.encode())
            .unwrap_err()
            .0
            .contains("format 2"));
        let m = Manifest {
            format: 1,
            height: 1,
            root: [0; 32],
            chunk_hashes: vec![],
        };
        assert!(Manifest::decode(&m.encode()).is_err());
    }
}
