//! FIFO mempool: CheckTx on insert, count/bytes limits, dedup cache by tx
//! hash, gas accounting, recheck after each commit (CometBFT semantics).

use std::collections::{HashMap, HashSet, VecDeque};

use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{CheckTxType, RequestCheckTx, ResponseCheckTx};

use crate::tx_hash;

/// Mempool limits (CometBFT defaults).
#[derive(Debug, Clone)]
pub struct MempoolConfig {
    /// Max number of txs (CometBFT `size`, default 5000).
    pub max_txs: usize,
    /// Max total bytes (CometBFT `max_txs_bytes`, default 1 GiB).
    pub max_txs_bytes: usize,
    /// Max bytes of one tx (CometBFT `max_tx_bytes`, default 1 MiB).
    pub max_tx_bytes: usize,
    /// Size of the seen-tx cache (CometBFT `cache_size`, default 10000).
    pub cache_size: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_txs: 5000,
            max_txs_bytes: 1 << 30,
            max_tx_bytes: 1 << 20,
            cache_size: 10_000,
        }
    }
}

/// Why a tx was refused before or instead of CheckTx (these are RPC errors in
/// CometBFT, unlike a non-zero CheckTx code).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MempoolError {
    #[error("tx already exists in cache")]
    AlreadyInCache,
    #[error("tx too large. Max size is {max}, but got {got}")]
    TooLarge { max: usize, got: usize },
    #[error("mempool is full: number of txs {num} (max: {max}), total txs bytes {bytes} (max: {max_bytes})")]
    Full {
        num: usize,
        max: usize,
        bytes: usize,
        max_bytes: usize,
    },
}

/// One pending tx.
#[derive(Debug, Clone)]
pub struct MempoolTx {
    pub tx: Vec<u8>,
    pub hash: [u8; 32],
    pub gas_wanted: i64,
}

/// The mempool. Not internally synchronised: the node wraps it in a mutex.
pub struct Mempool {
    cfg: MempoolConfig,
    txs: VecDeque<MempoolTx>,
    index: HashSet<[u8; 32]>,
    bytes: usize,
    cache: HashSet<[u8; 32]>,
    cache_order: VecDeque<[u8; 32]>,
}

impl Mempool {
    pub fn new(cfg: MempoolConfig) -> Self {
        Self {
            cfg,
            txs: VecDeque::new(),
            index: HashSet::new(),
            bytes: 0,
            cache: HashSet::new(),
            cache_order: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.cfg
    }
    pub fn len(&self) -> usize {
        self.txs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
    pub fn total_bytes(&self) -> usize {
        self.bytes
    }
    /// Pending txs, FIFO order.
    pub fn txs(&self) -> impl Iterator<Item = &MempoolTx> {
        self.txs.iter()
    }
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.index.contains(hash)
    }

    fn cache_push(&mut self, h: [u8; 32]) -> bool {
        if !self.cache.insert(h) {
            return false;
        }
        self.cache_order.push_back(h);
        while self.cache_order.len() > self.cfg.cache_size {
            if let Some(old) = self.cache_order.pop_front() {
                self.cache.remove(&old);
            }
        }
        true
    }

    fn cache_remove(&mut self, h: &[u8; 32]) {
        if self.cache.remove(h) {
            self.cache_order.retain(|x| x != h);
        }
    }

    /// CheckTx a new tx and add it when the app accepts it.
    /// `Err` for cache hits / size limits (JSON-RPC errors); `Ok(resp)` otherwise
    /// (a non-zero `resp.code` means the app rejected it and it was not added).
    pub fn check_tx<A: Application>(
        &mut self,
        app: &A,
        tx: Vec<u8>,
    ) -> Result<ResponseCheckTx, MempoolError> {
        if tx.len() > self.cfg.max_tx_bytes {
            return Err(MempoolError::TooLarge {
                max: self.cfg.max_tx_bytes,
                got: tx.len(),
            });
        }
        if self.txs.len() >= self.cfg.max_txs || self.bytes + tx.len() > self.cfg.max_txs_bytes {
            return Err(MempoolError::Full {
                num: self.txs.len(),
                max: self.cfg.max_txs,
                bytes: self.bytes,
                max_bytes: self.cfg.max_txs_bytes,
            });
        }
        let hash = tx_hash(&tx);
        if !self.cache_push(hash) {
            return Err(MempoolError::AlreadyInCache);
        }
        let resp = app.check_tx(RequestCheckTx {
            tx: tx.clone().into(),
            r#type: CheckTxType::New as i32,
        });
        if resp.code == 0 {
            self.bytes += tx.len();
            self.index.insert(hash);
            self.txs.push_back(MempoolTx {
                tx,
                hash,
                gas_wanted: resp.gas_wanted,
            });
        } else {
            // CometBFT (keep-invalid-txs-in-cache = false) forgets rejected txs.
            self.cache_remove(&hash);
        }
        Ok(resp)
    }

    /// Txs for a proposal: FIFO, stopping before `max_bytes` (if >= 0) or
    /// total gas_wanted `max_gas` (if >= 0) would be exceeded.
    pub fn reap(&self, max_bytes: i64, max_gas: i64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let (mut bytes, mut gas) = (0i64, 0i64);
        for t in &self.txs {
            let nb = bytes + t.tx.len() as i64;
            if max_bytes >= 0 && nb > max_bytes {
                break;
            }
            let ng = gas.saturating_add(t.gas_wanted.max(0));
            if max_gas >= 0 && ng > max_gas {
                break;
            }
            bytes = nb;
            gas = ng;
            out.push(t.tx.clone());
        }
        out
    }

    /// After Commit: drop committed txs (they stay in the cache), then
    /// re-run CheckTx(Recheck) on the rest and drop those now invalid.
    /// Returns the number of txs dropped by recheck.
    pub fn update<A: Application>(&mut self, app: &A, committed: &[Vec<u8>]) -> usize {
        let committed: HashMap<[u8; 32], ()> = committed.iter().map(|t| (tx_hash(t), ())).collect();
        for h in committed.keys() {
            self.cache_push(*h);
        }
        let old = std::mem::take(&mut self.txs);
        self.index.clear();
        self.bytes = 0;
        let mut dropped = 0;
        for mut t in old {
            if committed.contains_key(&t.hash) {
                continue;
            }
            let resp = app.check_tx(RequestCheckTx {
                tx: t.tx.clone().into(),
                r#type: CheckTxType::Recheck as i32,
            });
            if resp.code != 0 {
                dropped += 1;
                self.cache_remove(&t.hash);
                continue;
            }
            t.gas_wanted = resp.gas_wanted;
            self.bytes += t.tx.len();
            self.index.insert(t.hash);
            self.txs.push_back(t);
        }
        dropped
    }
}
