//! State sync under the real CometBFT with lying peers: three validators
//! take snapshots of many small chunks; two of them serve every chunk
//! corrupted (an ABCI proxy between their CometBFT and their kilnd flips a
//! byte in each `ResponseLoadSnapshotChunk`), one serves them honestly. A
//! fresh node joins by state sync from all three: CometBFT fetches each chunk
//! from a random peer of the snapshot, so the liars serve some of them; the
//! joining kilnd refuses each corrupted chunk (its SHA-256 is not the
//! manifest's), asks CometBFT to refetch it and to reject its sender, and
//! the restore completes from the honest peer with the network's app hash.
//!
//! Determinism: CometBFT picks the peer of every chunk request at random
//! among the snapshot's peers not yet rejected. The restore only avoids the
//! liars if all of the snapshot's (at least [`MIN_CHUNKS`]) chunks are asked
//! of the honest peer: probability at most (1/3)^MIN_CHUNKS.

// A test, not consensus code: it waits on the wall clock for the network
// and runs the proxy on threads.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "common/testnet.rs"]
mod testnet;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tendermint_proto::v0_38::abci::{response, Response};
use testnet::Testnet;

/// Snapshot chunk size on every node, and accounts funded at genesis beside
/// the operators': a state of a few tens of kilobytes, snapshots of tens of
/// chunks.
const CHUNK_BYTES: &str = "1024";
const GENESIS_ACCOUNTS: usize = 200;
/// The test refuses a snapshot with fewer chunks than this (see the module
/// doc for why it bounds the chance that no liar is asked).
const MIN_CHUNKS: usize = 12;
const HONEST: u16 = 0;
const LIARS: [u16; 2] = [1, 2];
const JOINER: u16 = 3;

/// Reads one length-delimited frame (unsigned varint length, then the
/// body); `None` at a clean end of stream or on an error.
fn read_frame(reader: &mut impl Read) -> Option<Vec<u8>> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).ok()?;
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let mut body = vec![0u8; usize::try_from(len).ok()?];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// Forwards kilnd's answers to CometBFT frame by frame, flipping the last
/// byte of every non-empty snapshot chunk (counted in `corrupted`).
fn forward_answers(from_app: TcpStream, mut to_comet: TcpStream, corrupted: &AtomicUsize) {
    let mut reader = BufReader::new(from_app);
    while let Some(body) = read_frame(&mut reader) {
        let mut out = Vec::with_capacity(body.len() + 10);
        match Response::decode(body.as_slice()) {
            Ok(Response {
                value: Some(response::Value::LoadSnapshotChunk(mut answer)),
            }) if !answer.chunk.is_empty() => {
                let mut chunk = answer.chunk.to_vec();
                if let Some(last) = chunk.last_mut() {
                    *last ^= 0xff;
                }
                answer.chunk = chunk.into();
                Response {
                    value: Some(response::Value::LoadSnapshotChunk(answer)),
                }
                .encode_length_delimited(&mut out)
                .unwrap();
                corrupted.fetch_add(1, Ordering::SeqCst);
            }
            // Everything else goes through as the same bytes.
            _ => {
                prost::encoding::encode_varint(body.len() as u64, &mut out);
                out.extend_from_slice(&body);
            }
        }
        if to_comet.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to_comet.shutdown(Shutdown::Both);
}

/// An ABCI proxy on `listen` in front of the kilnd on `app`: requests pass
/// through untouched, snapshot chunks come back corrupted. Runs until the
/// test process ends.
fn start_lying_proxy(listen: SocketAddr, app: SocketAddr, corrupted: Arc<AtomicUsize>) {
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("proxy on {listen}: {e}"));
    std::thread::spawn(move || {
        for comet in listener.incoming() {
            let Ok(comet) = comet else { continue };
            let corrupted = corrupted.clone();
            std::thread::spawn(move || {
                // kilnd may still be starting (testnet.sh starts it right
                // before probing this port): retry for a while.
                let start = Instant::now();
                let upstream = loop {
                    match TcpStream::connect(app) {
                        Ok(s) => break s,
                        Err(_) if start.elapsed() < Duration::from_secs(30) => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        Err(_) => {
                            let _ = comet.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                };
                let _ = upstream.set_nodelay(true);
                let _ = comet.set_nodelay(true);
                let (mut comet_in, mut app_out) =
                    (comet.try_clone().unwrap(), upstream.try_clone().unwrap());
                let requests = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut comet_in, &mut app_out);
                    let _ = app_out.shutdown(Shutdown::Both);
                });
                forward_answers(upstream, comet, &corrupted);
                let _ = requests.join();
            });
        }
    });
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `name=value` in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
}

fn node_id(home: &Path) -> String {
    let out = std::process::Command::new(testnet::cometbft().unwrap())
        .args(["show-node-id", "--home"])
        .arg(home)
        .output()
        .unwrap();
    assert!(out.status.success(), "show-node-id: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The heights of the complete snapshots in a node's home, ascending.
fn snapshot_heights(home: &Path) -> Vec<u64> {
    let dir = home.join("data/snapshots");
    let mut heights: Vec<u64> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|h: &u64| dir.join(h.to_string()).join("manifest").exists())
                .collect()
        })
        .unwrap_or_default();
    heights.sort_unstable();
    heights
}

fn chunk_count(home: &Path, height: u64) -> usize {
    std::fs::read_dir(home.join(format!("data/snapshots/{height}")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("chunk-"))
        })
        .count()
}

#[test]
fn a_corrupted_snapshot_chunk_from_a_lying_peer_is_rejected_and_refetched() {
    if testnet::cometbft().is_none() {
        eprintln!("skipped: CometBFT is not installed (scripts/setup.sh installs it into .bin/)");
        return;
    }
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let accounts = work.path().join("accounts.json");
    let list: Vec<serde_json::Value> = (0..GENESIS_ACCOUNTS)
        .map(|i| {
            let address = kiln_framework::Address::from_bytes(&[i as u8 + 1; 20]).unwrap();
            serde_json::json!({"address": address.to_bech32(), "coins": "1000ukiln"})
        })
        .collect();
    std::fs::write(&accounts, serde_json::to_vec(&list).unwrap()).unwrap();
    let net = Testnet::up_with_env(
        3,
        1,
        false,
        "1s",
        vec![
            (
                "KILN_TESTNET_SNAPSHOT_CHUNK_BYTES".into(),
                CHUNK_BYTES.into(),
            ),
            (
                "KILN_TESTNET_GENESIS_ACCOUNTS".into(),
                accounts.display().to_string(),
            ),
        ],
    );
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

    // Each liar's kilnd moves to a spare port of its node (base+10i+4); the
    // proxy takes the ABCI port its CometBFT dials (base+10i+2). With one of
    // three validators down the chain waits; it resumes once they are back.
    let mut corrupted = Vec::new();
    for liar in LIARS {
        net.run(&["stop", &liar.to_string()]);
        let abci = net.port_base + 10 * liar + 2;
        let kilnd_abci = net.port_base + 10 * liar + 4;
        let config = net.home(liar).join("config/kilnd.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains("# abci = "), "{text}");
        std::fs::write(
            &config,
            text.replacen(
                "# abci = \"127.0.0.1:26658\"",
                &format!("abci = \"127.0.0.1:{kilnd_abci}\""),
                1,
            ),
        )
        .unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        start_lying_proxy(local(abci), local(kilnd_abci), count.clone());
        corrupted.push(count);
    }
    for liar in LIARS {
        net.run(&["start", &liar.to_string()]);
    }

    // Join right after a snapshot every node holds: the joining node asks
    // its peers for their snapshots as it connects, and it should find the
    // newest one at all three (the next is 10 blocks away).
    let homes: Vec<_> = (0..3).map(|n| net.home(n)).collect();
    let wait = Instant::now();
    let snapshot = loop {
        let newest: Vec<Option<u64>> = homes
            .iter()
            .map(|h| snapshot_heights(h).last().copied())
            .collect();
        if let (Some(Some(s)), Some(height)) = (newest.first(), net.height(HONEST)) {
            if newest.iter().all(|n| *n == Some(*s)) && height > *s && height <= s + 3 {
                break *s;
            }
        }
        assert!(
            wait.elapsed() < Duration::from_secs(60),
            "no snapshot common to all nodes right behind the tip: {newest:?}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let chunks = chunk_count(&homes[0], snapshot);
    assert!(
        chunks >= MIN_CHUNKS,
        "snapshot {snapshot} has {chunks} chunks; the test needs {MIN_CHUNKS}"
    );

    let out = net.script(&["add-node", "statesync"]);
    assert!(out.status.success(), "add-node: {out:?}");
    let target = net.height(HONEST).unwrap();
    net.run(&["start", &JOINER.to_string()]);
    let wait = Instant::now();
    loop {
        let status = net.get(JOINER, "/status");
        let caught_up = status.as_ref().is_some_and(|s| {
            let info = &s["result"]["sync_info"];
            info["catching_up"] == serde_json::Value::Bool(false)
                && info["latest_block_height"]
                    .as_str()
                    .and_then(|h| h.parse::<u64>().ok())
                    .is_some_and(|h| h >= target)
        });
        if caught_up {
            break;
        }
        assert!(
            wait.elapsed() < Duration::from_secs(90),
            "node{JOINER} did not catch up to {target} by state sync:\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // It restored a snapshot (not block sync from genesis) and has the
    // network's state.
    let joined = net.home(JOINER);
    let kilnd_log = strip_ansi(&std::fs::read_to_string(joined.join("kilnd.log")).unwrap());
    assert!(
        kilnd_log.contains("snapshot restored"),
        "node{JOINER} restored no snapshot:\n{kilnd_log}"
    );
    let h = net.height(JOINER).unwrap();
    net.wait_height(HONEST, h, Duration::from_secs(30));
    assert_eq!(
        net.app_hash_in_block(JOINER, h),
        net.app_hash_in_block(HONEST, h),
        "node{JOINER} and node{HONEST} disagree at height {h}"
    );

    // A state-synced node has the blocks, and their ABCI results, from the
    // one after the snapshot on; below that CometBFT says the height is not
    // available (it has no block there either).
    let earliest: u64 = net.get(JOINER, "/status").unwrap()["result"]["sync_info"]
        ["earliest_block_height"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(earliest > 1, "node{JOINER} has blocks from {earliest}");
    let missing = net.missing_block_results(JOINER, earliest, h - 1);
    assert!(
        missing.is_empty(),
        "node{JOINER} lacks block results: {missing:?}"
    );
    let below = net.missing_block_results(JOINER, earliest - 1, earliest - 1);
    assert!(
        below.len() == 1 && below[0].1.contains("is not available"),
        "{below:?}"
    );

    // The rejection path ran: the joining kilnd refused chunks that failed
    // their SHA-256, each from a liar, never from the honest node, and
    // CometBFT fetched them again (the restore completed). At most one
    // refusal per corrupted chunk the proxies served.
    let liar_ids: Vec<String> = LIARS.iter().map(|l| node_id(&net.home(*l))).collect();
    let honest_id = node_id(&net.home(HONEST));
    let refused: Vec<&str> = kilnd_log
        .lines()
        .filter(|l| l.contains("snapshot chunk failed its SHA-256"))
        .collect();
    let served: usize = corrupted.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    assert!(
        !refused.is_empty(),
        "no chunk was refused ({served} corrupted chunks served, snapshot of {chunks} chunks):\n{kilnd_log}"
    );
    for line in &refused {
        assert!(
            liar_ids
                .iter()
                .any(|id| line.contains(&format!("sender={id}"))),
            "a refused chunk from a sender that is not a liar: {line}"
        );
        assert!(!line.contains(&honest_id), "{line}");
    }
    assert!(
        refused.len() <= served,
        "{} refusals but the liars served {served} corrupted chunks",
        refused.len()
    );
    // Each refused chunk was fetched again and applied: CometBFT handed the
    // app that index once more after the refusal, and the restore finished.
    let comet_log = strip_ansi(&std::fs::read_to_string(joined.join("cometbft.log")).unwrap());
    assert!(
        comet_log.contains("Snapshot restored"),
        "CometBFT of node{JOINER} did not finish the restore:\n{comet_log}"
    );
    for line in &refused {
        let index = field(line, "index").unwrap_or_else(|| panic!("no index in {line}"));
        let applied = comet_log
            .lines()
            .filter(|l| {
                l.contains("Applied snapshot chunk to ABCI app") && field(l, "chunk") == Some(index)
            })
            .count();
        let refusals = refused
            .iter()
            .filter(|l| field(l, "index") == Some(index))
            .count();
        assert!(
            applied > refusals,
            "chunk {index}: refused {refusals} times but applied only {applied} times (never refetched)"
        );
    }
    println!(
        "snapshot {snapshot} of {chunks} chunks restored; {} corrupted chunks refused ({served} served by the liars); joined in {:.1}s, test {:.1}s",
        refused.len(),
        wait.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
