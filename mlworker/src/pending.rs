//! The market's messages a worker must not lose to a crash or a kill: an
//! inference's start (the requester was answered) and finish (the executor's
//! pay), validations and seed messages. Each is written to the journal
//! (`market-pending.json`, atomically and synced) when it is queued, before
//! the client sees the end of its answer, and struck off once a block holds
//! it or the chain refuses it for good. A worker restarted on the same
//! journal sends what is left again; a message a block already took is
//! refused the second time, which changes nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use cosmrs::Any;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Messages older than this when the journal is reopened are dropped: an
/// inference's start or finish that late can only be refused (it expired).
const MAX_AGE_SECONDS: u64 = 3600;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Entry {
    kind: String,
    type_url: String,
    /// The message's protobuf bytes, hex.
    value: String,
    queued_unix: u64,
}

/// The journal's unconfirmed messages, keyed by the SHA-256 of the message.
pub struct PendingMessages {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Entry>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The key of a message: the same message queued twice is one entry.
pub fn message_key(msg: &Any) -> String {
    let mut h = Sha256::new();
    h.update(msg.type_url.as_bytes());
    h.update([0]);
    h.update(&msg.value);
    hex::encode(h.finalize())
}

impl PendingMessages {
    /// Opens (or starts) the journal file at `path`; entries older than an
    /// hour are dropped.
    pub fn open(path: PathBuf) -> Result<Self> {
        let entries: BTreeMap<String, Entry> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a pending-messages journal (move it away to start without it)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let now = unix_now();
        let before = entries.len();
        let entries: BTreeMap<String, Entry> = entries
            .into_iter()
            .filter(|(_, e)| now.saturating_sub(e.queued_unix) <= MAX_AGE_SECONDS)
            .collect();
        if entries.len() != before {
            tracing::warn!(
                dropped = before - entries.len(),
                "pending market messages older than an hour dropped from the journal"
            );
        }
        let store = PendingMessages {
            path,
            entries: Mutex::new(entries),
        };
        store.save()?;
        Ok(store)
    }

    /// Every message left, oldest first: to send again after a restart.
    pub fn unconfirmed(&self) -> Vec<(String, Any)> {
        let Ok(entries) = self.entries.lock() else {
            return Vec::new();
        };
        let mut list: Vec<&Entry> = entries.values().collect();
        list.sort_by_key(|e| e.queued_unix);
        list.into_iter()
            .filter_map(|e| {
                Some((
                    e.kind.clone(),
                    Any {
                        type_url: e.type_url.clone(),
                        value: hex::decode(&e.value).ok()?,
                    },
                ))
            })
            .collect()
    }

    /// Records `msg` durably (the file is synced before this returns).
    pub fn add(&self, kind: &str, msg: &Any) -> Result<()> {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                message_key(msg),
                Entry {
                    kind: kind.to_string(),
                    type_url: msg.type_url.clone(),
                    value: hex::encode(&msg.value),
                    queued_unix: unix_now(),
                },
            );
        }
        self.save()
    }

    /// Strikes `msg` off: a block holds it, or the chain refused it for good.
    pub fn confirm(&self, msg: &Any) {
        let removed = self
            .entries
            .lock()
            .map(|mut e| e.remove(&message_key(msg)).is_some())
            .unwrap_or(false);
        if removed {
            if let Err(e) = self.save() {
                tracing::warn!(error = %format!("{e:#}"), "cannot update the pending-messages journal");
            }
        }
    }

    fn save(&self) -> Result<()> {
        let bytes = {
            let entries = self
                .entries
                .lock()
                .map_err(|_| anyhow::anyhow!("the pending-messages lock is poisoned"))?;
            serde_json::to_vec(&*entries)?
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u8) -> Any {
        Any {
            type_url: "/kiln.inference.v1.MsgFinishInference".into(),
            value: vec![n; 40],
        }
    }

    #[test]
    fn what_is_queued_survives_a_reopen_until_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("market-pending.json");
        let store = PendingMessages::open(path.clone()).unwrap();
        store.add("inference-finish-a", &msg(1)).unwrap();
        store.add("inference-start-b", &msg(2)).unwrap();
        store.add("inference-start-b", &msg(2)).unwrap(); // the same message once
        drop(store);
        // "Killed" here: a new process finds both.
        let store = PendingMessages::open(path.clone()).unwrap();
        let left = store.unconfirmed();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&("inference-finish-a".into(), msg(1))));
        store.confirm(&msg(1));
        drop(store);
        let store = PendingMessages::open(path.clone()).unwrap();
        assert_eq!(
            store.unconfirmed(),
            vec![("inference-start-b".into(), msg(2))]
        );
    }

    #[test]
    fn old_entries_are_dropped_and_a_corrupt_journal_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("market-pending.json");
        let old = Entry {
            kind: "inference-finish-old".into(),
            type_url: msg(3).type_url,
            value: hex::encode(&msg(3).value),
            queued_unix: unix_now() - MAX_AGE_SECONDS - 10,
        };
        let map: BTreeMap<String, Entry> = [(message_key(&msg(3)), old)].into_iter().collect();
        std::fs::write(&path, serde_json::to_vec(&map).unwrap()).unwrap();
        assert!(PendingMessages::open(path.clone())
            .unwrap()
            .unconfirmed()
            .is_empty());
        std::fs::write(&path, b"{not json").unwrap();
        let err = PendingMessages::open(path.clone()).err().unwrap();
        assert!(
            format!("{err:#}").contains("not a pending-messages journal"),
            "{err:#}"
        );
    }
}
