//! Node home layout and CometBFT-format key / genesis files.
//!
//! ```text
//! <home>/config/genesis.json              CometBFT genesis (app_state = the app's genesis)
//! <home>/config/priv_validator_key.json   ed25519 consensus key (CometBFT format)
//! <home>/config/node_key.json             ed25519 p2p node key (CometBFT format)
//! <home>/config/kilnd.toml                kilnd start's own settings (snapshots, pruning, ABCI)
//! <home>/data/application.db              kilnd's state (rocksdb); data/snapshots its snapshots
//! <home>/data/priv_validator_state.json   CometBFT last-sign state
//! <home>/data/blockstore.db               rocksdb block store (devnet only)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tendermint::{account, PublicKey};

/// `<home>/config`
pub fn config_dir(home: &Path) -> PathBuf {
    home.join("config")
}
/// `<home>/data`
pub fn data_dir(home: &Path) -> PathBuf {
    home.join("data")
}
/// `<home>/config/genesis.json`
/// CometBFT's own configuration (`cometbft start --home` reads it).
pub fn config_toml_path(home: &Path) -> PathBuf {
    config_dir(home).join("config.toml")
}

/// The default ABCI address: `kilnd start --abci` and CometBFT's `proxy_app`.
pub const DEFAULT_ABCI_ADDR: &str = "127.0.0.1:26658";

/// A CometBFT v0.38 `config.toml` for a Kiln node: the keys a Kiln operator
/// needs to see; every other key takes CometBFT's default (CometBFT starts
/// from its defaults and overrides what the file sets).
pub fn config_toml(moniker: &str) -> String {
    // A moniker is a TOML basic string: escape what TOML requires.
    let moniker: String = moniker
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![],
            c => vec![c],
        })
        .collect();
    format!(
        r#"# CometBFT v0.38 configuration, written by `kilnd init`.
# Run the node as two processes sharing this home:
#   kilnd start --home <home>          (the application, ABCI on proxy_app)
#   cometbft start --home <home>       (consensus, p2p and the RPC)
# Keys not listed here take CometBFT's defaults; see
# https://docs.cometbft.com/v0.38/core/configuration for all of them.

# The address kilnd serves ABCI on (kilnd start --abci).
proxy_app = "tcp://{DEFAULT_ABCI_ADDR}"
moniker = "{moniker}"

[rpc]
laddr = "tcp://127.0.0.1:26657"
max_body_bytes = 1000000
max_subscription_clients = 100
max_subscriptions_per_client = 5

[p2p]
laddr = "tcp://0.0.0.0:26656"
# Comma-separated id@host:port of the peers to keep connected to.
persistent_peers = ""
# Loopback networks (several validators on one machine) need these two.
addr_book_strict = true
allow_duplicate_ip = false
# Bytes per second sent to / received from each peer (CometBFT's defaults,
# 5 MB/s, suit the open internet; raise both on a fast LAN: state-sync
# chunks and large blocks travel faster).
send_rate = 5120000
recv_rate = 5120000

[mempool]
size = 5000
max_tx_bytes = 1048576

[statesync]
# To join a running network from a snapshot: enable, list two RPC servers,
# and set a trusted height and its block hash (read from a peer you trust).
enable = false
rpc_servers = ""
trust_height = 0
trust_hash = ""
trust_period = "168h0m0s"
# How long to gather snapshot offers from peers before choosing one.
discovery_time = "15s"

[consensus]
timeout_commit = "1s"

[tx_index]
# "kv" indexes every tx (and its events' indexed attributes): /tx and
# /tx_search need it, and the kiln CLI and the worker wait for their txs
# through /tx. "null" turns it off (a validator that serves no clients).
indexer = "kv"

[instrumentation]
# CometBFT's Prometheus metrics (height, block interval, peers, validator
# power, mempool) on http://<prometheus_listen_addr>/metrics; the Grafana
# dashboard in docs/grafana/ reads them. Loopback: let a local Prometheus
# (or an SSH tunnel) scrape it, do not expose it.
prometheus = true
prometheus_listen_addr = "127.0.0.1:26660"

[storage]
# Keep each block's ABCI results: /block_results serves them (CometBFT's
# default, written out because clients depend on it). They are pruned with
# the blocks below kilnd's retain height (kilnd.toml min_retain_blocks).
discard_abci_responses = false
"#
    )
}

pub fn genesis_path(home: &Path) -> PathBuf {
    config_dir(home).join("genesis.json")
}
/// `<home>/config/priv_validator_key.json`
pub fn priv_validator_key_path(home: &Path) -> PathBuf {
    config_dir(home).join("priv_validator_key.json")
}
/// `<home>/config/node_key.json`
pub fn node_key_path(home: &Path) -> PathBuf {
    config_dir(home).join("node_key.json")
}
/// `<home>/data/priv_validator_state.json`
pub fn priv_validator_state_path(home: &Path) -> PathBuf {
    data_dir(home).join("priv_validator_state.json")
}
/// `<home>/data/blockstore.db`
pub fn blockstore_path(home: &Path) -> PathBuf {
    data_dir(home).join("blockstore.db")
}

/// An ed25519 consensus key as stored in CometBFT's `priv_validator_key.json`.
#[derive(Clone)]
pub struct PrivValidatorKey {
    pub signing_key: SigningKey,
}

impl std::fmt::Debug for PrivValidatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivValidatorKey")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl PrivValidatorKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            signing_key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }
    /// From a 32-byte seed (deterministic; tests).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing_key: SigningKey::from_bytes(&seed),
        }
    }
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }
    /// The tendermint public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_raw_ed25519(self.verifying_key().as_bytes()).expect("32-byte ed25519 key")
    }
    /// Validator address: first 20 bytes of SHA-256(pubkey).
    pub fn address(&self) -> account::Id {
        account::Id::from(self.public_key())
    }
    /// CometBFT JSON (`priv_validator_key.json`).
    pub fn to_json(&self) -> Value {
        let pk = self.verifying_key().to_bytes();
        let mut sk = self.signing_key.to_bytes().to_vec();
        sk.extend_from_slice(&pk);
        json!({
            "address": self.address().to_string(),
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": B64.encode(pk)},
            "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": B64.encode(sk)},
        })
    }
}

fn parse_ed25519_priv(v: &Value, what: &str) -> anyhow::Result<SigningKey> {
    let pk = v
        .get("priv_key")
        .ok_or_else(|| anyhow!("{what}: missing field priv_key"))?;
    let ty = pk
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{what}: missing field priv_key.type"))?;
    if ty != "tendermint/PrivKeyEd25519" {
        bail!("{what}: unsupported key type {ty:?} (only tendermint/PrivKeyEd25519 is supported)");
    }
    let val = pk
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{what}: missing field priv_key.value"))?;
    let bytes = B64
        .decode(val)
        .map_err(|e| anyhow!("{what}: priv_key.value is not valid base64: {e}"))?;
    let seed: [u8; 32] = match bytes.len() {
        64 | 32 => bytes[..32].try_into().expect("len checked"),
        n => bail!("{what}: priv_key.value must be 64 bytes (seed || pubkey), got {n}"),
    };
    let sk = SigningKey::from_bytes(&seed);
    if bytes.len() == 64 && sk.verifying_key().as_bytes() != &bytes[32..] {
        bail!("{what}: priv_key.value's public half does not match its seed");
    }
    Ok(sk)
}

/// Parse `priv_validator_key.json` contents.
pub fn parse_priv_validator_key(text: &str) -> anyhow::Result<PrivValidatorKey> {
    let what = "priv_validator_key.json";
    let v: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("{what}: not valid JSON: {e}"))?;
    let sk = parse_ed25519_priv(&v, what)?;
    let key = PrivValidatorKey { signing_key: sk };
    if let Some(pubv) = v.pointer("/pub_key/value").and_then(Value::as_str) {
        let pb = B64
            .decode(pubv)
            .map_err(|e| anyhow!("{what}: pub_key.value is not valid base64: {e}"))?;
        if pb.as_slice() != key.verifying_key().as_bytes() {
            bail!("{what}: pub_key does not match priv_key");
        }
    }
    if let Some(addr) = v.get("address").and_then(Value::as_str) {
        if !addr.eq_ignore_ascii_case(&key.address().to_string()) {
            bail!(
                "{what}: address {addr} does not match the key (expected {})",
                key.address()
            );
        }
    }
    Ok(key)
}

/// Load `<home>/config/priv_validator_key.json`.
pub fn load_priv_validator_key(home: &Path) -> anyhow::Result<PrivValidatorKey> {
    let p = priv_validator_key_path(home);
    let text = fs::read_to_string(&p)
        .with_context(|| format!("reading {} (run `init` first?)", p.display()))?;
    parse_priv_validator_key(&text).with_context(|| format!("loading {}", p.display()))
}

/// A p2p node key (`node_key.json`).
#[derive(Clone)]
pub struct NodeKey {
    pub signing_key: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("id", &self.node_id())
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    pub fn generate() -> Self {
        Self {
            signing_key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }
    /// Node ID: lowercase hex of the first 20 bytes of SHA-256(pubkey).
    pub fn node_id(&self) -> String {
        let h = Sha256::digest(self.signing_key.verifying_key().as_bytes());
        hex::encode(&h[..20])
    }
    pub fn to_json(&self) -> Value {
        let mut sk = self.signing_key.to_bytes().to_vec();
        sk.extend_from_slice(self.signing_key.verifying_key().as_bytes());
        json!({"priv_key": {"type": "tendermint/PrivKeyEd25519", "value": B64.encode(sk)}})
    }
}

/// Parse `node_key.json` contents.
pub fn parse_node_key(text: &str) -> anyhow::Result<NodeKey> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("node_key.json: not valid JSON: {e}"))?;
    Ok(NodeKey {
        signing_key: parse_ed25519_priv(&v, "node_key.json")?,
    })
}

/// Load `<home>/config/node_key.json`.
pub fn load_node_key(home: &Path) -> anyhow::Result<NodeKey> {
    let p = node_key_path(home);
    let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    parse_node_key(&text)
}

/// CometBFT's `priv_validator_state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrivValidatorState {
    #[serde(with = "tendermint::serializers::from_str")]
    pub height: i64,
    pub round: i32,
    pub step: i8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signbytes: Option<String>,
}

/// Write `priv_validator_state.json` (atomically: write + rename).
pub fn write_priv_validator_state(home: &Path, st: &PrivValidatorState) -> anyhow::Result<()> {
    let p = priv_validator_state_path(home);
    write_atomic(&p, serde_json::to_string_pretty(st)?.as_bytes())
}

/// Read `priv_validator_state.json`, or the zero state when absent.
pub fn load_priv_validator_state(home: &Path) -> anyhow::Result<PrivValidatorState> {
    let p = priv_validator_state_path(home);
    match fs::read_to_string(&p) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| anyhow!("{}: malformed: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PrivValidatorState::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn write_atomic(p: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = p.with_extension("tmp");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, p).with_context(|| format!("renaming to {}", p.display()))?;
    Ok(())
}

/// The parsed genesis (CometBFT format; `app_state` kept as raw JSON).
pub type Genesis = tendermint::Genesis<Value>;

/// Block gas limit of a new genesis: finite, so the fee-free ML-ops gas a
/// host may use per block (authz `ml_ops_free_gas_per_block`, 10 M) is a
/// known share of a block (10%), and a tx asking for more than a block
/// holds is refused in CheckTx.
pub const DEFAULT_BLOCK_MAX_GAS: i64 = 100_000_000;

/// Default consensus params: `cometbft init`'s, with a finite block gas
/// limit ([`DEFAULT_BLOCK_MAX_GAS`]) instead of its unlimited -1.
pub fn default_consensus_params() -> Value {
    json!({
        "block": {"max_bytes": "22020096", "max_gas": DEFAULT_BLOCK_MAX_GAS.to_string()},
        "evidence": {"max_age_num_blocks": "100000", "max_age_duration": "172800000000000", "max_bytes": "1048576"},
        "validator": {"pub_key_types": ["ed25519"]},
        "version": {"app": "0"},
        "abci": {"vote_extensions_enable_height": "0"}
    })
}

/// A CometBFT-format genesis document with one validator of power 10.
pub fn genesis_json(
    chain_id: &str,
    validator: &PrivValidatorKey,
    moniker: &str,
    app_state: Value,
) -> Value {
    let now = tendermint::Time::now();
    json!({
        "genesis_time": now.to_rfc3339(),
        "chain_id": chain_id,
        "initial_height": "1",
        "consensus_params": default_consensus_params(),
        "validators": [{
            "address": validator.address().to_string(),
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": B64.encode(validator.verifying_key().as_bytes())},
            "power": "10",
            "name": moniker,
        }],
        "app_hash": "",
        "app_state": app_state,
    })
}

/// Parse a genesis document, with errors that name the file and the field.
/// `initial_height` defaults to 1 and `app_hash` to empty, as in CometBFT.
pub fn parse_genesis(text: &str) -> anyhow::Result<Genesis> {
    let mut v: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("genesis.json: not valid JSON: {e}"))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| anyhow!("genesis.json: top level must be a JSON object"))?;
    for f in ["genesis_time", "chain_id", "consensus_params"] {
        if !obj.contains_key(f) {
            bail!("genesis.json: missing field {f}");
        }
    }
    match obj.get("chain_id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 50 => {}
        _ => bail!("genesis.json: chain_id must be a non-empty string of at most 50 characters"),
    }
    obj.entry("initial_height").or_insert(json!("1"));
    if obj
        .get("initial_height")
        .map(|h| h.is_number())
        .unwrap_or(false)
    {
        let h = obj["initial_height"].to_string();
        obj.insert("initial_height".into(), json!(h));
    }
    obj.entry("app_hash").or_insert(json!(""));
    obj.entry("app_state").or_insert(Value::Null);
    if obj.get("validators").map(Value::is_null).unwrap_or(false) {
        obj.insert("validators".into(), json!([]));
    }
    let g: Genesis = serde_json::from_value(v).map_err(|e| anyhow!("genesis.json: {e}"))?;
    if g.initial_height < 1 {
        bail!(
            "genesis.json: initial_height must be >= 1, got {}",
            g.initial_height
        );
    }
    Ok(g)
}

/// Load `<home>/config/genesis.json`.
pub fn load_genesis(home: &Path) -> anyhow::Result<(Genesis, Value)> {
    let p = genesis_path(home);
    let text = fs::read_to_string(&p)
        .with_context(|| format!("reading {} (run `init` first?)", p.display()))?;
    let g = parse_genesis(&text).with_context(|| format!("loading {}", p.display()))?;
    let raw: Value = serde_json::from_str(&text)?;
    Ok((g, raw))
}

/// What [`init_home`] produced.
#[derive(Debug, Clone)]
pub struct InitOutput {
    pub validator_address: account::Id,
    pub node_id: String,
    pub genesis_written: bool,
}

/// Create `<home>/config` and `<home>/data`, a consensus key, a node key, a
/// zero `priv_validator_state.json` and CometBFT's `config.toml` (each only
/// when absent), and a genesis with `app_state` (only when absent).
/// Idempotent; never overwrites keys or an operator's config.
pub fn init_home(
    home: &Path,
    chain_id: &str,
    moniker: &str,
    app_state: Value,
) -> anyhow::Result<InitOutput> {
    fs::create_dir_all(config_dir(home))
        .with_context(|| format!("creating {}", config_dir(home).display()))?;
    fs::create_dir_all(data_dir(home))
        .with_context(|| format!("creating {}", data_dir(home).display()))?;
    let pv_path = priv_validator_key_path(home);
    let pv = if pv_path.exists() {
        load_priv_validator_key(home)?
    } else {
        let k = PrivValidatorKey::generate();
        write_atomic(
            &pv_path,
            serde_json::to_string_pretty(&k.to_json())?.as_bytes(),
        )?;
        k
    };
    let nk_path = node_key_path(home);
    let nk = if nk_path.exists() {
        load_node_key(home)?
    } else {
        let k = NodeKey::generate();
        write_atomic(&nk_path, serde_json::to_string(&k.to_json())?.as_bytes())?;
        k
    };
    if !priv_validator_state_path(home).exists() {
        write_priv_validator_state(home, &PrivValidatorState::default())?;
    }
    let config_toml_file = config_toml_path(home);
    if !config_toml_file.exists() {
        write_atomic(&config_toml_file, config_toml(moniker).as_bytes())?;
    }
    let gp = genesis_path(home);
    let genesis_written = if gp.exists() {
        false
    } else {
        let g = genesis_json(chain_id, &pv, moniker, app_state);
        write_atomic(&gp, serde_json::to_string_pretty(&g)?.as_bytes())?;
        true
    };
    Ok(InitOutput {
        validator_address: pv.address(),
        node_id: nk.node_id(),
        genesis_written,
    })
}
