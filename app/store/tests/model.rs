//! Property test: `Storage` behaves like a `BTreeMap` per version, over random
//! sequences of puts, deletes, commits, reopens and historical reads, with and
//! without pruning.

use std::collections::BTreeMap;

use kiln_store::{verify_proof, Changes, StateRead, Storage, StorageConfig};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tempfile::TempDir;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Commit,
    Reopen,
    /// Check a version `n` back from the latest, and prefix scans.
    Check(u8),
}

/// Short keys over a tiny alphabet, so keys are often prefixes of each other
/// and contain the escape bytes.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xFF]), 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), prop::collection::vec(any::<u8>(), 0..3)).prop_map(|(k, v)| Op::Put(k, v)),
        3 => key().prop_map(Op::Delete),
        3 => Just(Op::Commit),
        1 => Just(Op::Reopen),
        2 => any::<u8>().prop_map(Op::Check),
    ]
}

fn check_version(storage: &Storage, version: u64, model: &State) {
    let snap = storage.snapshot(version).unwrap();
    let prefixes: [&[u8]; 6] = [b"", b"\0", b"a", b"a\0", b"\xff", b"\x01a"];
    for p in prefixes {
        let want: Vec<_> = model
            .iter()
            .filter(|(k, _)| k.starts_with(p))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            snap.prefix_raw(p).unwrap(),
            want,
            "prefix {p:?} at {version}"
        );
    }
    for (k, v) in model {
        assert_eq!(
            snap.get_raw(k).unwrap().as_ref(),
            Some(v),
            "get {k:?} at {version}"
        );
    }
    for absent in [&b"zz"[..], b"a\0\0\0\0"] {
        assert_eq!(snap.get_raw(absent).unwrap().as_ref(), model.get(absent));
    }
    // Every key (and an absent one) is provable against the version's root.
    let root = storage.root_hash(version).unwrap();
    for key in model.keys().map(Vec::as_slice).chain([&b"zz"[..]]) {
        let (value, proof) = storage.get_with_proof(key, version).unwrap();
        assert_eq!(value.as_ref(), model.get(key));
        assert!(
            verify_proof(&root, key, value.as_deref(), &proof),
            "proof of {key:?} at {version}"
        );
    }
}

fn run(ops: Vec<Op>, keep_recent: u64, first_version: u64) {
    let dir = TempDir::new().unwrap();
    let config = StorageConfig { keep_recent };
    let mut storage = Storage::open(dir.path(), config).unwrap();
    let mut pending = Changes::new();
    let mut current = State::new();
    let mut history: BTreeMap<u64, State> = BTreeMap::new();
    let mut roots: BTreeMap<State, [u8; 32]> = BTreeMap::new();

    for op in ops {
        match op {
            Op::Put(k, v) => {
                pending.insert(k, Some(v));
            }
            Op::Delete(k) => {
                pending.insert(k, None);
            }
            Op::Commit => {
                let version = storage.latest_version().map_or(first_version, |v| v + 1);
                for (k, v) in &pending {
                    match v {
                        Some(v) => current.insert(k.clone(), v.clone()),
                        None => current.remove(k),
                    };
                }
                let prepared = storage
                    .prepare_commit(version, &std::mem::take(&mut pending))
                    .unwrap();
                let root = storage.commit(prepared).unwrap();
                // Same state <=> same root.
                let known = roots.entry(current.clone()).or_insert(root);
                assert_eq!(*known, root);
                assert_eq!(
                    roots.values().filter(|r| **r == root).count(),
                    1,
                    "root collision"
                );
                history.insert(version, current.clone());
                // The latest view is always exact.
                let latest: State = storage
                    .latest()
                    .prefix_raw(b"")
                    .unwrap()
                    .into_iter()
                    .collect();
                assert_eq!(latest, current);
            }
            Op::Reopen => {
                let latest = storage.latest_version();
                let root = latest.map(|v| storage.root_hash(v).unwrap());
                drop(storage);
                storage = Storage::open(dir.path(), config).unwrap();
                assert_eq!(storage.latest_version(), latest);
                assert_eq!(latest.map(|v| storage.root_hash(v).unwrap()), root);
                pending.clear(); // uncommitted writes die with the process
            }
            Op::Check(back) => {
                let Some(latest) = storage.latest_version() else {
                    continue;
                };
                let earliest = storage.earliest_version().unwrap();
                let version = latest.saturating_sub(u64::from(back) % 8).max(earliest);
                check_version(&storage, version, &history[&version]);
                // A proof for one key of that version.
                let root = storage.root_hash(version).unwrap();
                let key = history[&version].keys().next().cloned().unwrap_or_default();
                let (value, proof) = storage.get_with_proof(&key, version).unwrap();
                assert_eq!(value.as_ref(), history[&version].get(&key));
                assert!(verify_proof(&root, &key, value.as_deref(), &proof));
            }
        }
    }

    // Retention: exactly the expected window is readable, and it is exact.
    if let Some(latest) = storage.latest_version() {
        let expected_earliest = if keep_recent == 0 {
            first_version
        } else {
            latest.saturating_sub(keep_recent).max(first_version)
        };
        assert_eq!(storage.earliest_version(), Some(expected_earliest));
        for (version, state) in &history {
            if *version < expected_earliest {
                assert!(storage.snapshot(*version).is_err());
            } else {
                check_version(&storage, *version, state);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        .. ProptestConfig::default()
    })]

    #[test]
    fn store_matches_a_btreemap_model(
        ops in prop::collection::vec(op(), 0..60),
        keep_recent in prop::sample::select(vec![0u64, 1, 3]),
        first_version in prop::sample::select(vec![0u64, 1, 1000]),
    ) {
        run(ops, keep_recent, first_version);
    }
}
