//! `kilnd`: the Kiln node.
//!
//! * `kilnd init` writes a home CometBFT can use (genesis.json in CometBFT's
//!   format, priv_validator_key.json, node_key.json).
//! * `kilnd genesis add-account|bulk-add-accounts|validate` edit and check the
//!   genesis file.
//! * `kilnd start` serves the application on the ABCI socket for CometBFT 0.38.
//! * `kilnd devnet` runs the application under the embedded single-validator
//!   block producer with a CometBFT-compatible JSON-RPC (creating, on first
//!   start, a funded `dev` key and its ML operational key `dev-ml`, funded and
//!   granted the ML-ops messages by `dev`, both in `<home>/keyring-test/`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kiln_app::snapshots::SnapshotConfig;
use kiln_app::KilnApp;
use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_store::{Storage, StorageConfig};

mod node_config;

#[derive(Parser)]
#[command(
    name = "kilnd",
    version,
    about = "Kiln node: a proof-of-compute app-chain for AI hosts"
)]
struct Cli {
    /// Node home directory.
    #[arg(long, global = true, env = "KILN_HOME")]
    home: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `kiln_node=debug`.
    #[arg(long, global = true, env = "KILN_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node home: consensus key, node key and a genesis file.
    Init {
        #[arg(long, default_value = "kiln-devnet")]
        chain_id: String,
        #[arg(long, default_value = "kiln-node")]
        moniker: String,
        /// Protocol parameters of the genesis: `default` (production epochs)
        /// or `devnet` (short epochs and sprints, for local networks).
        #[arg(long, default_value = "default", value_parser = ["default", "devnet"])]
        params: String,
    },
    /// Edit or check the genesis file.
    #[command(subcommand)]
    Genesis(GenesisCommand),
    /// Serve the application to a CometBFT 0.38 node over the ABCI socket.
    Start {
        /// ABCI listen address [default: `abci` in config/kilnd.toml, else
        /// CometBFT's `proxy_app` in config/config.toml].
        #[arg(long)]
        abci: Option<SocketAddr>,
        /// Keep this many past state versions for queries, 0 = keep all
        /// [default: config/kilnd.toml, else 1000].
        #[arg(long)]
        pruning_keep_recent: Option<u64>,
        /// Ask CometBFT to keep only the last N blocks: Commit returns
        /// `retain_height = H - N + 1` (0 = keep all blocks). Never below the
        /// oldest kept snapshot [default: config/kilnd.toml, else 0].
        #[arg(long)]
        min_retain_blocks: Option<u64>,
        /// Take a state-sync snapshot every N blocks, off the consensus path
        /// (0 = never). Snapshots go to `<home>/data/snapshots`
        /// [default: config/kilnd.toml, else 0].
        #[arg(long)]
        snapshot_interval: Option<u64>,
        /// How many snapshots to keep and serve [default: config/kilnd.toml, else 2].
        #[arg(long)]
        snapshot_keep_recent: Option<u32>,
        /// Target size of a snapshot chunk in bytes (nodes serving the same
        /// snapshot must agree on it) [default: config/kilnd.toml, else 4 MiB].
        #[arg(long)]
        snapshot_chunk_bytes: Option<usize>,
        /// Serve the web dashboard on this address (`off`: no dashboard)
        /// [default: 127.0.0.1:26680; a default address already in use
        /// only logs a warning].
        #[arg(long)]
        dashboard: Option<String>,
    },
    /// State-sync snapshots in `<home>/data/snapshots`, for offline bootstrap
    /// (stop `kilnd start` first: the store is opened exclusively).
    #[command(subcommand)]
    Snapshots(SnapshotsCommand),
    /// Run a single-node devnet with the embedded block producer and JSON-RPC.
    Devnet {
        #[arg(long, default_value = "kiln-devnet")]
        chain_id: String,
        /// Time between blocks, e.g. `1s`, `500ms`.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        block_time: Duration,
        /// JSON-RPC listen address.
        #[arg(long, default_value = "127.0.0.1:26657")]
        rpc: SocketAddr,
        /// Funds given to the `dev` key at genesis, in ukiln.
        #[arg(long, default_value_t = 1_000_000_000_000_000)]
        dev_funds: u128,
        #[arg(long, default_value_t = 1000)]
        pruning_keep_recent: u64,
        /// Keep only the last N blocks in the block store (0 = keep all).
        #[arg(long, default_value_t = 0)]
        min_retain_blocks: u64,
        /// Serve the web dashboard on this address (`off`: no dashboard)
        /// [default: 127.0.0.1:26680; a default address already in use
        /// only logs a warning].
        #[arg(long)]
        dashboard: Option<String>,
    },
    /// Serve the web dashboard of any node (its CometBFT RPC, or a devnet's).
    Dashboard {
        /// The node's RPC.
        #[arg(long, default_value = "http://127.0.0.1:26657")]
        node: String,
        #[arg(long, default_value = kiln_dashboard::DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum SnapshotsCommand {
    /// List the kept snapshots: height, chunks, app hash.
    List,
    /// Take a snapshot of the latest state (or a retained `--height`) now.
    Export {
        #[arg(long)]
        height: Option<u64>,
    },
    /// Restore the snapshot at `height` (from `<home>/data/snapshots`, or
    /// `--from DIR` holding `<height>/`) into this home's empty state. The
    /// restored root must equal `--app-hash`: the app hash of that height,
    /// read from a source you trust (e.g. the next block's header).
    Restore {
        height: u64,
        #[arg(long)]
        app_hash: String,
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GenesisCommand {
    /// Add a funded account: `kilnd genesis add-account kiln1… 1000000ukiln`.
    AddAccount { address: String, coins: String },
    /// Add (or top up) many funded accounts from a JSON file: a list of
    /// `{"address": "kiln1…", "coins": "1000000ukiln"}` (coins also as
    /// `[{"denom": "ukiln", "amount": "1000000"}]`). All or nothing: the
    /// genesis is written only when every entry and the result are valid.
    BulkAddAccounts { file: PathBuf },
    /// Check a genesis file (default: the home's config/genesis.json):
    /// format, app_state, addresses, amounts, parameter ranges, a positive
    /// total genesis weight, and that its validators are the ones derived
    /// from the genesis hosts.
    Validate {
        /// The genesis file to check.
        file: Option<PathBuf>,
    },
    /// Sign this node's genesis host entry (the ceremony's gentx): account
    /// key `--from` from this home's keyring, consensus key from
    /// `config/priv_validator_key.json`. Writes `config/gentx/gentx-<owner>.json`
    /// for the coordinator.
    Gentx {
        /// The account (key name in this home's keyring) that owns the host.
        #[arg(long)]
        from: String,
        /// Epoch-1 weight (consensus power until the first settle).
        #[arg(long)]
        weight: u64,
        /// Public URL of the host's worker API.
        #[arg(long)]
        worker_url: String,
        /// Models the host serves (comma separated).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Hardware summary.
        #[arg(long, default_value = "")]
        hardware: String,
        /// Keyring backend of `--from`: file (encrypted; passphrase prompt or
        /// KILN_KEYRING_PASSPHRASE) or test.
        #[arg(long, default_value = "file", value_parser = ["file", "test"])]
        keyring_backend: String,
    },
    /// Check every gentx in `--dir` (default `config/gentx`) and write their
    /// hosts into genesis.json's `app_state.hosts`; the validator set is
    /// derived from them at InitChain.
    CollectGentxs {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.trim().split_at(
        text.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.trim().len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}; use e.g. 1s or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("invalid duration unit in {text:?}; use ms, s or m")),
    }
    .and_then(|d| {
        if d.is_zero() {
            Err("duration must be positive".to_string())
        } else {
            Ok(d)
        }
    })
}

fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(&cli.log_format, &cli.log_level);
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let home = cli
        .home
        .clone()
        .unwrap_or_else(kiln_client::keyring::default_home);
    match cli.command {
        Command::Init {
            chain_id,
            moniker,
            params,
        } => {
            let app_state = if params == "devnet" {
                kiln_genesis::AppGenesis::with_devnet_params()
            } else {
                kiln_genesis::AppGenesis::default()
            };
            let out = kiln_node::home::init_home(
                &home,
                &chain_id,
                &moniker,
                serde_json::to_value(app_state)?,
            )?;
            node_config::write_default(&home)?;
            println!(
                "initialized {} (chain-id {chain_id}, node id {})",
                home.display(),
                out.node_id
            );
            if !out.genesis_written {
                println!(
                    "kept the existing {}",
                    kiln_node::home::genesis_path(&home).display()
                );
            }
            Ok(())
        }
        Command::Genesis(GenesisCommand::AddAccount { address, coins }) => {
            genesis_add_account(&home, &address, &coins)
        }
        Command::Genesis(GenesisCommand::BulkAddAccounts { file }) => {
            let added = genesis_bulk_add_accounts(&home, &file)?;
            println!(
                "added {added} accounts from {} to {}",
                file.display(),
                kiln_node::home::genesis_path(&home).display()
            );
            Ok(())
        }
        Command::Genesis(GenesisCommand::Gentx {
            from,
            weight,
            worker_url,
            models,
            hardware,
            keyring_backend,
        }) => genesis_gentx(
            &home,
            &from,
            weight,
            worker_url,
            models,
            hardware,
            &keyring_backend,
        ),
        Command::Genesis(GenesisCommand::CollectGentxs { dir }) => {
            let dir = dir.unwrap_or_else(|| kiln_node::home::config_dir(&home).join("gentx"));
            genesis_collect_gentxs(&home, &dir)
        }
        Command::Genesis(GenesisCommand::Validate { file }) => {
            let path = file.unwrap_or_else(|| kiln_node::home::genesis_path(&home));
            let (chain_id, app) = validate_genesis(&path)?;
            println!(
                "{} is valid: chain-id {chain_id}, {} funded accounts, {} genesis validators",
                path.display(),
                app.bank.balances.len(),
                app.validators()?.len()
            );
            Ok(())
        }
        Command::Start {
            abci,
            pruning_keep_recent,
            min_retain_blocks,
            snapshot_interval,
            snapshot_keep_recent,
            snapshot_chunk_bytes,
            dashboard,
        } => {
            let file = node_config::NodeConfig::load(&home)?;
            let rpc_url = node_config::cometbft_rpc_url(&home)?;
            // First, so a bad or busy --dashboard stops before the store opens.
            start_dashboard(dashboard.as_deref(), &rpc_url)?;
            let abci = match abci {
                Some(addr) => addr,
                None => file.abci_addr(&home)?,
            };
            let snapshot_interval = snapshot_interval.unwrap_or(file.snapshot_interval);
            let snapshot_keep_recent = snapshot_keep_recent.unwrap_or(file.snapshot_keep_recent);
            if snapshot_interval > 0 && snapshot_keep_recent == 0 {
                bail!("--snapshot-keep-recent must be at least 1 when snapshots are taken");
            }
            let chunk_bytes = snapshot_chunk_bytes.unwrap_or(file.snapshot_chunk_bytes);
            let chunk_range = node_config::MIN_CHUNK_BYTES..=node_config::MAX_CHUNK_BYTES;
            if !chunk_range.contains(&chunk_bytes) {
                bail!(
                    "--snapshot-chunk-bytes must be between {} and {}",
                    chunk_range.start(),
                    chunk_range.end()
                );
            }
            let mut snapshots = SnapshotConfig::new(
                snapshots_dir(&home),
                snapshot_interval,
                snapshot_keep_recent,
            );
            snapshots.chunk_bytes = chunk_bytes;
            let app = open_app(
                &home,
                pruning_keep_recent.unwrap_or(file.pruning_keep_recent),
            )?
            .with_min_retain_blocks(min_retain_blocks.unwrap_or(file.min_retain_blocks))
            .with_snapshots(snapshots);
            tracing::info!(%abci, home = %home.display(), "serving ABCI for CometBFT 0.38");
            kiln_node::abci_server::serve_abci(app, abci)
        }
        Command::Snapshots(command) => run_snapshots(&home, command),
        Command::Dashboard { node, listen } => {
            let bound = kiln_dashboard::spawn(listen, &node)?;
            println!("dashboard of {node} at http://{bound}/ (Ctrl-C to stop)");
            loop {
                std::thread::park();
            }
        }
        Command::Devnet {
            chain_id,
            block_time,
            rpc,
            dev_funds,
            pruning_keep_recent,
            min_retain_blocks,
            dashboard,
        } => {
            // First, so a bad or busy --dashboard stops before the home is
            // written (the page shows the node once its RPC answers).
            start_dashboard(dashboard.as_deref(), &format!("http://{rpc}"))?;
            prepare_devnet_home(&home, &chain_id, dev_funds)?;
            let app =
                open_app(&home, pruning_keep_recent)?.with_min_retain_blocks(min_retain_blocks);
            let mut config = kiln_node::devnet::DevnetConfig::new(&home);
            config.rpc_listen = rpc;
            config.block_time = block_time;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let shutdown = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                kiln_node::devnet::run_devnet(app, config, shutdown).await
            })
        }
    }
}

/// Starts the web dashboard beside the node (see `--dashboard`).
fn start_dashboard(listen: Option<&str>, node_url: &str) -> Result<()> {
    let (addr, explicit) = match listen {
        Some("off") => return Ok(()),
        Some(a) => (a, true),
        None => (kiln_dashboard::DEFAULT_LISTEN, false),
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--dashboard {addr:?} is not ip:port (or off)"))?;
    match kiln_dashboard::spawn(addr, node_url) {
        Ok(bound) => {
            tracing::info!(url = %format!("http://{bound}/"), node = node_url, "dashboard");
            Ok(())
        }
        Err(e) if !explicit => {
            tracing::warn!(error = %format!("{e:#}"), "no dashboard (pass --dashboard ADDR for another address)");
            Ok(())
        }
        Err(e) => Err(e.context(format!("--dashboard {addr}"))),
    }
}

fn genesis_gentx(
    home: &Path,
    from: &str,
    weight: u64,
    worker_url: String,
    models: Vec<String>,
    hardware: String,
    keyring_backend: &str,
) -> Result<()> {
    let backend = if keyring_backend == "test" {
        kiln_client::keyring::Backend::Test
    } else {
        kiln_client::keyring::Backend::File
    };
    let keyring = kiln_client::keyring::Keyring::open(home, backend);
    let info = keyring.find(from)?;
    let passphrase = match backend {
        kiln_client::keyring::Backend::File => {
            Some(kiln_client::passphrase::read_passphrase(&info.name)?)
        }
        kiln_client::keyring::Backend::Test => None,
    };
    let account_key = keyring.signing_key(&info.name, passphrase.as_deref().map(|p| p.as_str()))?;
    let consensus = kiln_node::home::load_priv_validator_key(home)?;
    let (genesis, _) = kiln_node::home::load_genesis(home)?;
    let chain_id = genesis.chain_id.to_string();
    let owner = Address::parse(&info.address)?;
    let host = kiln_hosts::GenesisHost {
        owner,
        worker_url,
        consensus_pubkey: hex::encode(consensus.verifying_key().as_bytes()),
        models,
        hardware,
        weight,
    };
    let gentx = kiln_app::gentx::Gentx::sign(&chain_id, host, &consensus.signing_key, &account_key)
        .map_err(|e| anyhow::anyhow!(e))?;
    gentx
        .verify(&chain_id)
        .map_err(|e| anyhow::anyhow!("the signed gentx does not verify: {e}"))?;
    let dir = kiln_node::home::config_dir(home).join("gentx");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("gentx-{owner}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&gentx)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "gentx for host {owner} (weight {weight}) on chain {chain_id} written to {}",
        path.display()
    );
    Ok(())
}

fn genesis_collect_gentxs(home: &Path, dir: &Path) -> Result<()> {
    let path = kiln_node::home::genesis_path(home);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut genesis: serde_json::Value = serde_json::from_str(&text)?;
    let chain_id = genesis["chain_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{} has no chain_id", path.display()))?
        .to_string();
    let mut app: kiln_genesis::AppGenesis =
        serde_json::from_value(genesis["app_state"].clone()).context("app_state")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no gentx files (*.json) in {}", dir.display());
    }
    let mut hosts = Vec::new();
    for file in &files {
        let gentx: kiln_app::gentx::Gentx = serde_json::from_str(
            &std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?,
        )
        .with_context(|| format!("{} is not a gentx", file.display()))?;
        gentx
            .verify(&chain_id)
            .map_err(|e| anyhow::anyhow!("{} refused: {e}", file.display()))?;
        hosts.push(gentx.host);
    }
    hosts.sort_by_key(|h| h.owner);
    app.hosts.hosts = hosts;
    app.validate()
        .map_err(|e| anyhow::anyhow!("the collected hosts make an invalid genesis: {e}"))?;
    genesis["app_state"] = serde_json::to_value(&app)?;
    // The validator set is what InitChain derives from the hosts (after the
    // power cap); CometBFT takes it from InitChain's answer.
    genesis["validators"] = serde_json::json!([]);
    std::fs::write(&path, serde_json::to_string_pretty(&genesis)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "collected {} gentxs into {}: {} genesis hosts",
        files.len(),
        path.display(),
        app.hosts.hosts.len()
    );
    Ok(())
}

fn snapshots_dir(home: &Path) -> PathBuf {
    kiln_node::home::data_dir(home).join("snapshots")
}

fn run_snapshots(home: &Path, command: SnapshotsCommand) -> Result<()> {
    use kiln_app::snapshots::{list_heights, read_chunk, read_manifest, Snapshots};
    let dir = snapshots_dir(home);
    match command {
        SnapshotsCommand::List => {
            let heights = list_heights(&dir);
            if heights.is_empty() {
                println!("no snapshots in {}", dir.display());
            }
            for h in heights {
                let m = read_manifest(&dir, h)?;
                println!(
                    "height {h}  chunks {}  app_hash {}  format {}",
                    m.chunk_hashes.len(),
                    hex::encode_upper(m.root),
                    m.format
                );
            }
            Ok(())
        }
        SnapshotsCommand::Export { height } => {
            let app = open_app(home, 0)?;
            let storage = app.storage();
            let height = match height {
                Some(h) => h,
                None => storage
                    .latest_version()
                    .ok_or_else(|| anyhow::anyhow!("the state is empty: nothing to export"))?,
            };
            // The node's chunk size, so the export is the snapshot it serves.
            let mut config = SnapshotConfig::new(&dir, 0, u32::MAX);
            config.chunk_bytes = node_config::NodeConfig::load(home)?.snapshot_chunk_bytes;
            let snapshots = Snapshots::new(Some(config));
            let chunks = snapshots.take(storage, height)?;
            println!(
                "snapshot of height {height} written to {} ({chunks} chunks, app hash {})",
                dir.join(height.to_string()).display(),
                hex::encode_upper(storage.root_hash(height)?)
            );
            Ok(())
        }
        SnapshotsCommand::Restore {
            height,
            app_hash,
            from,
        } => {
            let source = from.unwrap_or(dir);
            let trusted = hex::decode(app_hash.trim())
                .ok()
                .filter(|h| h.len() == 32)
                .ok_or_else(|| anyhow::anyhow!("--app-hash must be 32 bytes of hex"))?;
            let manifest = read_manifest(&source, height)?;
            let app = open_app(home, 0)?;
            if let Some(v) = app.storage().latest_version() {
                bail!(
                    "this home already has state at height {v}; restore needs an empty data/application.db"
                );
            }
            let mut restore = kiln_store::snapshot::Restore::new(manifest);
            while let Some(i) = restore.next_chunk() {
                let chunk = read_chunk(&source, height, i)
                    .with_context(|| format!("reading chunk {i} of snapshot {height}"))?;
                restore
                    .apply_chunk(i, &chunk)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let root = restore.finish(app.storage(), &trusted)?;
            println!(
                "restored height {height} (app hash {}) into {}",
                hex::encode_upper(root),
                home.display()
            );
            Ok(())
        }
    }
}

/// Validates genesis before opening anything, so a malformed file stops the
/// node with a clear message instead of failing inside InitChain.
fn open_app(home: &Path, keep_recent: u64) -> Result<KilnApp> {
    let genesis_path = kiln_node::home::genesis_path(home);
    if !genesis_path.exists() {
        bail!(
            "{} not found: run `kilnd init` (or `kilnd devnet`) first",
            genesis_path.display()
        );
    }
    validate_genesis(&genesis_path)
        .with_context(|| format!("refusing to start with {}", genesis_path.display()))?;
    let data = kiln_node::home::data_dir(home).join("application.db");
    let storage = Storage::open(&data, StorageConfig { keep_recent })
        .with_context(|| format!("opening {}", data.display()))?;
    // A planned upgrade this build does not know stops the node at its
    // height: upgrade-info.json goes where cosmovisor looks
    // (`$DAEMON_HOME/data`), and the process exits with status 3.
    Ok(KilnApp::new(storage)?
        .with_upgrade_info_dir(kiln_node::home::data_dir(home))
        .with_halt(|message| {
            eprintln!("kilnd: {message}");
            std::process::exit(UPGRADE_HALT_EXIT_CODE);
        }))
}

/// `kilnd`'s exit status when it halts at a planned upgrade it does not know.
const UPGRADE_HALT_EXIT_CODE: i32 = 3;

/// Everything `kilnd genesis validate` checks, also run before `start`:
/// the app state (the same validation InitChain runs), the CometBFT fields,
/// and that genesis.json's `validators`, when listed, are exactly the
/// genesis hosts with weight at their power-capped weights (InitChain
/// refuses any other set).
fn validate_genesis(path: &Path) -> Result<(String, kiln_genesis::AppGenesis)> {
    let (chain_id, app) = kiln_genesis::validate_genesis_file(path)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cometbft = kiln_node::home::parse_genesis(&text)?;
    // A finite block gas limit bounds what fee-free ML-ops txs can take.
    let max_gas = cometbft.consensus_params.block.max_gas;
    if max_gas <= 0 {
        bail!(
            "consensus_params.block.max_gas is {max_gas}: set a finite positive block gas limit (kilnd init writes {})",
            kiln_node::home::DEFAULT_BLOCK_MAX_GAS
        );
    }
    let free_per_block = app.authz.params.ml_ops_free_gas_per_block;
    if free_per_block > u64::try_from(max_gas).unwrap_or(0) {
        bail!(
            "app_state.authz.params.ml_ops_free_gas_per_block ({free_per_block}) is above consensus_params.block.max_gas ({max_gas})"
        );
    }
    let derived: std::collections::BTreeMap<Vec<u8>, u64> = app.validators()?.into_iter().collect();
    if !cometbft.validators.is_empty() {
        let mut listed = std::collections::BTreeMap::new();
        for v in &cometbft.validators {
            listed.insert(v.pub_key.to_bytes(), v.power.value());
        }
        if listed != derived || listed.len() != cometbft.validators.len() {
            let show = |m: &std::collections::BTreeMap<Vec<u8>, u64>| {
                m.iter()
                    .map(|(k, p)| format!("{}={p}", hex::encode(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            bail!(
                "genesis.json validators [{}] differ from the validators derived from app_state.hosts (hosts with weight, power-capped) [{}]; list those or leave validators empty",
                show(&listed),
                show(&derived)
            );
        }
    }
    Ok((chain_id, app))
}

/// `1000000ukiln,5uatom` as coins (amounts parsed, denoms validated).
fn parse_coins(coins: &str) -> Result<Vec<Coin>> {
    let mut parsed = Vec::new();
    for part in coins.split(',') {
        let split = part
            .find(|c: char| !c.is_ascii_digit())
            .with_context(|| format!("coin {part:?} has no denom; write e.g. 1000000ukiln"))?;
        let (amount, denom) = part.split_at(split);
        let amount = kiln_framework::coin::parse_amount(amount).map_err(anyhow::Error::msg)?;
        kiln_framework::coin::validate_denom(denom).map_err(anyhow::Error::msg)?;
        parsed.push(Coin::new(denom, amount));
    }
    Ok(parsed)
}

/// Coins of a bulk-add entry: the `add-account` string or a list of coins.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum BulkCoins {
    Text(String),
    List(Vec<Coin>),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkAccount {
    address: String,
    coins: BulkCoins,
}

/// `kilnd genesis bulk-add-accounts FILE`: every entry checked as
/// `add-account` checks one, the genesis written only if all pass. Returns
/// the number of entries.
fn genesis_bulk_add_accounts(home: &Path, file: &Path) -> Result<usize> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let entries: Vec<BulkAccount> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a JSON list of {{\"address\", \"coins\"}}",
            file.display()
        )
    })?;
    let mut balances = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let context = || format!("{} entry {i} ({})", file.display(), entry.address);
        let address = Address::parse(&entry.address).with_context(context)?;
        let coins = match &entry.coins {
            BulkCoins::Text(text) => parse_coins(text).with_context(context)?,
            BulkCoins::List(list) => {
                for coin in list {
                    kiln_framework::coin::validate_denom(&coin.denom)
                        .map_err(anyhow::Error::msg)
                        .with_context(context)?;
                }
                list.clone()
            }
        };
        if coins.is_empty() {
            bail!("{}: no coins", context());
        }
        balances.push(kiln_bank::GenesisBalance { address, coins });
    }
    let added = balances.len();
    edit_app_genesis(home, |app| {
        app.add_balances(balances)?;
        Ok(())
    })?;
    Ok(added)
}

/// Reads the home's genesis.json, applies `edit` to its `app_state`, checks
/// the contents (accounts come before the gentxs in a ceremony: no host needs
/// weight yet) and writes it back — or leaves the file untouched on error.
fn edit_app_genesis(
    home: &Path,
    edit: impl FnOnce(&mut kiln_genesis::AppGenesis) -> Result<()>,
) -> Result<PathBuf> {
    let path = kiln_node::home::genesis_path(home);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut genesis: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let app_state = genesis
        .get("app_state")
        .cloned()
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| serde_json::json!({}));
    let mut app: kiln_genesis::AppGenesis =
        serde_json::from_value(app_state).context("genesis app_state is invalid")?;
    edit(&mut app)?;
    app.validate_contents()?;
    genesis["app_state"] = serde_json::to_value(&app)?;
    std::fs::write(&path, serde_json::to_string_pretty(&genesis)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn genesis_add_account(home: &Path, address: &str, coins: &str) -> Result<()> {
    let address = Address::parse(address)?;
    let parsed = parse_coins(coins)?;
    let path = edit_app_genesis(home, |app| {
        app.add_balance(address, parsed);
        Ok(())
    })?;
    println!("added {address} with {coins} to {}", path.display());
    Ok(())
}

/// Name of the devnet ML operational ("hot") key in the test keyring.
const DEV_ML_KEY: &str = "dev-ml";

/// First `kilnd devnet` on a home: create the `dev` key and its ML operational
/// key `dev-ml` (test keyring), a genesis funding both with `dev` granting
/// `dev-ml` the ML-ops messages, and the consensus/node keys.
fn prepare_devnet_home(home: &Path, chain_id: &str, dev_funds: u128) -> Result<()> {
    let genesis_path = kiln_node::home::genesis_path(home);
    if genesis_path.exists() {
        return Ok(());
    }
    let keyring = kiln_client::keyring::Keyring::open(home, kiln_client::keyring::Backend::Test);
    let existing = keyring.list()?;
    let dev = match existing.iter().find(|k| k.name == "dev") {
        Some(existing) => existing.clone(),
        None => {
            let mnemonic = kiln_client::keyring::generate_mnemonic();
            let info = keyring.add("dev", &mnemonic, None)?;
            println!(
                "Created the devnet key `dev` ({}) in the UNENCRYPTED test keyring at {}.",
                info.address,
                keyring.dir().display()
            );
            println!(
                "Its mnemonic is shown once — it only protects devnet coins:\n\n  {}\n",
                mnemonic.as_str()
            );
            info
        }
    };
    // The worker's hot key. Its mnemonic is not printed (the line above is
    // the one scripts read as dev's); it stays in the keyring file.
    let dev_ml = match existing.iter().find(|k| k.name == DEV_ML_KEY) {
        Some(existing) => existing.clone(),
        None => {
            let mnemonic = kiln_client::keyring::generate_mnemonic();
            let info = kiln_client::write_test_key(home, DEV_ML_KEY, &mnemonic)?;
            println!(
                "Created the devnet ML operational key `{DEV_ML_KEY}` ({}) in the same test keyring; `dev` grants it the ML-ops messages at genesis.",
                info.address
            );
            info
        }
    };
    let dev_address = Address::parse(&dev.address)?;
    let dev_ml_address = Address::parse(&dev_ml.address)?;
    let app_state = kiln_genesis::devnet_app_genesis(dev_address, dev_funds, dev_ml_address);
    let out = kiln_node::home::init_home(
        home,
        chain_id,
        "kiln-devnet",
        serde_json::to_value(&app_state)?,
    )?;
    register_dev_host(home, dev_address)?;
    println!(
        "Initialized devnet home {} (chain-id {chain_id}, node {}); dev {dev_address} has {dev_funds}{BASE_DENOM}, {DEV_ML_KEY} {dev_ml_address} has {}{BASE_DENOM} and dev's ML-ops grant.",
        home.display(),
        out.node_id,
        kiln_genesis::DEVNET_ML_FUNDS
    );
    Ok(())
}

/// Makes `dev` a genesis host whose consensus key is this node's validator key,
/// with the genesis validator's power (10) as its epoch-1 weight, so sprint
/// weights and consensus power describe the same validator from block 1.
fn register_dev_host(home: &Path, dev: Address) -> Result<()> {
    const GENESIS_POWER: u64 = 10;
    let key = kiln_node::home::load_priv_validator_key(home)?;
    let path = kiln_node::home::genesis_path(home);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut genesis: serde_json::Value = serde_json::from_str(&text)?;
    let mut app: kiln_genesis::AppGenesis =
        serde_json::from_value(genesis["app_state"].clone()).context("devnet app_state")?;
    // The dev host serves every model the devnet registers, from the worker
    // `scripts/devnet.sh` starts (`--http 127.0.0.1:8547`).
    let models = app.inference.models.iter().map(|m| m.id.clone()).collect();
    app.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: dev,
        worker_url: "http://127.0.0.1:8547".into(),
        consensus_pubkey: hex::encode(key.verifying_key().as_bytes()),
        models,
        hardware: "devnet".into(),
        weight: GENESIS_POWER,
    });
    // SPEC §7's devnet: no collateral grace, and the dev host's collateral
    // bonded at genesis (a tenth of its funds, at most 1 M KILN: at 1 KILN
    // per weight unit that backs far more than a CPU sprint proves).
    app.staking.params.grace_epochs = 0;
    let funds = app
        .bank
        .balances
        .iter()
        .find(|b| b.address == dev)
        .map_or(0, |b| b.coins.iter().map(|c| c.amount).sum::<u128>());
    let bond = (funds / 10).min(kiln_genesis::DEVNET_MAX_DEV_BOND);
    if bond > 0 {
        app.staking.bonds.push(kiln_staking::genesis::GenesisBond {
            delegator: dev,
            host: dev,
            amount: bond,
        });
    }
    app.validate()?;
    genesis["app_state"] = serde_json::to_value(&app)?;
    std::fs::write(&path, serde_json::to_string_pretty(&genesis)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_devnet_start_creates_dev_and_dev_ml_with_grants_and_funds() {
        let home = tempfile::tempdir().unwrap();
        prepare_devnet_home(home.path(), "kiln-devnet-test", 1_000_000_000).unwrap();
        let keys =
            kiln_client::keyring::Keyring::open(home.path(), kiln_client::keyring::Backend::Test)
                .list()
                .unwrap();
        let address = |name: &str| {
            Address::parse(
                &keys
                    .iter()
                    .find(|k| k.name == name)
                    .unwrap_or_else(|| panic!("no key {name}"))
                    .address,
            )
            .unwrap()
        };
        let (dev, dev_ml) = (address("dev"), address(DEV_ML_KEY));
        assert_ne!(dev, dev_ml);

        let (chain_id, app) =
            kiln_genesis::validate_genesis_file(&kiln_node::home::genesis_path(home.path()))
                .unwrap();
        assert_eq!(chain_id, "kiln-devnet-test");
        let funds = |a: Address| {
            app.bank
                .balances
                .iter()
                .find(|b| b.address == a)
                .map(|b| b.coins.clone())
                .unwrap_or_default()
        };
        assert_eq!(funds(dev), vec![Coin::new(BASE_DENOM, 1_000_000_000)]);
        assert_eq!(funds(dev_ml), vec![Coin::new(BASE_DENOM, 10_000_000)]);
        let urls: Vec<&str> = app
            .authz
            .grants
            .iter()
            .filter(|g| g.granter == dev && g.grantee == dev_ml && g.expiration_unix.is_none())
            .map(|g| g.msg_type_url.as_str())
            .collect();
        assert_eq!(urls, kiln_messages::ml_ops_type_urls());
        assert_eq!(app.hosts.hosts.len(), 1, "dev is still the genesis host");
        assert_eq!(app.hosts.hosts[0].owner, dev);
        // SPEC §7's devnet: no grace, the dev host's collateral bonded.
        assert_eq!(app.staking.params.grace_epochs, 0);
        assert_eq!(app.staking.bonds.len(), 1);
        assert_eq!(
            (app.staking.bonds[0].host, app.staking.bonds[0].amount),
            (dev, 100_000_000)
        );

        // A second start keeps the home as it is.
        let before = std::fs::read(kiln_node::home::genesis_path(home.path())).unwrap();
        prepare_devnet_home(home.path(), "kiln-devnet-test", 5).unwrap();
        assert_eq!(
            std::fs::read(kiln_node::home::genesis_path(home.path())).unwrap(),
            before
        );

        // The chain starts from it: dev-ml has its account and funds, invariants hold.
        let data = tempfile::tempdir().unwrap();
        let mut d = kiln_testkit::BlockDriver::open(
            data.path(),
            "kiln-devnet-test",
            &serde_json::to_value(&app).unwrap(),
            0,
        )
        .unwrap();
        d.deliver(vec![]).unwrap();
        assert!(d.account(&dev_ml).is_some());
        assert_eq!(d.balance(&dev_ml), 10_000_000);
        d.check_invariants().unwrap();
    }

    #[test]
    fn bulk_add_accounts_funds_every_entry_in_order_or_leaves_the_genesis_untouched() {
        let home = tempfile::tempdir().unwrap();
        kiln_node::home::init_home(
            home.path(),
            "kiln-bulk-test",
            "node0",
            serde_json::to_value(kiln_genesis::AppGenesis::default()).unwrap(),
        )
        .unwrap();
        let key = |label: &str| kiln_testkit::TestKey::from_label(label).address;
        let (a, b, c) = (key("bulk-a"), key("bulk-b"), key("bulk-c"));
        genesis_add_account(home.path(), &b.to_bech32(), "5ukiln").unwrap();

        let file = home.path().join("accounts.json");
        let write = |value: serde_json::Value| std::fs::write(&file, value.to_string()).unwrap();
        write(serde_json::json!([
            {"address": a.to_bech32(), "coins": "100ukiln,7uother"},
            {"address": b.to_bech32(), "coins": [{"denom": "ukiln", "amount": "10"}]},
            {"address": c.to_bech32(), "coins": "1ukiln"},
            {"address": a.to_bech32(), "coins": "1ukiln"},
        ]));
        assert_eq!(genesis_bulk_add_accounts(home.path(), &file).unwrap(), 4);
        let genesis_path = kiln_node::home::genesis_path(home.path());
        // No host yet (mid-ceremony): the contents are valid, not yet a chain.
        let genesis: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&genesis_path).unwrap()).unwrap();
        let app: kiln_genesis::AppGenesis =
            serde_json::from_value(genesis["app_state"].clone()).unwrap();
        app.validate_contents().unwrap();
        let listed: Vec<(Address, Vec<Coin>)> = app
            .bank
            .balances
            .iter()
            .map(|e| (e.address, e.coins.clone()))
            .collect();
        // b kept its place (and was topped up); a and c follow in file order,
        // which is the order InitChain numbers their accounts in.
        assert_eq!(
            listed,
            vec![
                (b, vec![Coin::new(BASE_DENOM, 15)]),
                (a, vec![Coin::new(BASE_DENOM, 101), Coin::new("uother", 7)]),
                (c, vec![Coin::new(BASE_DENOM, 1)]),
            ]
        );

        // One bad entry refuses the whole file and leaves genesis.json as it was.
        let before = std::fs::read(&genesis_path).unwrap();
        for bad in [
            serde_json::json!([{"address": c.to_bech32(), "coins": "1ukiln"}, {"address": "kiln1nope", "coins": "1ukiln"}]),
            serde_json::json!([{"address": c.to_bech32(), "coins": "1ukiln"}, {"address": a.to_bech32(), "coins": "12"}]),
            serde_json::json!([{"address": c.to_bech32(), "coins": [{"denom": "U!", "amount": "1"}]}]),
            serde_json::json!([{"address": c.to_bech32(), "coins": [{"denom": "ukiln", "amount": "-1"}]}]),
            serde_json::json!([{"address": c.to_bech32(), "coins": format!("{}ukiln", u128::MAX)}]),
            serde_json::json!({"address": c.to_bech32(), "coins": "1ukiln"}),
        ] {
            write(bad.clone());
            assert!(
                genesis_bulk_add_accounts(home.path(), &file).is_err(),
                "accepted {bad}"
            );
            assert_eq!(std::fs::read(&genesis_path).unwrap(), before, "after {bad}");
        }
    }

    #[test]
    fn min_retain_blocks_flag_defaults_to_zero_and_prunes_the_devnet_block_store() {
        let retain = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            // Unset on `start` means kilnd.toml's value, whose default is 0.
            Command::Start {
                min_retain_blocks, ..
            } => min_retain_blocks.unwrap_or(node_config::NodeConfig::default().min_retain_blocks),
            Command::Devnet {
                min_retain_blocks, ..
            } => min_retain_blocks,
            _ => unreachable!(),
        };
        assert_eq!(retain(&["kilnd", "start"]), 0);
        assert_eq!(retain(&["kilnd", "devnet"]), 0);
        assert_eq!(retain(&["kilnd", "start", "--min-retain-blocks", "5"]), 5);
        assert_eq!(
            retain(&["kilnd", "devnet", "--min-retain-blocks", "10"]),
            10
        );

        // What `kilnd devnet --min-retain-blocks 10` runs, with blocks on demand.
        let home = tempfile::tempdir().unwrap();
        prepare_devnet_home(home.path(), "kiln-prune-test", 1_000_000_000).unwrap();
        let app = open_app(home.path(), 1000)
            .unwrap()
            .with_min_retain_blocks(10);
        let mut config = kiln_node::devnet::DevnetConfig::new(home.path());
        config.rpc_listen = "127.0.0.1:0".parse().unwrap();
        config.manual_blocks = true;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let h = kiln_node::DevnetHandle::start(app, config).await.unwrap();
            for _ in 0..30 {
                assert!(h.produce_block_now().await.unwrap().is_some());
            }
            assert_eq!(h.height(), 30);
            assert_eq!(h.node().store.base().unwrap(), 21);
            assert!(h.node().store.block(20).unwrap().is_none());
            assert!(h.node().store.block(21).unwrap().is_some());
            h.stop().await;
        });
    }
}
