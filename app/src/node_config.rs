//! `kilnd start`'s own settings, kept in `<home>/config/kilnd.toml` (written
//! by `kilnd init`) so a validator's unit file stays `kilnd start --home H`.
//! A command-line flag overrides the file; the ABCI address falls back to
//! CometBFT's `proxy_app` in `config.toml`, so the two processes sharing a
//! home agree on it without being told twice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// `<home>/config/kilnd.toml`
pub fn path(home: &Path) -> PathBuf {
    kiln_node::home::config_dir(home).join("kilnd.toml")
}

/// The file `kilnd init` writes: every key with its default, commented.
pub const DEFAULT_FILE: &str = r#"# kilnd's own settings (`kilnd start --home <home>` reads them; a command-line
# flag of the same name overrides a value here).

# ABCI listen address. Unset: CometBFT's `proxy_app` from config.toml.
# abci = "127.0.0.1:26658"

# Past state versions kept for queries (0 = keep all).
pruning_keep_recent = 1000

# Ask CometBFT to keep only the last N blocks (0 = keep all). Never prunes
# below the oldest kept snapshot.
min_retain_blocks = 0

# Take a state-sync snapshot every N blocks, off the consensus path (0 = never).
# Nodes that others join from need this; snapshots go to data/snapshots.
snapshot_interval = 0

# How many snapshots to keep and serve.
snapshot_keep_recent = 2

# Target size of a snapshot chunk in bytes (a chunk ends after the entry that
# reaches it). The chunks, and so the snapshot's hash, depend on it: nodes
# that should serve the same snapshot to a joining node must use the same
# value. At most 12 MiB (CometBFT carries a chunk in a message of at most
# 16 MB).
snapshot_chunk_bytes = 4194304
"#;

/// Smallest `snapshot_chunk_bytes` (smaller chunks only add round trips).
pub const MIN_CHUNK_BYTES: usize = 1024;
/// Largest `snapshot_chunk_bytes`: a chunk can exceed the target by one
/// entry, and CometBFT's state sync refuses messages above 16 MB.
pub const MAX_CHUNK_BYTES: usize = 12 << 20;

/// The settings, after defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub abci: Option<SocketAddr>,
    pub pruning_keep_recent: u64,
    pub min_retain_blocks: u64,
    pub snapshot_interval: u64,
    pub snapshot_keep_recent: u32,
    pub snapshot_chunk_bytes: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            abci: None,
            pruning_keep_recent: 1000,
            min_retain_blocks: 0,
            snapshot_interval: 0,
            snapshot_keep_recent: 2,
            snapshot_chunk_bytes: kiln_store::snapshot::DEFAULT_CHUNK_BYTES,
        }
    }
}

impl NodeConfig {
    /// Reads `kilnd.toml` (defaults when the file is absent); an unknown key
    /// or a wrong type is an error naming the file, not a silent default.
    pub fn load(home: &Path) -> Result<NodeConfig> {
        let file = path(home);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(NodeConfig::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        let config: NodeConfig =
            toml::from_str(&text).with_context(|| format!("invalid {}", file.display()))?;
        if config.snapshot_interval > 0 && config.snapshot_keep_recent == 0 {
            bail!(
                "invalid {}: snapshot_keep_recent must be at least 1 when snapshot_interval is set",
                file.display()
            );
        }
        if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&config.snapshot_chunk_bytes) {
            bail!(
                "invalid {}: snapshot_chunk_bytes must be between {MIN_CHUNK_BYTES} and {MAX_CHUNK_BYTES}",
                file.display()
            );
        }
        Ok(config)
    }

    /// The ABCI address: `abci` here, else CometBFT's `proxy_app`, else
    /// [`kiln_node::home::DEFAULT_ABCI_ADDR`].
    pub fn abci_addr(&self, home: &Path) -> Result<SocketAddr> {
        if let Some(addr) = self.abci {
            return Ok(addr);
        }
        let Some((file, table)) = read_config_toml(home)? else {
            return Ok(kiln_node::home::DEFAULT_ABCI_ADDR.parse()?);
        };
        match table.get("proxy_app").and_then(|v| v.as_str()) {
            None => Ok(kiln_node::home::DEFAULT_ABCI_ADDR.parse()?),
            Some(url) => {
                let addr = url.strip_prefix("tcp://").ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: proxy_app {url:?} is not tcp://host:port (kilnd serves ABCI over TCP)",
                        file.display()
                    )
                })?;
                addr.parse().with_context(|| {
                    format!(
                        "{}: proxy_app {url:?} is not an ip:port address",
                        file.display()
                    )
                })
            }
        }
    }
}

/// CometBFT's config/config.toml as a table; `None` when the home has none.
fn read_config_toml(home: &Path) -> Result<Option<(std::path::PathBuf, toml::Table)>> {
    let file = kiln_node::home::config_toml_path(home);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid {}", file.display()))?;
    Ok(Some((file, table)))
}

/// CometBFT's RPC as a URL (`[rpc] laddr` of config/config.toml, default
/// `tcp://127.0.0.1:26657`): what the dashboard next to `kilnd start` reads.
pub fn cometbft_rpc_url(home: &Path) -> Result<String> {
    let Some((file, table)) = read_config_toml(home)? else {
        return Ok("http://127.0.0.1:26657".into());
    };
    let laddr = table
        .get("rpc")
        .and_then(|rpc| rpc.get("laddr"))
        .and_then(|v| v.as_str())
        .unwrap_or("tcp://127.0.0.1:26657");
    let addr = laddr.strip_prefix("tcp://").ok_or_else(|| {
        anyhow::anyhow!(
            "{}: [rpc] laddr {laddr:?} is not tcp://host:port",
            file.display()
        )
    })?;
    // A node listening on every interface is reached on loopback.
    let addr = addr.replace("0.0.0.0:", "127.0.0.1:");
    Ok(format!("http://{addr}"))
}

/// Writes [`DEFAULT_FILE`] unless the operator already has a `kilnd.toml`.
pub fn write_default(home: &Path) -> Result<()> {
    let file = path(home);
    if !file.exists() {
        std::fs::write(&file, DEFAULT_FILE)
            .with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_file_reads_back_as_the_defaults() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(kiln_node::home::config_dir(home.path())).unwrap();
        assert_eq!(
            NodeConfig::load(home.path()).unwrap(),
            NodeConfig::default()
        );
        write_default(home.path()).unwrap();
        assert_eq!(
            NodeConfig::load(home.path()).unwrap(),
            NodeConfig::default()
        );
    }

    #[test]
    fn the_dashboard_reads_cometbft_s_rpc_address() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(
            cometbft_rpc_url(home.path()).unwrap(),
            "http://127.0.0.1:26657"
        );
        let config = kiln_node::home::config_dir(home.path());
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("config.toml"),
            "[rpc]\nladdr = \"tcp://0.0.0.0:36657\"\n",
        )
        .unwrap();
        assert_eq!(
            cometbft_rpc_url(home.path()).unwrap(),
            "http://127.0.0.1:36657"
        );
        std::fs::write(
            config.join("config.toml"),
            "[rpc]\nladdr = \"unix:///tmp/rpc.sock\"\n",
        )
        .unwrap();
        assert!(cometbft_rpc_url(home.path()).is_err());
    }

    #[test]
    fn abci_follows_proxy_app_unless_set() {
        let home = tempfile::tempdir().unwrap();
        let config = kiln_node::home::config_dir(home.path());
        std::fs::create_dir_all(&config).unwrap();
        let defaults = NodeConfig::default();
        assert_eq!(
            defaults.abci_addr(home.path()).unwrap().to_string(),
            "127.0.0.1:26658"
        );
        std::fs::write(
            config.join("config.toml"),
            "proxy_app = \"tcp://127.0.0.1:36658\"\n[p2p]\nladdr = \"tcp://0.0.0.0:1\"\n",
        )
        .unwrap();
        assert_eq!(
            defaults.abci_addr(home.path()).unwrap().to_string(),
            "127.0.0.1:36658"
        );
        std::fs::write(
            config.join("kilnd.toml"),
            "abci = \"127.0.0.1:46658\"\nsnapshot_interval = 10\n",
        )
        .unwrap();
        let set = NodeConfig::load(home.path()).unwrap();
        assert_eq!(set.snapshot_interval, 10);
        assert_eq!(
            set.abci_addr(home.path()).unwrap().to_string(),
            "127.0.0.1:46658"
        );

        std::fs::write(
            config.join("config.toml"),
            "proxy_app = \"unix:///tmp/app.sock\"\n",
        )
        .unwrap();
        let err = defaults.abci_addr(home.path()).unwrap_err();
        assert!(format!("{err:#}").contains("not tcp://"), "{err:#}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_the_file() {
        let home = tempfile::tempdir().unwrap();
        let config = kiln_node::home::config_dir(home.path());
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(config.join("kilnd.toml"), "snapshot_intreval = 10\n").unwrap();
        let err = format!("{:#}", NodeConfig::load(home.path()).unwrap_err());
        assert!(
            err.contains("kilnd.toml") && err.contains("unknown field"),
            "{err}"
        );
        std::fs::write(config.join("kilnd.toml"), "snapshot_interval = -1\n").unwrap();
        assert!(NodeConfig::load(home.path()).is_err());
        std::fs::write(
            config.join("kilnd.toml"),
            "snapshot_interval = 5\nsnapshot_keep_recent = 0\n",
        )
        .unwrap();
        let err = format!("{:#}", NodeConfig::load(home.path()).unwrap_err());
        assert!(err.contains("snapshot_keep_recent"), "{err}");
        for bad in [0, MIN_CHUNK_BYTES - 1, MAX_CHUNK_BYTES + 1] {
            std::fs::write(
                config.join("kilnd.toml"),
                format!("snapshot_chunk_bytes = {bad}\n"),
            )
            .unwrap();
            let err = format!("{:#}", NodeConfig::load(home.path()).unwrap_err());
            assert!(err.contains("snapshot_chunk_bytes"), "{err}");
        }
    }
}
