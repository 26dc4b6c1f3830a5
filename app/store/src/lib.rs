//! kiln-store: Kiln's authenticated, versioned state, and the
//! [`StateRead`]/[`StateWrite`] seam that consensus code uses to reach it.
//!
//! # Overview
//!
//! Consensus code only sees [`StateRead`] / [`StateWrite`] and the in-memory
//! [`Overlay`] (module [`state`]). A block executes in an `Overlay` over
//! [`Storage::latest`]; at ABCI `FinalizeBlock` the app turns the overlay's
//! [`Changes`] into a [`PreparedCommit`] with [`Storage::prepare_commit`], which
//! computes the new root (the app hash) **without writing anything**; at ABCI
//! `Commit` it persists it with [`Storage::commit`], one atomic rocksdb write
//! batch. A crash in between leaves the previous version on disk and CometBFT
//! replays the block.
//!
//! ```text
//!   Overlay<Snapshot> --changes--> prepare_commit(v) --PreparedCommit{v, root}--> commit
//!        ^                           (JMT in memory)        (+ put_aux)          (1 WriteBatch,
//!        |                                                                        then pruning)
//!   Storage::latest() / snapshot(v) / get_with_proof(key, v) / get_aux(key)
//! ```
//!
//! ```
//! use kiln_store::{verify_proof, Overlay, StateRead, StateWrite, Storage, StorageConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let storage = Storage::open(dir.path(), StorageConfig { keep_recent: 100 })?;
//! let mut block = Overlay::new(storage.latest());
//! block.put_raw(b"bank/balance/alice".to_vec(), b"100".to_vec());
//! // FinalizeBlock: the app hash, nothing written yet.
//! let mut prepared = storage.prepare_commit(1, block.changes())?;
//! prepared.put_aux(b"last_height".to_vec(), 1u64.to_be_bytes().to_vec());
//! // Commit: one atomic write.
//! let app_hash = storage.commit(prepared)?;
//! assert_eq!(storage.latest_version(), Some(1));
//! assert_eq!(storage.latest().get_raw(b"bank/balance/alice")?, Some(b"100".to_vec()));
//! let (value, proof) = storage.get_with_proof(b"bank/balance/alice", 1)?;
//! assert!(verify_proof(&app_hash, b"bank/balance/alice", value.as_deref(), &proof));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is verifiable
//!
//! * **Verifiable state** — every key written through [`Changes`]. Each
//!   version's root is the root of a Jellyfish Merkle Tree (`jmt` 0.12,
//!   SHA-256) whose leaves are placed at `key_hash = SHA-256(raw_key)` and hold
//!   `SHA-256(value)`. Versions are block heights; [`Storage::root_hash`] is the
//!   app hash. Hashes do not depend on versions, insertion order or history,
//!   only on the set of `(key, value)` pairs: the same state always has the
//!   same root. The empty tree's root is [`EMPTY_ROOT`] (the 32 ASCII bytes
//!   `SPARSE_MERKLE_PLACEHOLDER_HASH__`, JMT's placeholder).
//!   [`Storage::get_with_proof`] returns a borsh-encoded `jmt`
//!   `SparseMerkleProof<Sha256>` (inclusion or exclusion) that
//!   [`verify_proof`] checks against a root.
//!   `prepare_commit` applies a block's deletions with jmt's `put_value_set`,
//!   then all its writes at once with `batch_put_value_sets` (which hashes each
//!   touched node once), merging the two passes into one version; unit tests
//!   check the root against jmt's one-key-at-a-time reference.
//! * **Non-verifiable auxiliary data** — [`PreparedCommit::put_aux`] /
//!   [`Storage::get_aux`]: a plain key-value space (last block info, indexes)
//!   written in the same batch as the commit, never hashed, not versioned.
//!
//! # On-disk layout (rocksdb column families)
//!
//! `be(x)` is the 8-byte big-endian encoding of a `u64`; `‖` is concatenation;
//! `list(items)` is each item as `4-byte big-endian length ‖ bytes`, concatenated
//! (one entry per version rather than one per key keeps commits cheap).
//! Every key is built in `storage/keys.rs`.
//!
//! | column family | key | value | purpose |
//! |---|---|---|---|
//! | `state` | `raw_key` | `value` | flat copy of the **latest** version: fast reads of [`Storage::latest`] |
//! | `versioned` | `escape(raw_key) ‖ be(u64::MAX - version)` | `0x01 ‖ value`, or `0x00` (deleted) | every version of every key: historical reads, JMT values |
//! | `changelog` | `be(version)` | `list(raw_key)` | which keys changed at a version (drives value pruning) |
//! | `preimage` | `SHA-256(raw_key)` | `raw_key` | JMT key hash → raw key (jmt's `get_value_option`) |
//! | `jmt_nodes` | `be(node_version) ‖ borsh(nibble_path)` | `borsh(jmt Node)` | the tree, every retained version |
//! | `jmt_stale` | `be(stale_since_version)` | `list(jmt_nodes key)` | nodes no longer part of the tree from `stale_since_version` on |
//! | `aux` | app-chosen key | app-chosen value | non-verifiable metadata |
//! | `meta` | `latest_version` / `earliest_version` | `be(version)` | the retained version range |
//!
//! **`escape`** makes variable-length keys safe to suffix with a version:
//! every `0x00` byte of the raw key becomes `0x00 0xFF`, and `0x00 0x01`
//! terminates it. The encoding preserves byte order (`a < b` iff
//! `escape(a) < escape(b)`) and is prefix-free, so `b"a"` and `b"a\0"` never
//! interleave. All raw keys starting with a prefix `p` are exactly the
//! versioned keys starting with `escape(p)` minus its terminator. Within one
//! key, versions sort newest first, so:
//! * historical get of `k` at `v` = one seek to `escape(k) ‖ be(u64::MAX - v)`:
//!   the first entry of that key is the newest version `<= v`;
//! * historical prefix scan at `v` = walk the keys under the escaped prefix,
//!   one seek per distinct key to its newest version `<= v`, then a seek past
//!   the key (`escape(k)` with its last byte `0x01` → `0x02`).
//!
//! # Snapshots and concurrency
//!
//! [`Storage`] is `Clone + Send + Sync` (an `Arc` inside); so is [`Snapshot`].
//! Queries read snapshots while the application prepares the next block;
//! commits are serialised by a mutex and a prepared commit whose base version
//! is no longer the latest is rejected. A snapshot of the latest version reads
//! the flat `state` family; a generation counter, bumped before each commit's
//! write, tells it when that family moved on, after which it reads the
//! `versioned` family at its own version instead, with the same results.
//!
//! # Pruning
//!
//! With [`StorageConfig::keep_recent`] `= n > 0`, committing version `v` makes
//! `v - n` the earliest retained version `e` (so `n + 1` versions stay
//! readable) and, in a second write batch, deletes: every JMT node with
//! `stale_since_version <= e` (and its stale-index entry); for every key in
//! the changelog at versions `<= e`, every versioned entry older than the
//! newest one `<= e`, and that one too if it is a deletion (its preimage goes
//! when nothing is left); the consumed changelog entries. Snapshots,
//! `root_hash` and proofs of versions `< e` then fail with an error. A crash
//! between the commit batch and the prune batch only delays pruning to the
//! next commit. `keep_recent = 0` keeps every version.
//!
//! # Crash safety
//!
//! `commit` writes nodes, values, flat state, changelog, aux data and
//! `meta/latest_version` in one rocksdb `WriteBatch` (WAL on, no fsync per
//! batch: survives a process crash; an OS crash may lose the last commits,
//! which CometBFT replays). Nothing is written by `prepare_commit`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// `Result<Vec<(Vec<u8>, Vec<u8>)>, _>` is the seam's `prefix_raw` type; spelled out on purpose.
#![allow(clippy::type_complexity)]

/// The state traits live in `kiln-state` (no storage engine) so modules and clients
/// need not link rocksdb; re-exported here for the app.
pub use kiln_state as state;
pub mod snapshot;
pub mod storage;

pub use kiln_state::{Changes, EmptyState, Overlay, StateRead, StateWrite, StoreError};
pub use storage::{
    key_hash, verify_proof, PreparedCommit, Snapshot, Storage, StorageConfig, EMPTY_ROOT,
};
