//! The worker's local journal: one JSON file per epoch under
//! `<dir>/epoch-<N>.json`, replaced atomically (write, fsync, rename) after
//! every step that changes it. It holds what the chain cannot give back after
//! a restart: the sprint's leaves and next nonce (so no nonce is computed
//! twice and the committed tree can still be opened), the epoch's secret
//! (written before any commitment carrying its hash is sent, so it can still
//! be revealed) and each vote's salt (so a committed vote can still be
//! revealed). Everything else the worker
//! re-reads from chain state.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A vote the worker decided on (and maybe committed) for one host's opening.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VoteRecord {
    pub valid: bool,
    pub mismatches: u32,
    pub opened: u32,
    /// Hex of the 32-byte salt of the vote commitment.
    pub salt: String,
    pub commit_sent_height: Option<u64>,
    pub reveal_sent_height: Option<u64>,
}

/// Everything the worker did in one epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpochJournal {
    pub epoch: u64,
    /// Hex of the sprint seed; a journal whose seed differs from the chain's is stale.
    pub seed: String,
    /// Next nonce to compute; every nonce below it has been computed.
    pub next_nonce: u64,
    /// `(nonce, d_q)` in strictly increasing nonce order.
    pub leaves: Vec<(u64, u32)>,
    /// Leaves the test-only fabrication mode invented.
    #[serde(default)]
    pub fabricated: u64,
    /// Leaf count and height of the last `MsgSprintCommit` sent.
    pub commit_sent: Option<(u64, u64)>,
    /// Hex of the epoch's 32-byte secret; every commitment carries its hash.
    #[serde(default)]
    pub secret: Option<String>,
    /// Height of the last `MsgSprintRevealSecret` sent.
    #[serde(default)]
    pub secret_reveal_sent_height: Option<u64>,
    pub open_sent_height: Option<u64>,
    /// By host address (bech32).
    pub votes: BTreeMap<String, VoteRecord>,
    /// Escalation votes (every host with weight judges escalated hosts),
    /// by host address; own salts, separate from the committee votes.
    #[serde(default)]
    pub escalation_votes: BTreeMap<String, VoteRecord>,
    /// The settled result, once seen.
    pub result: Option<serde_json::Value>,
}

/// The journal directory.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: PathBuf,
}

/// Journals kept on disk (older epochs are deleted).
const KEEP_EPOCHS: usize = 4;

impl Journal {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the journal directory {}", dir.display()))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("epoch-{epoch}.json"))
    }

    /// The journal of `epoch`, if one was written.
    pub fn load(&self, epoch: u64) -> Result<Option<EpochJournal>> {
        let path = self.path(epoch);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let j: EpochJournal = serde_json::from_slice(&bytes).with_context(|| {
                    format!("journal {} is corrupt; move it away to start the epoch over (its commitment may then be unopenable)", path.display())
                })?;
                Ok(Some(j))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Atomically replaces the journal of `j.epoch`.
    pub fn save(&self, j: &EpochJournal) -> Result<()> {
        let path = self.path(j.epoch);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(j)?;
        {
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }

    /// Deletes journals of epochs older than the newest `KEEP_EPOCHS`.
    pub fn prune(&self, current_epoch: u64) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let epoch = name
                .strip_prefix("epoch-")
                .and_then(|s| s.strip_suffix(".json"))
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(e) = epoch {
                if e.saturating_add(KEEP_EPOCHS as u64) <= current_epoch {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_roundtrip_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.load(3).unwrap().is_none());
        let mut e = EpochJournal {
            epoch: 3,
            seed: "ab".into(),
            next_nonce: 9,
            leaves: vec![(1, 2), (5, 6)],
            ..Default::default()
        };
        e.votes.insert(
            "kiln1x".into(),
            VoteRecord {
                valid: true,
                mismatches: 0,
                opened: 2,
                salt: "00".into(),
                commit_sent_height: Some(4),
                reveal_sent_height: None,
            },
        );
        j.save(&e).unwrap();
        assert_eq!(j.load(3).unwrap().unwrap(), e);
        j.save(&EpochJournal {
            epoch: 9,
            ..Default::default()
        })
        .unwrap();
        j.prune(9);
        assert!(
            j.load(3).unwrap().is_none(),
            "epoch 3 is more than 4 epochs old"
        );
        assert!(j.load(9).unwrap().is_some());
        std::fs::write(dir.path().join("epoch-9.json"), b"{not json").unwrap();
        let err = j.load(9).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
