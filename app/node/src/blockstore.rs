//! Rocksdb block store: blocks, commits, FinalizeBlock results, tx index,
//! event index and the node's consensus state — one `WriteBatch` per block.
//!
//! Key layout (single column family; heights are u64 big-endian):
//! ```text
//! m/height               -> u64   latest stored height
//! m/base                 -> u64   lowest stored height
//! b/<h>                  -> tendermint.types.Block (proto)
//! i/<h>                  -> tendermint.types.BlockMeta (proto)
//! c/<h>                  -> tendermint.types.Commit (proto): our signed commit for block h
//! r/<h>                  -> tendermint.abci.ResponseFinalizeBlock (proto)
//! h/<block hash>         -> u64   height
//! t/<tx hash>            -> u64 height ++ u32 index
//! x/<h><idx>             -> tendermint.abci.TxResult (proto): the tx and its result, as
//!                           CometBFT's kv indexer keeps them (u32 index, big-endian)
//! e/<type.key>\0<value>\0<h><idx> -> ""   event index (every attribute is indexed)
//! v/<h>                  -> JSON [validator::Info]  validator set at height h
//! p/<h>                  -> JSON consensus::Params in force at height h
//! s/latest               -> JSON ChainState after the latest stored block
//! s/genesis              -> JSON ChainState after InitChain
//! ```
//!
//! Pruning ([`BlockStore::prune`], driven by the app's Commit `retain_height`)
//! deletes `b/ i/ c/ r/ h/ v/ p/` below the retain height and advances
//! `m/base`; the tx and event indexes (`t/`, `x/`, `e/`) are kept, like
//! CometBFT 0.38 keeps its indexer, so `tx` and `tx_search` still answer for
//! txs in pruned blocks; the `s/` states are never pruned.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{anyhow, Context};
use prost::Message;
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tendermint::{block, consensus, validator, Block, Time};
use tendermint_proto::v0_38::abci::{ExecTxResult, ResponseFinalizeBlock, TxResult};
use tendermint_proto::v0_38::types::{
    Block as RawBlock, BlockMeta as RawBlockMeta, Commit as RawCommit,
};
use tendermint_rpc::query::{Operand, Operation, Query};

use crate::events::{flatten_events, value_matches};

/// The node's consensus state after a block (CometBFT's `state.State`, reduced).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainState {
    pub chain_id: String,
    pub initial_height: u64,
    /// Height of the last block, `initial_height - 1` before the first one.
    pub last_block_height: u64,
    pub last_block_id: Option<block::Id>,
    pub last_block_time: Time,
    /// App hash to put in the next header (FinalizeBlock's of the last block).
    #[serde(with = "hex_bytes")]
    pub app_hash: Vec<u8>,
    /// Results hash of the last block's tx results (goes in the next header).
    #[serde(with = "hex_bytes")]
    pub last_results_hash: Vec<u8>,
    pub app_version: u64,
    /// Validators of the last block (signed its commit).
    pub last_validators: Vec<validator::Info>,
    /// Validators for height `last_block_height + 1`.
    pub validators: Vec<validator::Info>,
    /// Validators for height `last_block_height + 2`.
    pub next_validators: Vec<validator::Info>,
    /// Consensus params for height `last_block_height + 1`.
    pub consensus_params: consensus::Params,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode_upper(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Everything written for one block.
pub struct BlockRecord<'a> {
    pub block: &'a Block,
    pub block_id: &'a block::Id,
    pub block_size: usize,
    pub seen_commit: &'a tendermint::block::Commit,
    pub results: &'a ResponseFinalizeBlock,
    pub state_after: &'a ChainState,
    /// Validator set in force at `block.height` (what signed it).
    pub validators: &'a [validator::Info],
    /// Consensus params in force at `block.height`.
    pub params: &'a consensus::Params,
}

pub struct BlockStore {
    db: DB,
}

fn hk(prefix: &[u8], h: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&h.to_be_bytes());
    k
}

fn ev_prefix(key: &str, value: &str) -> Vec<u8> {
    let mut k = b"e/".to_vec();
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k.extend_from_slice(value.as_bytes());
    k.push(0);
    k
}

/// Bounds on the work of one `tx_search` (CometBFT pages its answers; these
/// also bound what a node reads to find them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// Most tx positions a query may consider (index entries or txs in the
    /// height range).
    pub max_candidates: usize,
    /// Most txs whose events are loaded to check non-indexed conditions.
    pub max_loaded: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            max_candidates: 100_000,
            max_loaded: 10_000,
        }
    }
}

/// The heights `lo..=hi` a query's `tx.height` conditions allow, within
/// `1..=latest`.
pub fn height_bounds(q: &Query, latest: u64) -> (u64, u64) {
    let (mut lo, mut hi) = (1u64, latest);
    let num = |o: &Operand| -> Option<i128> {
        match o {
            Operand::Signed(i) => Some(i128::from(*i)),
            Operand::Unsigned(u) => Some(i128::from(*u)),
            Operand::String(s) => s.parse::<i128>().ok(),
            _ => None,
        }
    };
    let clamp = |v: i128| -> u64 { u64::try_from(v.max(0)).unwrap_or(u64::MAX) };
    for c in &q.conditions {
        if c.key != "tx.height" {
            continue;
        }
        match &c.operation {
            Operation::Eq(o) => {
                if let Some(v) = num(o) {
                    lo = lo.max(clamp(v));
                    hi = hi.min(clamp(v));
                }
            }
            Operation::Gt(o) => {
                if let Some(v) = num(o) {
                    lo = lo.max(clamp(v.saturating_add(1)));
                }
            }
            Operation::Gte(o) => {
                if let Some(v) = num(o) {
                    lo = lo.max(clamp(v));
                }
            }
            Operation::Lt(o) => {
                if let Some(v) = num(o) {
                    hi = hi.min(clamp(v.saturating_sub(1)));
                }
            }
            Operation::Lte(o) => {
                if let Some(v) = num(o) {
                    hi = hi.min(clamp(v));
                }
            }
            _ => {}
        }
    }
    (lo, hi)
}

fn u64_of(b: &[u8]) -> anyhow::Result<u64> {
    Ok(u64::from_be_bytes(
        b.get(..8)
            .ok_or_else(|| anyhow!("corrupt u64"))?
            .try_into()?,
    ))
}

impl BlockStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, path)
            .with_context(|| format!("opening block store {}", path.display()))?;
        Ok(Self { db })
    }

    /// Blocks and the state after them are fsynced before the app commits:
    /// the app's own store is not, because the handshake replays any block the
    /// app lost from here — but only if this store did not lose it too.
    fn write_durably(&self, wb: WriteBatch) -> anyhow::Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts)?;
        Ok(())
    }

    fn get(&self, k: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.db.get(k)?)
    }

    /// Latest stored height (0 = empty).
    pub fn height(&self) -> anyhow::Result<u64> {
        Ok(match self.get(b"m/height")? {
            Some(b) => u64_of(&b)?,
            None => 0,
        })
    }

    /// Lowest stored height (0 = empty).
    pub fn base(&self) -> anyhow::Result<u64> {
        Ok(match self.get(b"m/base")? {
            Some(b) => u64_of(&b)?,
            None => 0,
        })
    }

    /// Write one block and all its derived data atomically.
    pub fn save_block(&self, rec: &BlockRecord<'_>) -> anyhow::Result<()> {
        let h = rec.block.header.height.value();
        let mut wb = WriteBatch::default();
        let raw_block: RawBlock = rec.block.clone().into();
        wb.put(hk(b"b/", h), raw_block.encode_to_vec());
        let meta = RawBlockMeta {
            block_id: Some((*rec.block_id).into()),
            block_size: rec.block_size as i64,
            header: Some(rec.block.header.clone().into()),
            num_txs: rec.block.data.len() as i64,
        };
        wb.put(hk(b"i/", h), meta.encode_to_vec());
        let raw_commit: RawCommit = rec.seen_commit.clone().into();
        wb.put(hk(b"c/", h), raw_commit.encode_to_vec());
        wb.put(hk(b"r/", h), rec.results.encode_to_vec());
        let mut hkey = b"h/".to_vec();
        hkey.extend_from_slice(rec.block_id.hash.as_bytes());
        wb.put(hkey, h.to_be_bytes());
        for (i, tx) in rec.block.data.iter().enumerate() {
            let idx = i as u32;
            let mut pos = h.to_be_bytes().to_vec();
            pos.extend_from_slice(&idx.to_be_bytes());
            let mut tk = b"t/".to_vec();
            tk.extend_from_slice(&crate::tx_hash(tx));
            wb.put(tk, &pos);
            let indexed = TxResult {
                height: i64::try_from(h)?,
                index: idx,
                tx: tx.clone().into(),
                result: rec.results.tx_results.get(i).cloned(),
            };
            let mut xk = b"x/".to_vec();
            xk.extend_from_slice(&pos);
            wb.put(xk, indexed.encode_to_vec());
            if let Some(res) = rec.results.tx_results.get(i) {
                for ev in &res.events {
                    // As CometBFT's kv indexer: only attributes the app
                    // marked indexed.
                    for attr in ev.attributes.iter().filter(|a| a.index) {
                        let ck = format!("{}.{}", ev.r#type, attr.key);
                        let mut k = ev_prefix(&ck, &attr.value);
                        k.extend_from_slice(&pos);
                        wb.put(k, b"");
                    }
                }
            }
        }
        wb.put(hk(b"v/", h), serde_json::to_vec(rec.validators)?);
        wb.put(hk(b"p/", h), serde_json::to_vec(rec.params)?);
        wb.put(b"s/latest", serde_json::to_vec(rec.state_after)?);
        wb.put(b"m/height", h.to_be_bytes());
        if self.base()? == 0 {
            wb.put(b"m/base", h.to_be_bytes());
        }
        self.write_durably(wb)?;
        Ok(())
    }

    /// Delete every per-height record (block, meta, seen commit, results,
    /// hash → height entry, validators, params) below `retain_height`, at
    /// most `max_heights` heights per call, in one write batch, and advance
    /// the base. Never prunes the latest block. Returns the new base.
    pub fn prune(&self, retain_height: u64, max_heights: u64) -> anyhow::Result<u64> {
        let base = self.base()?;
        let latest = self.height()?;
        let target = retain_height.min(latest);
        if base == 0 || target <= base || max_heights == 0 {
            return Ok(base);
        }
        let new_base = target.min(base.saturating_add(max_heights));
        let mut wb = WriteBatch::default();
        for h in base..new_base {
            if let Some(meta) = self.block_meta(h)? {
                let mut hkey = b"h/".to_vec();
                hkey.extend_from_slice(meta.block_id.hash.as_bytes());
                wb.delete(hkey);
            }
            for prefix in [b"b/", b"i/", b"c/", b"r/", b"v/", b"p/"] {
                wb.delete(hk(prefix, h));
            }
        }
        wb.put(b"m/base", new_base.to_be_bytes());
        self.db.write(wb)?;
        Ok(new_base)
    }

    /// Save the state after InitChain (before any block).
    pub fn save_genesis_state(&self, st: &ChainState) -> anyhow::Result<()> {
        let mut wb = WriteBatch::default();
        wb.put(b"s/genesis", serde_json::to_vec(st)?);
        if self.height()? == 0 {
            wb.put(b"s/latest", serde_json::to_vec(st)?);
        }
        self.write_durably(wb)?;
        Ok(())
    }

    /// The latest state (after the latest block, or after InitChain).
    pub fn latest_state(&self) -> anyhow::Result<Option<ChainState>> {
        match self.get(b"s/latest")? {
            Some(b) => Ok(Some(
                serde_json::from_slice(&b).context("decoding stored state")?,
            )),
            None => Ok(None),
        }
    }

    pub fn genesis_state(&self) -> anyhow::Result<Option<ChainState>> {
        match self.get(b"s/genesis")? {
            Some(b) => Ok(Some(
                serde_json::from_slice(&b).context("decoding stored genesis state")?,
            )),
            None => Ok(None),
        }
    }

    pub fn block(&self, h: u64) -> anyhow::Result<Option<Block>> {
        match self.get(&hk(b"b/", h))? {
            Some(b) => {
                let raw = RawBlock::decode(b.as_slice())?;
                Ok(Some(
                    Block::try_from(raw).map_err(|e| anyhow!("decoding block {h}: {e}"))?,
                ))
            }
            None => Ok(None),
        }
    }

    pub fn block_meta(&self, h: u64) -> anyhow::Result<Option<block::Meta>> {
        match self.get(&hk(b"i/", h))? {
            Some(b) => {
                let raw = RawBlockMeta::decode(b.as_slice())?;
                Ok(Some(
                    block::Meta::try_from(raw)
                        .map_err(|e| anyhow!("decoding block meta {h}: {e}"))?,
                ))
            }
            None => Ok(None),
        }
    }

    /// Our signed commit for block `h`.
    pub fn seen_commit(&self, h: u64) -> anyhow::Result<Option<block::Commit>> {
        match self.get(&hk(b"c/", h))? {
            Some(b) => {
                let raw = RawCommit::decode(b.as_slice())?;
                Ok(Some(
                    block::Commit::try_from(raw)
                        .map_err(|e| anyhow!("decoding commit {h}: {e}"))?,
                ))
            }
            None => Ok(None),
        }
    }

    pub fn results(&self, h: u64) -> anyhow::Result<Option<ResponseFinalizeBlock>> {
        match self.get(&hk(b"r/", h))? {
            Some(b) => Ok(Some(ResponseFinalizeBlock::decode(b.as_slice())?)),
            None => Ok(None),
        }
    }

    pub fn height_by_hash(&self, hash: &[u8]) -> anyhow::Result<Option<u64>> {
        let mut k = b"h/".to_vec();
        k.extend_from_slice(hash);
        match self.get(&k)? {
            Some(b) => Ok(Some(u64_of(&b)?)),
            None => Ok(None),
        }
    }

    /// (height, index) of a committed tx.
    pub fn tx_position(&self, hash: &[u8]) -> anyhow::Result<Option<(u64, u32)>> {
        let mut k = b"t/".to_vec();
        k.extend_from_slice(hash);
        match self.get(&k)? {
            Some(b) if b.len() == 12 => Ok(Some((
                u64_of(&b)?,
                u32::from_be_bytes(b[8..12].try_into()?),
            ))),
            Some(_) => Err(anyhow!("corrupt tx index entry")),
            None => Ok(None),
        }
    }

    /// The indexed tx at (height, index) with its result; kept when the block
    /// is pruned. `None` for stores written before the index held txs.
    pub fn indexed_tx(&self, h: u64, idx: u32) -> anyhow::Result<Option<TxResult>> {
        let mut k = b"x/".to_vec();
        k.extend_from_slice(&h.to_be_bytes());
        k.extend_from_slice(&idx.to_be_bytes());
        match self.get(&k)? {
            Some(b) => Ok(Some(TxResult::decode(b.as_slice())?)),
            None => Ok(None),
        }
    }

    /// Positions of the indexed txs at height `h`, or at every height.
    pub fn indexed_positions(&self, h: Option<u64>) -> anyhow::Result<BTreeSet<(u64, u32)>> {
        let mut prefix = b"x/".to_vec();
        if let Some(h) = h {
            prefix.extend_from_slice(&h.to_be_bytes());
        }
        self.positions_after(b"x/", &prefix)
    }

    /// Validator set in force at height `h`.
    pub fn validators(&self, h: u64) -> anyhow::Result<Option<Vec<validator::Info>>> {
        match self.get(&hk(b"v/", h))? {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// Consensus params in force at height `h`.
    pub fn consensus_params(&self, h: u64) -> anyhow::Result<Option<consensus::Params>> {
        match self.get(&hk(b"p/", h))? {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// Positions (height, index) of txs with an event attribute `key` (`type.attr`) = `value`.
    /// Only heights in `lo..=hi` (the index is ordered by height, so the scan
    /// starts at `lo`); `None` when more than `max` txs match (the caller
    /// refuses the query).
    pub fn search_event(
        &self,
        key: &str,
        value: &str,
        (lo, hi): (u64, u64),
        max: usize,
    ) -> anyhow::Result<Option<BTreeSet<(u64, u32)>>> {
        let prefix = ev_prefix(key, value);
        let mut from = prefix.clone();
        from.extend_from_slice(&lo.to_be_bytes());
        self.positions_after_bounded(&prefix, &from, Some((&prefix, hi)), max)
    }

    /// Indexed tx positions with heights in `lo..=hi`; `None` when more than
    /// `max` are there.
    pub fn indexed_positions_between(
        &self,
        lo: u64,
        hi: u64,
        max: usize,
    ) -> anyhow::Result<Option<BTreeSet<(u64, u32)>>> {
        let mut from = b"x/".to_vec();
        from.extend_from_slice(&lo.to_be_bytes());
        self.positions_after_bounded(b"x/", &from, Some((b"x/".as_slice(), hi)), max)
    }

    /// Like [`Self::positions_after`], starting at `from`, stopping after
    /// height `until.1` (for keys under `until.0`), and giving up (`None`)
    /// after `max` positions.
    fn positions_after_bounded(
        &self,
        head: &[u8],
        from: &[u8],
        until: Option<(&[u8], u64)>,
        max: usize,
    ) -> anyhow::Result<Option<BTreeSet<(u64, u32)>>> {
        let prefix = until.map_or(from, |(p, _)| p);
        let mut out = BTreeSet::new();
        for item in self
            .db
            .iterator(IteratorMode::From(from, Direction::Forward))
        {
            let (k, _) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let pos = &k[head.len()..];
            if pos.len() == 12 {
                let h = u64_of(pos)?;
                if until.is_some_and(|(_, hi)| h > hi) {
                    break;
                }
                out.insert((h, u32::from_be_bytes(pos[8..12].try_into()?)));
                if out.len() > max {
                    return Ok(None);
                }
            }
        }
        Ok(Some(out))
    }

    /// Every (height, index) encoded right after `head` in the keys that
    /// start with `prefix` (which begins with `head`).
    fn positions_after(&self, head: &[u8], prefix: &[u8]) -> anyhow::Result<BTreeSet<(u64, u32)>> {
        let mut out = BTreeSet::new();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, _) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let pos = &k[head.len()..];
            if pos.len() == 12 {
                out.insert((u64_of(pos)?, u32::from_be_bytes(pos[8..12].try_into()?)));
            }
        }
        Ok(out)
    }

    /// Number of txs in block `h`.
    pub fn num_txs(&self, h: u64) -> anyhow::Result<u32> {
        Ok(self.block_meta(h)?.map(|m| m.num_txs as u32).unwrap_or(0))
    }
}

/// Tx lookups over the tx and event indexes (RPC `tx` and `tx_search`).
impl BlockStore {
    /// The tx at (height, index) with its result, from the tx index (which
    /// outlives block pruning); stores written before the index held txs
    /// fall back to the block and its results.
    pub fn tx_with_result(&self, h: u64, idx: u32) -> anyhow::Result<(Vec<u8>, ExecTxResult)> {
        if let Some(t) = self.indexed_tx(h, idx)? {
            return Ok((t.tx.to_vec(), t.result.unwrap_or_default()));
        }
        let base = self.base()?;
        if h < base {
            return Err(anyhow!(
                "height {h} is not available, lowest height is {base}"
            ));
        }
        let blk = self
            .block(h)?
            .ok_or_else(|| anyhow!("block {h} not found"))?;
        let res = self
            .results(h)?
            .ok_or_else(|| anyhow!("results {h} not found"))?;
        let tx = blk
            .data
            .get(idx as usize)
            .ok_or_else(|| anyhow!("tx index out of range"))?;
        let r = res
            .tx_results
            .get(idx as usize)
            .cloned()
            .unwrap_or_default();
        Ok((tx.clone(), r))
    }

    /// Positions (height, index), ascending, of the committed txs matching a
    /// CometBFT query. `latest` is the latest committed height. Equality on
    /// `tx.hash`, `tx.height` and event attributes uses the indexes; range
    /// conditions on `tx.height` bound the heights scanned; other conditions
    /// filter the candidates by their events. The work is bounded by
    /// `limits`: a query that would consider or load more txs than that is
    /// refused with an error saying how to narrow it, never answered by
    /// loading the node's whole history.
    pub fn search_txs(
        &self,
        q: &Query,
        latest: u64,
        limits: &SearchLimits,
    ) -> anyhow::Result<Vec<(u64, u32)>> {
        let (lo, hi) = height_bounds(q, latest);
        let too_broad = |what: &str, n: usize| {
            anyhow!(
                "tx_search: the query {what} more than {n} txs; narrow it with an \
                 event condition or a tx.height range (e.g. tx.height >= {} AND tx.height <= {})",
                lo,
                lo.saturating_add(1000).min(hi)
            )
        };
        let mut cand: Option<BTreeSet<(u64, u32)>> = None;
        let mut filters = vec![];
        let in_range = |s: BTreeSet<(u64, u32)>| -> BTreeSet<(u64, u32)> {
            s.into_iter()
                .filter(|(h, _)| *h >= lo && *h <= hi)
                .collect()
        };
        let intersect = |cand: &mut Option<BTreeSet<(u64, u32)>>, s: BTreeSet<(u64, u32)>| {
            *cand = Some(match cand.take() {
                None => s,
                Some(c) => c.intersection(&s).cloned().collect(),
            });
        };
        for c in &q.conditions {
            match (&c.key[..], &c.operation) {
                ("tx.hash", Operation::Eq(o)) => {
                    let s = match o {
                        Operand::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let mut set = BTreeSet::new();
                    if let Ok(b) = hex::decode(&s) {
                        if let Some(pos) = self.tx_position(&b)? {
                            set.insert(pos);
                        }
                    }
                    intersect(&mut cand, set);
                }
                ("tx.height", Operation::Eq(o)) => {
                    let h: u64 = match o {
                        Operand::Signed(i) => *i as u64,
                        Operand::Unsigned(u) => *u,
                        Operand::String(s) => s.parse().unwrap_or(0),
                        _ => 0,
                    };
                    let mut set = self.indexed_positions(Some(h))?;
                    set.extend((0..self.num_txs(h)?).map(|i| (h, i)));
                    intersect(&mut cand, set);
                }
                (key, Operation::Eq(o)) if key != "tm.event" => {
                    let v = match o {
                        Operand::String(s) => s.clone(),
                        Operand::Signed(i) => i.to_string(),
                        Operand::Unsigned(u) => u.to_string(),
                        other => other.to_string(),
                    };
                    let set = self.search_event(key, &v, (lo, hi), limits.max_candidates)?;
                    let Some(set) = set else {
                        return Err(too_broad("matches", limits.max_candidates));
                    };
                    intersect(&mut cand, in_range(set));
                }
                _ => filters.push(c.clone()),
            }
        }
        let cand = match cand {
            Some(c) => in_range(c),
            None => {
                // Only range conditions: walk the heights in range, stopping
                // as soon as the candidate budget is spent.
                let mut all = self
                    .indexed_positions_between(lo, hi, limits.max_candidates)?
                    .ok_or_else(|| too_broad("ranges over", limits.max_candidates))?;
                for h in self.base()?.max(lo).max(1)..=hi {
                    for i in 0..self.num_txs(h)? {
                        all.insert((h, i));
                    }
                    if all.len() > limits.max_candidates {
                        return Err(too_broad("ranges over", limits.max_candidates));
                    }
                }
                all
            }
        };
        if cand.len() > limits.max_candidates {
            return Err(too_broad("matches", limits.max_candidates));
        }
        if !filters.is_empty() && cand.len() > limits.max_loaded {
            return Err(too_broad("needs the events of", limits.max_loaded));
        }
        let base = self.base()?;
        let mut hits: Vec<(u64, u32)> = vec![];
        for (h, i) in cand {
            // A pruned block's tx is served from the index; stores written
            // before the index held txs have nothing left to serve for it.
            if h < base && self.indexed_tx(h, i)?.is_none() {
                continue;
            }
            if !filters.is_empty() {
                let mut map = std::collections::BTreeMap::new();
                map.insert("tx.height".to_string(), vec![h.to_string()]);
                let (tx, res) = self.tx_with_result(h, i)?;
                map.insert(
                    "tx.hash".into(),
                    vec![hex::encode_upper(crate::tx_hash(&tx))],
                );
                flatten_events(&res.events, &mut map);
                let ok = filters.iter().all(|c| {
                    map.get(&c.key)
                        .map(|vals| vals.iter().any(|v| value_matches(&c.operation, v)))
                        .unwrap_or(false)
                });
                if !ok {
                    continue;
                }
            }
            hits.push((h, i));
        }
        Ok(hits)
    }
}
