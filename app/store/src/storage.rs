//! [`Storage`]: the authenticated, versioned store (rocksdb + Jellyfish Merkle
//! Tree). The on-disk layout, what is verifiable and how pruning works are
//! described in the crate-level docs; every key is built in `storage/keys.rs`.

mod keys;
mod proof;
mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use jmt::storage::TreeUpdateBatch;
use jmt::{JellyfishMerkleTree, KeyHash};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use sha2::Sha256;

pub use proof::verify_proof;

use self::keys::*;
use self::tree::{cf, db_err, versioned_get, TreeDb};
use crate::{Changes, StateRead, StoreError};

/// The root hash of the empty tree (no keys): JMT's placeholder hash, the 32
/// ASCII bytes `SPARSE_MERKLE_PLACEHOLDER_HASH__`. A first commit without
/// changes, or a commit deleting every key, yields this root.
pub const EMPTY_ROOT: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

/// The hash under which `raw_key` is placed in the JMT: SHA-256 of the raw key.
pub fn key_hash(raw_key: &[u8]) -> [u8; 32] {
    KeyHash::with::<Sha256>(raw_key).0
}

/// Size of the rocksdb block cache shared by all column families.
const BLOCK_CACHE_BYTES: usize = 128 << 20;

/// How the store retains history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageConfig {
    /// After committing version `v`, versions older than `v - keep_recent` are
    /// pruned (so `keep_recent + 1` versions stay readable). `0` keeps everything.
    pub keep_recent: u64,
}

/// Where the committed history starts and ends. Guarded by `Inner::head`.
#[derive(Debug, Clone, Copy, Default)]
struct Head {
    latest: Option<u64>,
    earliest: Option<u64>,
}

struct Inner {
    db: DB,
    config: StorageConfig,
    head: RwLock<Head>,
    /// Bumped (under the `head` write lock) before every write to the flat
    /// latest-state keyspace. A [`Snapshot`] of the latest version remembers the
    /// generation it was taken at and trusts the flat keyspace only while the
    /// generation is unchanged, before and after its read.
    generation: AtomicU64,
    /// Serialises `commit` (and the pruning that follows it).
    commit_lock: Mutex<()>,
}

/// The authenticated, versioned store. Cheap to clone (an `Arc` inside);
/// `Send + Sync`, so queries can read snapshots while the application prepares
/// and commits the next block.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = self.inner.head();
        f.debug_struct("Storage")
            .field("path", &self.inner.db.path())
            .field("latest", &head.latest)
            .field("earliest", &head.earliest)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// A block's changes with the root they produce, computed but not persisted
/// (ABCI `FinalizeBlock`). Persist it with [`Storage::commit`] (ABCI `Commit`).
#[derive(Debug, Clone)]
pub struct PreparedCommit {
    /// The version this commit creates.
    pub version: u64,
    /// The root hash (app hash) of `version`.
    pub root: [u8; 32],
    /// The version this commit was computed on top of (`None`: empty store).
    base: Option<u64>,
    changes: Changes,
    tree_batch: TreeUpdateBatch,
    aux: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl PreparedCommit {
    /// Writes `key -> value` in the non-verifiable auxiliary keyspace, in the
    /// same atomic batch as the commit. Does not affect the root.
    pub fn put_aux(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.aux.insert(key, Some(value));
    }

    /// Deletes `key` from the auxiliary keyspace, in the same batch as the commit.
    pub fn delete_aux(&mut self, key: Vec<u8>) {
        self.aux.insert(key, None);
    }

    /// The state changes this commit applies.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }
}

/// A read-only view of one committed version (or of the empty state before the
/// first commit). `Clone + Send + Sync`; implements [`StateRead`].
///
/// A snapshot of the latest version reads the flat latest-state keyspace (one
/// rocksdb `get` per key) for as long as no newer version has been committed,
/// then transparently falls back to the versioned keyspace. Reads of a version
/// that has since been pruned return an error.
#[derive(Clone)]
pub struct Snapshot {
    inner: Arc<Inner>,
    version: Option<u64>,
    /// `Some(generation)` if this snapshot may use the flat keyspace.
    fast: Option<u64>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .finish()
    }
}

/// `Ok` iff `version` is committed and not pruned according to `head`.
fn check_head(head: &Head, version: u64) -> Result<(), StoreError> {
    match (head.earliest, head.latest) {
        (Some(earliest), Some(latest)) if (earliest..=latest).contains(&version) => Ok(()),
        (Some(earliest), Some(_)) if version < earliest => Err(StoreError(format!(
            "version {version} has been pruned (earliest retained version is {earliest})"
        ))),
        (_, Some(latest)) => Err(StoreError(format!(
            "version {version} is unknown (latest committed version is {latest})"
        ))),
        (_, None) => Err(StoreError(format!(
            "version {version} is unknown (nothing has been committed yet)"
        ))),
    }
}

impl Inner {
    fn head(&self) -> Head {
        *self.head.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        cf(&self.db, name)
    }

    fn check_retained(&self, version: u64) -> Result<(), StoreError> {
        check_head(&self.head(), version)
    }

    fn read_meta(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        self.db
            .get_cf(self.cf(CF_META)?, key)
            .map_err(|e| db_err("reading store metadata", e))?
            .map(|bytes| be_u64(&bytes))
            .transpose()
    }
}

impl Storage {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, config: StorageConfig) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // One block cache for all column families; bloom filters make point
        // reads of absent keys (JMT nodes, flat state, preimages) cheap.
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_bloom_filter(10.0, false);
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            cf_opts.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)
            .map_err(|e| db_err(&format!("opening the store at {}", path.display()), e))?;
        let mut inner = Inner {
            db,
            config,
            head: RwLock::new(Head::default()),
            generation: AtomicU64::new(0),
            commit_lock: Mutex::new(()),
        };
        let latest = inner.read_meta(META_LATEST)?;
        let earliest = inner.read_meta(META_EARLIEST)?;
        if latest.is_some() != earliest.is_some() {
            return Err(StoreError(
                "corrupt store: latest and earliest versions disagree on emptiness".into(),
            ));
        }
        *inner.head.get_mut().unwrap_or_else(PoisonError::into_inner) = Head { latest, earliest };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> StorageConfig {
        self.inner.config
    }

    /// The last committed version; `None` before the first commit.
    pub fn latest_version(&self) -> Option<u64> {
        self.inner.head().latest
    }

    /// The oldest version still readable; `None` before the first commit.
    pub fn earliest_version(&self) -> Option<u64> {
        self.inner.head().earliest
    }

    /// The root hash (app hash) of a retained `version`.
    pub fn root_hash(&self, version: u64) -> Result<[u8; 32], StoreError> {
        self.inner.check_retained(version)?;
        let reader = TreeDb {
            db: &self.inner.db,
            empty_root: None,
        };
        let root = JellyfishMerkleTree::<_, Sha256>::new(&reader)
            .get_root_hash(version)
            .map_err(|e| db_err(&format!("reading the root of version {version}"), e))?;
        self.inner.check_retained(version)?;
        Ok(root.0)
    }

    /// A fast read view of the last committed version (the empty state before
    /// the first commit).
    pub fn latest(&self) -> Snapshot {
        let head = self
            .inner
            .head
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Snapshot {
            inner: self.inner.clone(),
            version: head.latest,
            fast: Some(self.inner.generation.load(Ordering::SeqCst)),
        }
    }

    /// A read view of a retained `version`; an error if it is pruned or unknown.
    pub fn snapshot(&self, version: u64) -> Result<Snapshot, StoreError> {
        let head = self
            .inner
            .head
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        check_head(&head, version)?;
        let fast =
            (head.latest == Some(version)).then(|| self.inner.generation.load(Ordering::SeqCst));
        Ok(Snapshot {
            inner: self.inner.clone(),
            version: Some(version),
            fast,
        })
    }

    /// Computes the root of `changes` applied on top of the latest version,
    /// without persisting anything (ABCI `FinalizeBlock`). `version` must be
    /// `latest + 1`, or any version below `u64::MAX` for the first commit (e.g.
    /// the chain's initial height).
    pub fn prepare_commit(
        &self,
        version: u64,
        changes: &Changes,
    ) -> Result<PreparedCommit, StoreError> {
        let base = self.inner.head().latest;
        match base {
            Some(latest) if latest.checked_add(1) != Some(version) => {
                return Err(StoreError(format!(
                    "cannot prepare version {version}: the next version is {}",
                    latest.saturating_add(1)
                )))
            }
            None if version == u64::MAX => {
                return Err(StoreError("version u64::MAX is reserved".into()))
            }
            _ => {}
        }
        let empty_root = match (base, version.checked_sub(1)) {
            (None, Some(previous)) => Some(root_node_key(previous)?),
            _ => None,
        };
        let reader = TreeDb {
            db: &self.inner.db,
            empty_root,
        };
        // Sorted by key hash: deterministic, and the tree is walked left to right.
        let value_set: BTreeMap<KeyHash, Option<Vec<u8>>> = changes
            .iter()
            .map(|(k, v)| (KeyHash::with::<Sha256>(k), v.clone()))
            .collect();
        let (root, mut tree_batch) = tree::update(&reader, &value_set, version, base)?;
        if let Some(previous) = base {
            // Every version has its own root node; jmt does not mark the previous
            // root stale when a version has no changes, so do it here.
            tree_batch
                .stale_node_index_batch
                .insert(jmt::storage::StaleNodeIndex {
                    stale_since_version: version,
                    node_key: root_node_key(previous)?,
                });
        }
        Ok(PreparedCommit {
            version,
            root: root.0,
            base,
            changes: changes.clone(),
            tree_batch,
            aux: BTreeMap::new(),
        })
    }

    /// Persists a prepared commit in one atomic rocksdb write batch (ABCI
    /// `Commit`), then prunes versions older than `latest - keep_recent` in a
    /// second batch. Fails if another commit landed since `prepared` was
    /// computed; a pruning failure is logged, not returned (the commit is durable).
    pub fn commit(&self, prepared: PreparedCommit) -> Result<[u8; 32], StoreError> {
        let _commit = self
            .inner
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let inner = &*self.inner;
        let head = inner.head();
        if head.latest != prepared.base {
            return Err(StoreError(format!(
                "prepared commit of version {} is stale: it was computed on {:?} but the latest \
                 version is now {:?}; prepare it again",
                prepared.version, prepared.base, head.latest
            )));
        }
        let version = prepared.version;
        let mut batch = WriteBatch::default();
        let (cf_nodes, cf_stale) = (inner.cf(CF_NODES)?, inner.cf(CF_STALE)?);
        for (node_key, node) in prepared.tree_batch.node_batch.nodes() {
            let bytes = borsh::to_vec(node).map_err(|e| db_err("encoding a JMT node", e))?;
            batch.put_cf(cf_nodes, node_key_bytes(node_key)?, bytes);
        }
        // The stale index of one commit is one entry: all its nodes are stale
        // since `version` (jmt and the previous-root entry added in prepare).
        let mut stale = Vec::with_capacity(prepared.tree_batch.stale_node_index_batch.len());
        for entry in &prepared.tree_batch.stale_node_index_batch {
            if entry.stale_since_version != version {
                return Err(StoreError(format!(
                    "jmt marked a node stale since {} in a commit of version {version}",
                    entry.stale_since_version
                )));
            }
            stale.push(node_key_bytes(&entry.node_key)?);
        }
        if !stale.is_empty() {
            batch.put_cf(
                cf_stale,
                version.to_be_bytes(),
                encode_list(stale.iter().map(Vec::as_slice))?,
            );
        }
        let (cf_state, cf_versioned) = (inner.cf(CF_STATE)?, inner.cf(CF_VERSIONED)?);
        let (cf_changelog, cf_preimage) = (inner.cf(CF_CHANGELOG)?, inner.cf(CF_PREIMAGE)?);
        for (key, value) in &prepared.changes {
            match value {
                Some(v) => {
                    batch.put_cf(cf_state, key, v);
                    batch.put_cf(cf_preimage, key_hash(key), key);
                }
                None => batch.delete_cf(cf_state, key),
            }
            batch.put_cf(
                cf_versioned,
                versioned_key(key, version),
                encode_value(value.as_deref()),
            );
        }
        if !prepared.changes.is_empty() {
            let changed = encode_list(prepared.changes.keys().map(Vec::as_slice))?;
            batch.put_cf(cf_changelog, version.to_be_bytes(), changed);
        }
        let cf_aux = inner.cf(CF_AUX)?;
        for (key, value) in &prepared.aux {
            match value {
                Some(v) => batch.put_cf(cf_aux, key, v),
                None => batch.delete_cf(cf_aux, key),
            }
        }
        let cf_meta = inner.cf(CF_META)?;
        batch.put_cf(cf_meta, META_LATEST, version.to_be_bytes());
        let earliest = head.earliest.unwrap_or(version);
        if head.earliest.is_none() {
            batch.put_cf(cf_meta, META_EARLIEST, version.to_be_bytes());
        }
        {
            let mut head = inner.head.write().unwrap_or_else(PoisonError::into_inner);
            // Latest-version snapshots taken before this point stop trusting the
            // flat keyspace from now on (see `Inner::generation`).
            inner.generation.fetch_add(1, Ordering::SeqCst);
            inner
                .db
                .write(batch)
                .map_err(|e| db_err("writing a commit", e))?;
            *head = Head {
                latest: Some(version),
                earliest: Some(earliest),
            };
        }
        if inner.config.keep_recent > 0 {
            let target = version.saturating_sub(inner.config.keep_recent);
            if target > earliest {
                // The commit is durable at this point: a failed prune is logged
                // and redone by the next commit (pruning always scans from the
                // oldest leftover), it does not fail the commit.
                if let Err(e) = self.prune(target) {
                    tracing::warn!(version, target, error = %e, "pruning old versions failed; retrying at the next commit");
                }
            }
        }
        Ok(prepared.root)
    }

    /// Deletes everything only versions `< new_earliest` need: JMT nodes stale
    /// since a version `<= new_earliest`, and versioned values superseded at or
    /// before `new_earliest`. One write batch, which also moves `earliest`.
    fn prune(&self, new_earliest: u64) -> Result<(), StoreError> {
        let inner = &*self.inner;
        // Refuse new reads of the doomed versions first; reads in flight re-check
        // retention after they read.
        inner
            .head
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .earliest = Some(new_earliest);
        let mut batch = WriteBatch::default();

        // 1. JMT nodes stale since a version <= new_earliest.
        let (cf_nodes, cf_stale) = (inner.cf(CF_NODES)?, inner.cf(CF_STALE)?);
        let mut it = inner.db.raw_iterator_cf(cf_stale);
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if be_u64(key)? > new_earliest {
                break;
            }
            for node_key in decode_list(value)? {
                batch.delete_cf(cf_nodes, node_key);
            }
            batch.delete_cf(cf_stale, key);
            it.next();
        }
        it.status()
            .map_err(|e| db_err("scanning the stale-node index", e))?;
        drop(it);

        // 2. Versioned values of every key changed at a version <= new_earliest
        //    (earlier rounds consumed the changelog below the old earliest version).
        let cf_changelog = inner.cf(CF_CHANGELOG)?;
        let mut touched = BTreeSet::new();
        let mut it = inner.db.raw_iterator_cf(cf_changelog);
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if be_u64(key)? > new_earliest {
                break;
            }
            touched.extend(decode_list(value)?.into_iter().map(<[u8]>::to_vec));
            batch.delete_cf(cf_changelog, key);
            it.next();
        }
        it.status()
            .map_err(|e| db_err("scanning the changelog", e))?;
        drop(it);

        let (cf_versioned, cf_preimage) = (inner.cf(CF_VERSIONED)?, inner.cf(CF_PREIMAGE)?);
        let mut it = inner.db.raw_iterator_cf(cf_versioned);
        for raw in &touched {
            let group = escape(raw);
            // Entries of one key run newest first. Those newer than
            // `new_earliest` stay; the first one `<= new_earliest` is the value
            // at `new_earliest`: it stays unless it is a deletion; older ones go.
            // The preimage goes when nothing is left.
            it.seek(&group);
            let mut kept = false;
            let mut at_earliest_seen = false;
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if k.len() != group.len() + 8 || !k.starts_with(&group) {
                    break;
                }
                if version_of_versioned_key(k, group.len())? > new_earliest {
                    kept = true;
                } else if !at_earliest_seen {
                    at_earliest_seen = true;
                    if decode_value(v)?.is_some() {
                        kept = true;
                    } else {
                        batch.delete_cf(cf_versioned, k);
                    }
                } else {
                    batch.delete_cf(cf_versioned, k);
                }
                it.next();
            }
            it.status()
                .map_err(|e| db_err("scanning versioned values", e))?;
            if !kept {
                batch.delete_cf(cf_preimage, key_hash(raw));
            }
        }
        drop(it);

        batch.put_cf(
            inner.cf(CF_META)?,
            META_EARLIEST,
            new_earliest.to_be_bytes(),
        );
        inner
            .db
            .write(batch)
            .map_err(|e| db_err("writing a prune batch", e))
    }

    /// The value of `key` at a retained `version` and a serialized proof of it
    /// (inclusion if `Some`, exclusion if `None`) against `root_hash(version)`.
    /// Check it with [`verify_proof`].
    pub fn get_with_proof(
        &self,
        key: &[u8],
        version: u64,
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), StoreError> {
        self.inner.check_retained(version)?;
        let reader = TreeDb {
            db: &self.inner.db,
            empty_root: None,
        };
        let (value, proof) = JellyfishMerkleTree::<_, Sha256>::new(&reader)
            .get_with_proof(KeyHash::with::<Sha256>(key), version)
            .map_err(|e| db_err(&format!("proving a key at version {version}"), e))?;
        self.inner.check_retained(version)?;
        let bytes = borsh::to_vec(&proof).map_err(|e| db_err("encoding a proof", e))?;
        Ok((value, bytes))
    }

    /// Reads the non-verifiable auxiliary keyspace (as of the last commit).
    pub fn get_aux(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner
            .db
            .get_cf(self.inner.cf(CF_AUX)?, key)
            .map_err(|e| db_err("reading the aux keyspace", e))
    }

    /// Live key counts per column family (walks every key: tests and
    /// diagnostics only).
    #[doc(hidden)]
    pub fn debug_key_counts(&self) -> Result<BTreeMap<&'static str, usize>, StoreError> {
        let mut counts = BTreeMap::new();
        for name in ALL_CFS {
            let mut it = self.inner.db.raw_iterator_cf(self.inner.cf(name)?);
            it.seek_to_first();
            let mut n = 0;
            while it.valid() {
                n += 1;
                it.next();
            }
            it.status().map_err(|e| db_err("counting keys", e))?;
            counts.insert(name, n);
        }
        Ok(counts)
    }
}

impl Snapshot {
    /// The version this snapshot reads; `None` for the empty state before the
    /// first commit.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The root hash of this snapshot's version ([`EMPTY_ROOT`] before the
    /// first commit).
    pub fn root_hash(&self) -> Result<[u8; 32], StoreError> {
        match self.version {
            None => Ok(EMPTY_ROOT),
            Some(v) => Storage {
                inner: self.inner.clone(),
            }
            .root_hash(v),
        }
    }

    /// True while the flat latest-state keyspace still holds this version.
    fn flat_is_current(&self) -> bool {
        self.fast == Some(self.inner.generation.load(Ordering::SeqCst))
    }

    fn historical_get(&self, version: u64, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.check_retained(version)?;
        let value = versioned_get(&self.inner.db, key, version)?;
        self.inner.check_retained(version)?;
        Ok(value)
    }

    fn historical_prefix_visit(
        &self,
        version: u64,
        prefix: &[u8],
        visit: &mut kiln_state::Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner.check_retained(version)?;
        let body = escaped_body(prefix);
        let inverted = (u64::MAX - version).to_be_bytes();
        let mut it = self.inner.db.raw_iterator_cf(self.inner.cf(CF_VERSIONED)?);
        it.seek(&body);
        while let Some(key) = it.key() {
            if !key.starts_with(&body) {
                break;
            }
            let (raw, enc_len) = unescape_prefix(key)?;
            let group = key[..enc_len].to_vec();
            if version_of_versioned_key(key, enc_len)? > version {
                // Newest first: skip to the newest entry `<= version`.
                let mut target = group.clone();
                target.extend_from_slice(&inverted);
                it.seek(&target);
            }
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                if k.len() == enc_len + 8 && k.starts_with(&group) {
                    if let Some(value) = decode_value(v)? {
                        if visit(&raw, &value).is_break() {
                            break;
                        }
                    }
                }
            }
            it.seek(next_group(&group));
        }
        it.status()
            .map_err(|e| db_err("scanning versioned values", e))?;
        // Pruning that overtook the scan makes its result unusable.
        self.inner.check_retained(version)
    }
}

impl StateRead for Snapshot {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(version) = self.version else {
            // Empty store at snapshot time: nothing, whatever was committed since.
            return Ok(None);
        };
        if self.flat_is_current() {
            let value = self
                .inner
                .db
                .get_cf(self.inner.cf(CF_STATE)?, key)
                .map_err(|e| db_err("reading the latest state", e))?;
            if self.flat_is_current() {
                return Ok(value);
            }
        }
        self.historical_get(version, key)
    }

    /// Streams the scan. The latest version streams the flat keyspace from a
    /// rocksdb snapshot taken *before* checking the generation: commits bump
    /// the generation before writing, so an unchanged generation after the
    /// snapshot proves the snapshot holds exactly this version. Otherwise the
    /// versioned keyspace is streamed (consistent for any retained version).
    fn prefix_visit(
        &self,
        prefix: &[u8],
        visit: &mut kiln_state::Visitor<'_>,
    ) -> Result<(), StoreError> {
        let Some(version) = self.version else {
            return Ok(());
        };
        if self.fast.is_some() {
            let db_snapshot = self.inner.db.snapshot();
            if self.flat_is_current() {
                let mut opts = rocksdb::ReadOptions::default();
                opts.set_snapshot(&db_snapshot);
                let mut it = self
                    .inner
                    .db
                    .raw_iterator_cf_opt(self.inner.cf(CF_STATE)?, opts);
                it.seek(prefix);
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    if !k.starts_with(prefix) || visit(k, v).is_break() {
                        break;
                    }
                    it.next();
                }
                return it
                    .status()
                    .map_err(|e| db_err("scanning the latest state", e));
            }
        }
        self.historical_prefix_visit(version, prefix, visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic test data without a rand dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// The two-pass update (batch puts over sequential deletes) gives the
    /// same root as jmt's one-key-at-a-time reference, block after block, and
    /// the tree it persists stays provable.
    #[test]
    fn two_pass_update_matches_the_sequential_reference() {
        let dir = tempfile::TempDir::new().unwrap();
        let storage = Storage::open(dir.path(), StorageConfig { keep_recent: 2 }).unwrap();
        let mut rng = Rng(0x5EED);
        let mut live = BTreeMap::new();
        for version in 3..40u64 {
            let mut changes = Changes::new();
            let n = 1 + rng.next() % if version % 5 == 0 { 400 } else { 40 };
            for _ in 0..n {
                let key = format!("k{}", rng.next() % 300).into_bytes();
                let value = match rng.next() % 4 {
                    0 => None,
                    _ => Some(rng.next().to_be_bytes().to_vec()),
                };
                changes.insert(key, value);
            }
            if version % 7 == 0 {
                // Delete (almost) everything, then re-add one key in the same block.
                for k in live.keys() {
                    changes.insert(Vec::clone(k), None);
                }
                changes.insert(b"k0".to_vec(), Some(vec![1]));
            }
            let base = storage.latest_version();
            let empty_root = match (base, version.checked_sub(1)) {
                (None, Some(previous)) => Some(root_node_key(previous).unwrap()),
                _ => None,
            };
            let reader = TreeDb {
                db: &storage.inner.db,
                empty_root,
            };
            let value_set: BTreeMap<KeyHash, Option<Vec<u8>>> = changes
                .iter()
                .map(|(k, v)| (KeyHash::with::<Sha256>(k), v.clone()))
                .collect();
            let (reference, _) = tree::sequential_update(&reader, &value_set, version).unwrap();
            let prepared = storage.prepare_commit(version, &changes).unwrap();
            assert_eq!(prepared.root, reference.0, "version {version}");
            storage.commit(prepared).unwrap();
            for (k, v) in &changes {
                match v {
                    Some(v) => live.insert(k.clone(), v.clone()),
                    None => live.remove(k),
                };
            }
            let root = storage.root_hash(version).unwrap();
            for i in (0..300).step_by(7) {
                let key = format!("k{i}").into_bytes();
                let (value, proof) = storage.get_with_proof(&key, version).unwrap();
                assert_eq!(value.as_ref(), live.get(&key));
                assert!(verify_proof(&root, &key, value.as_deref(), &proof));
            }
        }
    }
}
