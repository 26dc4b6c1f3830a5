//! Behaviour of `Storage`: versions, historical reads, roots, reopen, pruning,
//! proofs, aux data and concurrent snapshots.

use std::collections::BTreeMap;

use kiln_store::{
    verify_proof, Changes, Overlay, StateRead, StateWrite, Storage, StorageConfig, EMPTY_ROOT,
};
use tempfile::TempDir;

fn open(dir: &TempDir, keep_recent: u64) -> Storage {
    Storage::open(dir.path(), StorageConfig { keep_recent }).unwrap()
}

fn changes(items: &[(&[u8], Option<&[u8]>)]) -> Changes {
    items
        .iter()
        .map(|(k, v)| (k.to_vec(), v.map(|v| v.to_vec())))
        .collect()
}

fn commit(storage: &Storage, version: u64, c: &Changes) -> [u8; 32] {
    let prepared = storage.prepare_commit(version, c).unwrap();
    let root = prepared.root;
    assert_eq!(storage.commit(prepared).unwrap(), root);
    root
}

fn keys_of(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Vec<u8>> {
    pairs.into_iter().map(|(k, _)| k).collect()
}

#[test]
fn empty_store_has_no_version_and_reads_nothing() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 0);
    assert_eq!(s.latest_version(), None);
    assert!(s.root_hash(0).is_err());
    assert!(s.snapshot(1).is_err());
    let latest = s.latest();
    assert_eq!(latest.get_raw(b"a").unwrap(), None);
    assert!(latest.prefix_raw(b"").unwrap().is_empty());
    assert_eq!(latest.root_hash().unwrap(), EMPTY_ROOT);
}

#[test]
fn first_commit_may_start_at_any_height_and_empty_tree_root_is_documented() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 0);
    let root = commit(&s, 5, &Changes::new());
    assert_eq!(root, EMPTY_ROOT);
    assert_eq!(s.root_hash(5).unwrap(), EMPTY_ROOT);
    assert!(
        s.prepare_commit(7, &Changes::new()).is_err(),
        "versions must be consecutive"
    );
    let root6 = commit(&s, 6, &changes(&[(b"k", Some(b"v"))]));
    assert_ne!(root6, EMPTY_ROOT);
    let root7 = commit(&s, 7, &changes(&[(b"k", None)]));
    assert_eq!(
        root7, EMPTY_ROOT,
        "deleting every key gives the empty root again"
    );

    let dir0 = TempDir::new().unwrap();
    let s0 = open(&dir0, 0);
    assert_eq!(commit(&s0, 0, &Changes::new()), EMPTY_ROOT);
    assert_eq!(commit(&s0, 1, &changes(&[(b"k", Some(b"v"))])), root6);
}

#[test]
fn put_get_delete_across_versions() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 0);
    commit(&s, 1, &changes(&[(b"a", Some(b"1")), (b"b", Some(b"2"))]));
    commit(&s, 2, &changes(&[(b"a", Some(b"10")), (b"c", Some(b"3"))]));
    commit(&s, 3, &changes(&[(b"b", None), (b"zz", None)]));
    assert_eq!(s.latest_version(), Some(3));

    let latest = s.latest();
    assert_eq!(latest.version(), Some(3));
    assert_eq!(latest.get_raw(b"a").unwrap(), Some(b"10".to_vec()));
    assert_eq!(latest.get_raw(b"b").unwrap(), None);
    assert_eq!(latest.get_raw(b"c").unwrap(), Some(b"3".to_vec()));

    let v1 = s.snapshot(1).unwrap();
    assert_eq!(v1.get_raw(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(v1.get_raw(b"b").unwrap(), Some(b"2".to_vec()));
    assert_eq!(v1.get_raw(b"c").unwrap(), None);
    let v2 = s.snapshot(2).unwrap();
    assert_eq!(v2.get_raw(b"a").unwrap(), Some(b"10".to_vec()));
    assert_eq!(v2.get_raw(b"b").unwrap(), Some(b"2".to_vec()));
    assert_eq!(
        v2.prefix_raw(b"").unwrap(),
        vec![
            (b"a".to_vec(), b"10".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
            (b"c".to_vec(), b"3".to_vec())
        ]
    );
    assert!(s.snapshot(4).is_err());
    assert!(s.snapshot(0).is_err());
}

#[test]
fn historical_prefix_scans_handle_keys_that_prefix_each_other() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 0);
    let all: Vec<&[u8]> = vec![
        b"", b"a", b"a\0", b"a\0\0", b"a\0b", b"a\x01", b"ab", b"a/x", b"a\xff", b"b", b"\0",
    ];
    let mut model: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = Vec::new();
    let mut state = BTreeMap::new();
    for version in 1..=6u64 {
        let mut c = Changes::new();
        for (i, k) in all.iter().enumerate() {
            match (i as u64 + version) % 3 {
                0 => c.insert(k.to_vec(), Some(format!("{k:?}@{version}").into_bytes())),
                1 if version % 2 == 0 => c.insert(k.to_vec(), None),
                _ => None,
            };
        }
        for (k, v) in &c {
            match v {
                Some(v) => state.insert(k.clone(), v.clone()),
                None => state.remove(k),
            };
        }
        commit(&s, version, &c);
        model.push(state.clone());
    }
    let prefixes: Vec<&[u8]> = vec![
        b"", b"a", b"a\0", b"a\0\0", b"a\x01", b"a/", b"b", b"\0", b"c",
    ];
    for version in 1..=6u64 {
        let snap = s.snapshot(version).unwrap();
        let expected = &model[version as usize - 1];
        for k in &all {
            assert_eq!(
                snap.get_raw(k).unwrap().as_ref(),
                expected.get(*k),
                "get {k:?} @ {version}"
            );
        }
        for p in &prefixes {
            let want: Vec<(Vec<u8>, Vec<u8>)> = expected
                .iter()
                .filter(|(k, _)| k.starts_with(p))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(
                snap.prefix_raw(p).unwrap(),
                want,
                "prefix {p:?} @ {version}"
            );
        }
    }
    // The latest snapshot (flat keyspace) agrees with the versioned keyspace.
    let latest = s.latest();
    for p in &prefixes {
        assert_eq!(
            latest.prefix_raw(p).unwrap(),
            s.snapshot(6).unwrap().prefix_raw(p).unwrap()
        );
    }
}

#[test]
fn root_changes_iff_state_changes() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 0);
    let r1 = commit(&s, 1, &changes(&[(b"a", Some(b"1")), (b"b", Some(b"2"))]));
    let r2 = commit(&s, 2, &Changes::new());
    assert_eq!(r1, r2, "empty block");
    let r3 = commit(&s, 3, &changes(&[(b"a", Some(b"1"))]));
    assert_eq!(r1, r3, "rewriting the same value");
    let r4 = commit(&s, 4, &changes(&[(b"nope", None)]));
    assert_eq!(r1, r4, "deleting an absent key");
    let r5 = commit(&s, 5, &changes(&[(b"a", Some(b"1!"))]));
    assert_ne!(r1, r5);
    let r6 = commit(&s, 6, &changes(&[(b"c", Some(b""))]));
    assert_ne!(r5, r6, "an empty value is still a value");
    let r7 = commit(&s, 7, &changes(&[(b"c", None), (b"a", Some(b"1"))]));
    assert_eq!(r1, r7, "back to the first state, back to the first root");
    for (v, r) in [(1, r1), (2, r2), (5, r5), (6, r6), (7, r7)] {
        assert_eq!(s.root_hash(v).unwrap(), r);
    }
}

#[test]
fn same_state_reached_differently_has_the_same_root() {
    let items: Vec<(Vec<u8>, Vec<u8>)> = (0..200u32)
        .map(|i| (format!("key/{i}").into_bytes(), i.to_be_bytes().to_vec()))
        .collect();

    // A: one block, written forwards through an overlay.
    let dir_a = TempDir::new().unwrap();
    let a = open(&dir_a, 0);
    let mut overlay = Overlay::new(a.latest());
    for (k, v) in &items {
        overlay.put_raw(k.clone(), v.clone());
    }
    let root_a = commit(&a, 1, overlay.changes());

    // B: two blocks, written backwards, with a detour through other values.
    let dir_b = TempDir::new().unwrap();
    let b = open(&dir_b, 0);
    let mut overlay = Overlay::new(b.latest());
    for (k, v) in items.iter().rev() {
        overlay.put_raw(k.clone(), v.iter().map(|x| !x).collect());
        overlay.put_raw(k.clone(), v.clone());
    }
    overlay.put_raw(b"extra".to_vec(), b"x".to_vec());
    let first: Changes = overlay
        .changes()
        .iter()
        .filter(|(k, _)| k.len() % 2 == 0)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let second: Changes = overlay
        .changes()
        .iter()
        .filter(|(k, _)| k.len() % 2 == 1)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    commit(&b, 10, &second);
    let mut rest = first;
    rest.insert(b"extra".to_vec(), None);
    let root_b = commit(&b, 11, &rest);
    assert_eq!(root_a, root_b);
}

#[test]
fn reopen_yields_same_version_root_and_values() {
    let dir = TempDir::new().unwrap();
    let (root, root1) = {
        let s = open(&dir, 0);
        let root1 = commit(&s, 1, &changes(&[(b"a", Some(b"1")), (b"b", Some(b"2"))]));
        let mut p = s
            .prepare_commit(2, &changes(&[(b"a", None), (b"c", Some(b"3"))]))
            .unwrap();
        p.put_aux(b"last_block".to_vec(), b"2".to_vec());
        (s.commit(p).unwrap(), root1)
    };
    let s = open(&dir, 0);
    assert_eq!(s.latest_version(), Some(2));
    assert_eq!(s.root_hash(2).unwrap(), root);
    assert_eq!(s.root_hash(1).unwrap(), root1);
    let latest = s.latest();
    assert_eq!(latest.get_raw(b"a").unwrap(), None);
    assert_eq!(latest.get_raw(b"c").unwrap(), Some(b"3".to_vec()));
    assert_eq!(
        s.snapshot(1).unwrap().get_raw(b"a").unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(s.get_aux(b"last_block").unwrap(), Some(b"2".to_vec()));
    // And it continues from there.
    let root3 = commit(&s, 3, &changes(&[(b"a", Some(b"1")), (b"c", None)]));
    assert_eq!(root3, root1);
}

#[test]
fn prepared_but_uncommitted_version_is_invisible_after_reopen() {
    let dir = TempDir::new().unwrap();
    let root1 = {
        let s = open(&dir, 0);
        let root1 = commit(&s, 1, &changes(&[(b"a", Some(b"1"))]));
        let mut p = s
            .prepare_commit(2, &changes(&[(b"a", Some(b"2"))]))
            .unwrap();
        p.put_aux(b"k".to_vec(), b"v".to_vec());
        assert_ne!(p.root, root1);
        assert_eq!(s.latest().get_raw(b"a").unwrap(), Some(b"1".to_vec()));
        drop(p); // the process "dies" here
        root1
    };
    let s = open(&dir, 0);
    assert_eq!(s.latest_version(), Some(1));
    assert_eq!(s.root_hash(1).unwrap(), root1);
    assert!(s.root_hash(2).is_err());
    assert_eq!(s.latest().get_raw(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get_aux(b"k").unwrap(), None);
    // Replaying the block gives the same root as before.
    let p = s
        .prepare_commit(2, &changes(&[(b"a", Some(b"2"))]))
        .unwrap();
    assert_eq!(s.commit(p).unwrap(), s.root_hash(2).unwrap());
}

#[test]
fn stale_prepared_commit_is_rejected() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 0);
    commit(&s, 1, &changes(&[(b"a", Some(b"1"))]));
    let p1 = s
        .prepare_commit(2, &changes(&[(b"a", Some(b"2"))]))
        .unwrap();
    let p2 = s
        .prepare_commit(2, &changes(&[(b"a", Some(b"3"))]))
        .unwrap();
    s.commit(p2).unwrap();
    assert!(s.commit(p1).is_err());
    assert_eq!(s.latest().get_raw(b"a").unwrap(), Some(b"3".to_vec()));
}

#[test]
fn aux_data_is_written_with_the_commit_and_not_hashed() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 0);
    let c = changes(&[(b"a", Some(b"1"))]);
    let mut p = s.prepare_commit(1, &c).unwrap();
    let root_before = p.root;
    p.put_aux(b"height".to_vec(), b"1".to_vec());
    p.put_aux(b"tmp".to_vec(), b"x".to_vec());
    assert_eq!(s.get_aux(b"height").unwrap(), None);
    assert_eq!(s.commit(p).unwrap(), root_before);
    assert_eq!(s.get_aux(b"height").unwrap(), Some(b"1".to_vec()));
    let mut p = s.prepare_commit(2, &Changes::new()).unwrap();
    p.delete_aux(b"tmp".to_vec());
    s.commit(p).unwrap();
    assert_eq!(s.get_aux(b"tmp").unwrap(), None);
    assert_eq!(
        s.latest().get_raw(b"height").unwrap(),
        None,
        "aux is not state"
    );
}

#[test]
fn pruning_drops_old_versions_keeps_latest_and_bounds_the_db() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 3);
    let mut counts_at = BTreeMap::new();
    let mut model = BTreeMap::new();
    for version in 1..=120u64 {
        let mut c = Changes::new();
        // A stable working set rewritten every block...
        for i in 0..30u64 {
            c.insert(
                format!("acct/{i}").into_bytes(),
                Some((version * 31 + i).to_be_bytes().to_vec()),
            );
        }
        // ...plus short-lived keys created and deleted (churn).
        c.insert(format!("tmp/{version}").into_bytes(), Some(b"t".to_vec()));
        if version > 2 {
            c.insert(format!("tmp/{}", version - 2).into_bytes(), None);
        }
        for (k, v) in &c {
            match v {
                Some(v) => model.insert(k.clone(), v.clone()),
                None => model.remove(k),
            };
        }
        commit(&s, version, &c);
        if version == 60 || version == 120 {
            counts_at.insert(version, s.debug_key_counts().unwrap());
        }
    }
    assert_eq!(s.earliest_version(), Some(117));
    for old in [1, 50, 116] {
        assert!(s.snapshot(old).is_err(), "version {old} should be pruned");
        assert!(s.root_hash(old).is_err());
        assert!(s.get_with_proof(b"acct/1", old).is_err());
    }
    for kept in 117..=120 {
        let snap = s.snapshot(kept).unwrap();
        assert_eq!(
            snap.get_raw(b"acct/0").unwrap(),
            Some((kept * 31).to_be_bytes().to_vec())
        );
        assert_eq!(snap.prefix_raw(b"tmp/").unwrap().len(), 2);
        s.root_hash(kept).unwrap();
    }
    let latest: BTreeMap<_, _> = s.latest().prefix_raw(b"").unwrap().into_iter().collect();
    assert_eq!(latest, model);
    assert_eq!(
        s.snapshot(120)
            .unwrap()
            .prefix_raw(b"")
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        model
    );
    // The DB stops growing once the retention window is full.
    for (cf, &at60) in &counts_at[&60] {
        let at120 = counts_at[&120][cf];
        assert!(
            at120 <= at60 + at60 / 10 + 5,
            "{cf} grew from {at60} to {at120}: {counts_at:?}"
        );
    }
    // 4 retained versions of 30 accounts + a few tmp keys.
    assert!(counts_at[&120]["versioned"] <= 4 * 32 + 4, "{counts_at:?}");
    // And it survives a reopen with the window intact.
    drop(s);
    let s = open(&dir, 3);
    assert_eq!(s.earliest_version(), Some(117));
    assert!(s.snapshot(116).is_err());
    assert_eq!(
        s.snapshot(117).unwrap().get_raw(b"acct/0").unwrap(),
        Some((117u64 * 31).to_be_bytes().to_vec())
    );
}

#[test]
fn proofs_verify_for_present_and_absent_keys_and_fail_when_tampered() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 0);
    let c: Changes = (0..50u32)
        .map(|i| (format!("k{i}").into_bytes(), Some(vec![i as u8; 3])))
        .collect();
    let root1 = commit(&s, 1, &c);
    let root2 = commit(&s, 2, &changes(&[(b"k7", None), (b"k8", Some(b"new"))]));

    let (v, proof) = s.get_with_proof(b"k3", 2).unwrap();
    assert_eq!(v, Some(vec![3; 3]));
    assert!(verify_proof(&root2, b"k3", Some(&[3, 3, 3]), &proof));
    assert!(
        !verify_proof(&root2, b"k3", Some(&[3, 3, 4]), &proof),
        "tampered value"
    );
    assert!(!verify_proof(&root2, b"k3", None, &proof), "claims absence");
    assert!(
        !verify_proof(&root1.map(|b| b ^ 1), b"k3", Some(&[3, 3, 3]), &proof),
        "tampered root"
    );
    assert!(
        !verify_proof(&root2, b"k4", Some(&[3, 3, 3]), &proof),
        "other key"
    );
    assert!(
        !verify_proof(&root2, b"k3", Some(&[3, 3, 3]), &proof[..proof.len() - 1]),
        "truncated"
    );
    assert!(!verify_proof(&root2, b"k3", Some(&[3, 3, 3]), b"garbage"));

    let (v, proof) = s.get_with_proof(b"k7", 2).unwrap();
    assert_eq!(v, None);
    assert!(
        verify_proof(&root2, b"k7", None, &proof),
        "exclusion after delete"
    );
    assert!(!verify_proof(&root2, b"k7", Some(&[7, 7, 7]), &proof));
    let (v, proof) = s.get_with_proof(b"never", 2).unwrap();
    assert_eq!(v, None);
    assert!(verify_proof(&root2, b"never", None, &proof));

    // Historical proofs verify against the historical root only.
    let (v, proof) = s.get_with_proof(b"k7", 1).unwrap();
    assert_eq!(v, Some(vec![7; 3]));
    assert!(verify_proof(&root1, b"k7", Some(&[7, 7, 7]), &proof));
    assert!(!verify_proof(&root2, b"k7", Some(&[7, 7, 7]), &proof));
    let (v, proof) = s.get_with_proof(b"k8", 2).unwrap();
    assert_eq!(v.as_deref(), Some(&b"new"[..]));
    assert!(verify_proof(&root2, b"k8", Some(b"new"), &proof));

    // Empty tree.
    let dir = TempDir::new().unwrap();
    let e = open(&dir, 0);
    commit(&e, 1, &Changes::new());
    let (v, proof) = e.get_with_proof(b"x", 1).unwrap();
    assert_eq!(v, None);
    assert!(verify_proof(&EMPTY_ROOT, b"x", None, &proof));
}

#[test]
fn a_latest_snapshot_keeps_its_version_across_later_commits() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 0);
    let before_any = s.latest();
    commit(&s, 1, &changes(&[(b"a", Some(b"1")), (b"b", Some(b"1"))]));
    assert_eq!(before_any.get_raw(b"a").unwrap(), None);
    let snap = s.latest();
    let snap_by_version = s.snapshot(1).unwrap();
    commit(
        &s,
        2,
        &changes(&[(b"a", Some(b"2")), (b"b", None), (b"c", Some(b"2"))]),
    );
    for view in [&snap, &snap_by_version] {
        assert_eq!(view.version(), Some(1));
        assert_eq!(view.get_raw(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            keys_of(view.prefix_raw(b"").unwrap()),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }
    assert_eq!(
        keys_of(s.latest().prefix_raw(b"").unwrap()),
        vec![b"a".to_vec(), b"c".to_vec()]
    );
}

#[test]
fn queries_read_snapshots_while_blocks_commit() {
    let dir = TempDir::new().unwrap();
    let s = open(&dir, 5);
    commit(
        &s,
        1,
        &changes(&[(b"n", Some(&1u64.to_be_bytes())), (b"pair/1", Some(&[1]))]),
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let s = s.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut checks = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || checks < 20 {
                let snap = s.latest();
                let Some(v) = snap.version() else { continue };
                // Invariant: at version v, n == v and pair/{v} is the only pair.
                match snap.get_raw(b"n") {
                    Ok(n) => assert_eq!(n, Some(v.to_be_bytes().to_vec())),
                    Err(e) => assert!(e.0.contains("pruned"), "{e}"),
                }
                match snap.prefix_raw(b"pair/") {
                    Ok(p) => assert_eq!(keys_of(p), vec![format!("pair/{v}").into_bytes()]),
                    Err(e) => assert!(e.0.contains("pruned"), "{e}"),
                }
                checks += 1;
            }
            checks
        })
    };
    for v in 2..=60u64 {
        let mut c = changes(&[(b"n", Some(&v.to_be_bytes()))]);
        c.insert(format!("pair/{v}").into_bytes(), Some(vec![1]));
        c.insert(format!("pair/{}", v - 1).into_bytes(), None);
        commit(&s, v, &c);
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() >= 20);
}

fn assert_send_sync<T: Send + Sync + Clone>() {}

#[test]
fn storage_and_snapshot_are_send_sync_clone() {
    assert_send_sync::<Storage>();
    assert_send_sync::<kiln_store::Snapshot>();
}
