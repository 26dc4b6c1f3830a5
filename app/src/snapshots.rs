//! State-sync snapshots for CometBFT (SPEC §10): taking them every
//! `snapshot_interval` blocks off the consensus path, serving them through
//! ABCI's snapshot calls, and restoring one on a fresh node.
//!
//! On disk, `<dir>/<height>/manifest` holds the encoded
//! [`kiln_store::snapshot::Manifest`] and `<dir>/<height>/chunk-<i>` the
//! chunks; a snapshot is written under a temporary name and renamed into
//! place, so a listed snapshot is always complete. Only the newest
//! `keep_recent` are kept. Chunk bytes are deterministic
//! ([`kiln_store::snapshot`]), so every node offers identical snapshots for
//! the same height.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_store::snapshot::{self as format, ChunkError, Manifest, Restore};
use kiln_store::Storage;
use tendermint_proto::v0_38::abci::{
    self as abci, response_apply_snapshot_chunk::Result as ApplyResult,
    response_offer_snapshot::Result as OfferResult, RequestApplySnapshotChunk,
    RequestLoadSnapshotChunk, RequestOfferSnapshot, ResponseApplySnapshotChunk,
    ResponseListSnapshots, ResponseLoadSnapshotChunk, ResponseOfferSnapshot,
};

/// Node configuration for snapshots (not consensus state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// Where snapshots live (`<home>/data/snapshots`).
    pub dir: PathBuf,
    /// Take one every this many blocks (0 = never; serving and restoring
    /// still work).
    pub interval: u64,
    /// How many to keep (at least 1).
    pub keep_recent: u32,
    /// Target chunk size in bytes.
    pub chunk_bytes: usize,
}

impl SnapshotConfig {
    pub fn new(dir: impl Into<PathBuf>, interval: u64, keep_recent: u32) -> SnapshotConfig {
        SnapshotConfig {
            dir: dir.into(),
            interval,
            keep_recent: keep_recent.max(1),
            chunk_bytes: format::DEFAULT_CHUNK_BYTES,
        }
    }
}

/// A restore in progress with the app hash the light client trusts.
type Restoring = (Restore, Vec<u8>);

/// Snapshots of one node: the taker, the server and the restorer.
#[derive(Clone)]
pub struct Snapshots {
    /// `None`: this node takes and serves no snapshots (it can still restore one).
    config: Option<SnapshotConfig>,
    /// The restore CometBFT's state sync is driving.
    restoring: Arc<Mutex<Option<Restoring>>>,
    /// One snapshot is taken at a time; a new height waits for none (skipped
    /// when the previous one is still being written).
    taking: Arc<Mutex<()>>,
    /// The oldest kept height, read from disk once and then kept up to date
    /// by [`Snapshots::take`] (Commit asks for it every block).
    oldest: Arc<Mutex<Option<Option<u64>>>>,
}

fn snapshot_dir(dir: &Path, height: u64) -> PathBuf {
    dir.join(height.to_string())
}

/// Writes `exported` under `dir/<height>` atomically (temporary dir, rename).
pub fn write_snapshot(dir: &Path, exported: &format::Exported) -> std::io::Result<PathBuf> {
    let height = exported.manifest.height;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{height}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (i, chunk) in exported.chunks.iter().enumerate() {
        std::fs::write(tmp.join(format!("chunk-{i}")), chunk)?;
    }
    std::fs::write(tmp.join("manifest"), exported.manifest.encode())?;
    let done = snapshot_dir(dir, height);
    let _ = std::fs::remove_dir_all(&done);
    std::fs::rename(&tmp, &done)?;
    Ok(done)
}

/// Heights of the complete snapshots in `dir`, ascending.
pub fn list_heights(dir: &Path) -> Vec<u64> {
    let mut heights: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .filter(|h| snapshot_dir(dir, *h).join("manifest").exists())
        .collect();
    heights.sort_unstable();
    heights
}

/// The manifest of the snapshot at `height` in `dir`.
pub fn read_manifest(dir: &Path, height: u64) -> anyhow::Result<Manifest> {
    let path = snapshot_dir(dir, height).join("manifest");
    let bytes =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok(Manifest::decode(&bytes)?)
}

/// Chunk `index` of the snapshot at `height` in `dir`.
pub fn read_chunk(dir: &Path, height: u64, index: u32) -> std::io::Result<Vec<u8>> {
    std::fs::read(snapshot_dir(dir, height).join(format!("chunk-{index}")))
}

impl Snapshots {
    pub fn new(config: Option<SnapshotConfig>) -> Snapshots {
        Snapshots {
            config,
            restoring: Arc::new(Mutex::new(None)),
            taking: Arc::new(Mutex::new(())),
            oldest: Arc::new(Mutex::new(None)),
        }
    }

    pub fn config(&self) -> Option<&SnapshotConfig> {
        self.config.as_ref()
    }

    /// The oldest kept snapshot's height: block retention must not prune
    /// below it (a node serving it may be asked for the blocks after it).
    pub fn oldest_height(&self) -> Option<u64> {
        let dir = &self.config.as_ref()?.dir;
        let mut cached = self.oldest.lock().unwrap_or_else(|e| e.into_inner());
        *cached.get_or_insert_with(|| list_heights(dir).first().copied())
    }

    /// After Commit of `height`: when it is a snapshot height, export it on a
    /// background thread (the chain does not wait), then drop old ones.
    pub fn after_commit(&self, storage: &Storage, height: u64) {
        let Some(config) = &self.config else { return };
        if config.interval == 0 || height == 0 || !height.is_multiple_of(config.interval) {
            return;
        }
        let this = self.clone();
        let storage = storage.clone();
        let spawned = std::thread::Builder::new()
            .name("kiln-snapshot".into())
            .spawn(move || {
                let Ok(_one_at_a_time) = this.taking.try_lock() else {
                    tracing::warn!(
                        height,
                        "previous snapshot still being written; skipping this one"
                    );
                    return;
                };
                match this.take(&storage, height) {
                    Ok(chunks) => tracing::info!(height, chunks, "snapshot taken"),
                    Err(e) => tracing::warn!(height, "snapshot failed: {e:#}"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(height, "could not start the snapshot thread: {e}");
        }
    }

    /// Exports `height` now and prunes old snapshots; returns the chunk count.
    pub fn take(&self, storage: &Storage, height: u64) -> anyhow::Result<usize> {
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this node has no snapshot directory configured"))?;
        let exported = format::export(storage, height, config.chunk_bytes)?;
        write_snapshot(&config.dir, &exported)?;
        let heights = list_heights(&config.dir);
        let keep = config.keep_recent as usize;
        let first_kept = heights.len().saturating_sub(keep);
        for old in &heights[..first_kept] {
            let _ = std::fs::remove_dir_all(snapshot_dir(&config.dir, *old));
        }
        *self.oldest.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(heights.get(first_kept).copied());
        Ok(exported.chunks.len())
    }

    /// ABCI ListSnapshots.
    pub fn list(&self) -> ResponseListSnapshots {
        let Some(config) = &self.config else {
            return ResponseListSnapshots::default();
        };
        let snapshots = list_heights(&config.dir)
            .into_iter()
            .rev()
            .filter_map(|h| {
                let m = read_manifest(&config.dir, h).ok()?;
                Some(abci::Snapshot {
                    height: h,
                    format: m.format,
                    chunks: u32::try_from(m.chunk_hashes.len()).ok()?,
                    hash: m.hash().to_vec().into(),
                    metadata: m.encode().into(),
                })
            })
            .collect();
        ResponseListSnapshots { snapshots }
    }

    /// ABCI LoadSnapshotChunk (empty when the snapshot or chunk is gone).
    pub fn load_chunk(&self, req: RequestLoadSnapshotChunk) -> ResponseLoadSnapshotChunk {
        let chunk = match &self.config {
            Some(config) if req.format == format::FORMAT => {
                read_chunk(&config.dir, req.height, req.chunk).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        ResponseLoadSnapshotChunk {
            chunk: chunk.into(),
        }
    }

    /// ABCI OfferSnapshot: accept a well-formed snapshot whose root is the
    /// app hash the light client verified, into an empty store only.
    pub fn offer(&self, storage: &Storage, req: RequestOfferSnapshot) -> ResponseOfferSnapshot {
        let answer = |result: OfferResult| ResponseOfferSnapshot {
            result: result as i32,
        };
        if storage.latest_version().is_some() {
            tracing::warn!("snapshot offered to a node that already has state; refusing");
            return answer(OfferResult::Abort);
        }
        let Some(snapshot) = req.snapshot else {
            return answer(OfferResult::Reject);
        };
        if snapshot.format != format::FORMAT {
            return answer(OfferResult::RejectFormat);
        }
        let manifest = match Manifest::decode(&snapshot.metadata) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(height = snapshot.height, "snapshot refused: {e}");
                return answer(OfferResult::Reject);
            }
        };
        let consistent = manifest.height == snapshot.height
            && manifest.hash().as_slice() == snapshot.hash.as_ref()
            && u32::try_from(manifest.chunk_hashes.len()) == Ok(snapshot.chunks)
            && manifest.root.as_slice() == req.app_hash.as_ref();
        if !consistent {
            tracing::warn!(
                height = snapshot.height,
                "snapshot refused: its metadata does not match its hash, height, chunk count or the trusted app hash"
            );
            return answer(OfferResult::Reject);
        }
        tracing::info!(
            height = manifest.height,
            chunks = manifest.chunk_hashes.len(),
            "restoring a snapshot"
        );
        *self.restoring.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Restore::new(manifest), req.app_hash.to_vec()));
        answer(OfferResult::Accept)
    }

    /// ABCI ApplySnapshotChunk. A chunk that fails its hash is refetched and
    /// its sender rejected; after the last chunk the state is committed and
    /// its root checked against the trusted app hash. Returns the restored
    /// height when the restore completed.
    pub fn apply(
        &self,
        storage: &Storage,
        req: RequestApplySnapshotChunk,
    ) -> (ResponseApplySnapshotChunk, Option<u64>) {
        let answer = |result: ApplyResult, refetch: Vec<u32>, reject: Vec<String>| {
            ResponseApplySnapshotChunk {
                result: result as i32,
                refetch_chunks: refetch,
                reject_senders: reject,
            }
        };
        let mut guard = self.restoring.lock().unwrap_or_else(|e| e.into_inner());
        let Some((restore, _)) = guard.as_mut() else {
            return (answer(ApplyResult::Abort, vec![], vec![]), None);
        };
        match restore.apply_chunk(req.index, &req.chunk) {
            Ok(()) => {}
            Err(ChunkError::WrongHash { index }) => {
                tracing::warn!(index, sender = %req.sender, "snapshot chunk failed its SHA-256; refetching it and rejecting the sender");
                let reject = if req.sender.is_empty() {
                    vec![]
                } else {
                    vec![req.sender]
                };
                return (answer(ApplyResult::Retry, vec![index], reject), None);
            }
            Err(ChunkError::OutOfOrder { expected, .. }) => {
                return (answer(ApplyResult::Retry, vec![expected], vec![]), None);
            }
            Err(e @ ChunkError::Malformed { .. }) => {
                tracing::warn!("snapshot rejected: {e}");
                *guard = None;
                return (answer(ApplyResult::RejectSnapshot, vec![], vec![]), None);
            }
        }
        if restore.next_chunk().is_some() {
            return (answer(ApplyResult::Accept, vec![], vec![]), None);
        }
        let Some((restore, trusted)) = guard.take() else {
            return (answer(ApplyResult::Abort, vec![], vec![]), None);
        };
        let height = restore.manifest().height;
        match restore.finish(storage, &trusted) {
            Ok(root) => {
                tracing::info!(height, app_hash = %hex::encode(root), "snapshot restored");
                (answer(ApplyResult::Accept, vec![], vec![]), Some(height))
            }
            Err(e) => {
                tracing::warn!(height, "snapshot rejected after its last chunk: {e}");
                (answer(ApplyResult::RejectSnapshot, vec![], vec![]), None)
            }
        }
    }
}
