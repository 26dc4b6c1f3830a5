//! Micro benchmark: time to prepare + commit a block of 5 000 key updates on
//! top of a populated store. Prints the numbers; asserts only correctness.
//!
//! `cargo test -p kiln-store --release --test bench_commit -- --nocapture`

// A benchmark measures wall-clock time; it is not consensus code.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use kiln_store::{Changes, StateRead, Storage, StorageConfig};
use tempfile::TempDir;

/// CPU time of the calling thread (Linux `schedstat`), so the numbers mean
/// something on a loaded machine; `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

const BASE_KEYS: u64 = 50_000;
const BLOCK: u64 = 5_000;
const BLOCKS: u64 = 5;

fn key(i: u64) -> Vec<u8> {
    format!(
        "bank/balance/kiln1{:038x}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
    .into_bytes()
}

#[test]
fn prepare_and_commit_a_block_of_5000_updates() {
    let dir = TempDir::new().unwrap();
    let storage = Storage::open(dir.path(), StorageConfig { keep_recent: 2 }).unwrap();

    let genesis: Changes = (0..BASE_KEYS)
        .map(|i| (key(i), Some(i.to_be_bytes().repeat(4))))
        .collect();
    let t = Instant::now();
    let p = storage.prepare_commit(1, &genesis).unwrap();
    storage.commit(p).unwrap();
    println!("genesis: {BASE_KEYS} keys in {:?}", t.elapsed());

    let mut prepare = Vec::new();
    let mut commit = Vec::new();
    let mut cpu = Vec::new();
    for b in 0..BLOCKS {
        let version = 2 + b;
        // 4 000 updates of existing keys, 900 new keys, 100 deletes.
        let mut c = Changes::new();
        for j in 0..4_000 {
            let i = (b * 7_919 + j * 13) % BASE_KEYS;
            c.insert(
                key(i),
                Some((version * 1_000_003 + j).to_be_bytes().repeat(4)),
            );
        }
        for j in 0..900 {
            c.insert(key(BASE_KEYS + b * 1_000 + j), Some(vec![7; 32]));
        }
        let mut j = 0;
        while c.len() < BLOCK as usize {
            c.entry(key((b * 104_729 + j * 31 + 5) % BASE_KEYS))
                .or_insert(None);
            j += 1;
        }
        assert_eq!(c.len() as u64, BLOCK);
        let cpu0 = thread_cpu();
        let t = Instant::now();
        let p = storage.prepare_commit(version, &c).unwrap();
        prepare.push(t.elapsed());
        let t = Instant::now();
        storage.commit(p).unwrap();
        commit.push(t.elapsed());
        if let (Some(a), Some(b)) = (cpu0, thread_cpu()) {
            cpu.push(b - a);
        }
        let (k, v) = c.iter().next().unwrap();
        assert_eq!(&storage.latest().get_raw(k).unwrap(), v);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (p, c) = (median(&mut prepare), median(&mut commit));
    let cpu = if cpu.is_empty() {
        "n/a".to_string()
    } else {
        format!("{:?}", median(&mut cpu))
    };
    println!(
        "block of {BLOCK} updates on {BASE_KEYS} keys (median of {BLOCKS}): prepare {p:?} + commit {c:?} = {:?} wall, {cpu} thread CPU ({} build)",
        p + c,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
}
