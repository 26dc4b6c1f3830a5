//! `kiln` — the Kiln wallet CLI.

/// `print!`/`println!` that ignore a closed stdout (e.g. `kiln … | head`)
/// instead of panicking.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use kiln_cli::output::{self, OutputFormat};
use kiln_cli::prompt::Prompter;
use kiln_cli::{query, tx};
use kiln_client::amount::{parse_coin, parse_coins, parse_gas_price, DecCoin};
use kiln_client::keyring::{self, Backend, KeyInfo, Keyring, TEST_KEYRING_WARNING};
use kiln_client::rpc::{RpcClient, DEFAULT_NODE};
use kiln_client::{host, msgs};

#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "Kiln wallet: keys, transactions and queries",
    propagate_version = true
)]
struct Cli {
    /// CometBFT RPC address of the node.
    #[arg(long, global = true, env = "KILN_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// Chain id (default: asked from the node's `status`).
    #[arg(long, global = true)]
    chain_id: Option<String>,
    /// Home directory holding the keyrings (default ~/.kiln).
    #[arg(long, global = true, env = "KILN_HOME")]
    home: Option<PathBuf>,
    /// Output format: text or json.
    #[arg(long, short = 'o', global = true, default_value = "text")]
    output: OutputFormat,
    /// Keyring backend: file (encrypted) or test (UNENCRYPTED, devnets only).
    #[arg(
        long,
        global = true,
        env = "KILN_KEYRING_BACKEND",
        default_value = "file"
    )]
    keyring_backend: Backend,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Manage keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Build, sign and broadcast transactions.
    #[command(subcommand)]
    Tx(TxCmd),
    /// Query the chain.
    #[command(alias = "q")]
    Query(QueryArgs),
    /// Show the node's status (chain id, latest block, validator).
    Status,
    /// Buy one chat completion from the network, paid from --from's balance.
    Infer(InferArgs),
    /// A local OpenAI-compatible endpoint that signs every request with
    /// --from's key and forwards it to a transfer agent: point any OpenAI
    /// client's base_url at http://LISTEN/v1.
    ApiProxy(ApiProxyArgs),
}

#[derive(Args, Debug, Clone)]
struct TransferAgentArgs {
    /// The paying account (key name or address in the keyring).
    #[arg(long)]
    from: String,
    /// The host whose worker receives the requests (default: the worker at
    /// --worker, else a registered host that serves a model).
    #[arg(long)]
    transfer_agent: Option<String>,
    /// The transfer agent's worker URL (default: the one it registered).
    #[arg(long)]
    worker: Option<String>,
}

#[derive(Args, Debug)]
struct InferArgs {
    /// The user message.
    prompt: String,
    /// A registered model (`kiln query models`).
    #[arg(long, default_value = "smollm2-135m")]
    model: String,
    /// Most tokens to generate; the escrow is (prompt + max) × price.
    #[arg(long, default_value_t = 256)]
    max_tokens: u64,
    /// Print the answer as it is generated.
    #[arg(long)]
    stream: bool,
    #[command(flatten)]
    ta: TransferAgentArgs,
}

#[derive(Args, Debug)]
struct ApiProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// max_tokens given to requests that state none.
    #[arg(long, default_value_t = 256)]
    default_max_tokens: u64,
    #[command(flatten)]
    ta: TransferAgentArgs,
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Create a new key (24-word mnemonic, printed once) or, with --recover, restore one.
    Add {
        name: String,
        /// Read an existing mnemonic instead of generating one.
        #[arg(long)]
        recover: bool,
    },
    /// Restore a key from its mnemonic (prompt, or one line on stdin).
    Recover { name: String },
    /// List keys (no passphrase needed).
    List,
    /// Show a key's address and public key (by name or address).
    Show {
        name: String,
        /// Print only the address.
        #[arg(long, short = 'a')]
        address: bool,
    },
    /// Print a key's secret: its BIP-39 mnemonic (default), or with
    /// --unarmored-hex the raw 32-byte secp256k1 private key in hex.
    /// File keyring: requires the key's passphrase. Test keyring: asks for
    /// confirmation unless --yes.
    Export {
        name: String,
        /// Print the raw private key as hex instead of the mnemonic.
        #[arg(long)]
        unarmored_hex: bool,
        /// Skip the confirmation (test keyring).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Delete a key.
    Delete {
        name: String,
        /// Skip the confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Args, Debug, Clone)]
struct TxFlags {
    /// Gas limit, or "auto" to simulate.
    #[arg(long, default_value = "auto")]
    gas: String,
    /// Multiplier applied to the simulated gas.
    #[arg(long, default_value_t = 1.3)]
    gas_adjustment: f64,
    /// Price per gas unit; fee = ceil(gas × price).
    #[arg(long, default_value = "0.025ukiln")]
    gas_prices: String,
    /// Fixed fee (e.g. 5000ukiln); overrides --gas-prices.
    #[arg(long)]
    fees: Option<String>,
    /// Memo.
    #[arg(long, default_value = "")]
    memo: String,
    /// Block height after which the tx is invalid (0 = none).
    #[arg(long, default_value_t = 0)]
    timeout_height: u64,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// How long to wait for inclusion (e.g. 30s, 2m).
    #[arg(long, default_value = "30s")]
    timeout: String,
    /// Simulate and print gas and fee; do not sign or broadcast.
    #[arg(long)]
    dry_run: bool,
    /// Print the unsigned tx as JSON; contacts neither node nor keyring secrets.
    #[arg(long)]
    generate_only: bool,
}

#[derive(Subcommand, Debug)]
enum TxCmd {
    /// Bank transactions.
    #[command(subcommand)]
    Bank(BankTx),
    /// Authz transactions (ML operational key grants).
    #[command(subcommand)]
    Authz(AuthzTx),
    /// Host registry: register or update the sending account as a compute host.
    #[command(subcommand)]
    Host(HostTx),
    /// Collateral: a host's own bond and commission, stakers' delegations.
    #[command(subcommand)]
    Staking(StakingTx),
    /// Delegators' rewards.
    #[command(subcommand)]
    Distribution(DistributionTx),
    /// Governance: draft and submit proposals, deposit, vote.
    #[command(subcommand)]
    Gov(GovTx),
}

#[derive(Subcommand, Debug)]
enum GovTx {
    /// Write a proposal file (the Cosmos SDK's format) from a template,
    /// filled from the chain: the deposit is its min_deposit; a params
    /// proposal holds the module's params in force; an upgrade is planned
    /// 100 blocks ahead. Edit it, then `kiln tx gov submit-proposal FILE`.
    Draft {
        /// text, params, upgrade, cancel-upgrade, register-model,
        /// retire-model or community-pool-spend.
        #[arg(long, default_value = "text")]
        kind: kiln_client::gov::DraftKind,
        /// The module of a params proposal (auth, authz, epochs, staking,
        /// sprint, reputation, inference, rewards, slashing, gov).
        #[arg(long)]
        module: Option<String>,
        /// Where to write (default: proposal-<kind>.json, or
        /// proposal-params-<module>.json, in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Submit the proposal in FILE ("-" for stdin): {"messages": [...],
    /// "metadata", "deposit": "10kiln", "title", "summary"}. Its messages
    /// are checked as the chain will before anything is signed; prints the
    /// new proposal's id.
    SubmitProposal {
        file: PathBuf,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Add AMOUNT (e.g. 10kiln) to proposal ID's deposit.
    Deposit {
        id: u64,
        amount: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Vote on proposal ID: yes, no, abstain or no_with_veto (hosts only;
    /// a vote counts with the host's effective weight at the tally).
    Vote {
        id: u64,
        option: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Split the --from host's vote on proposal ID: "yes=0.6,no=0.4"
    /// (weights sum to 1).
    WeightedVote {
        id: u64,
        options: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
}

#[derive(Subcommand, Debug)]
enum DistributionTx {
    /// Withdraw the rewards of the --from account's delegation to HOST (or,
    /// without HOST, of every delegation it holds, one message each).
    WithdrawRewards {
        host: Option<String>,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
}

#[derive(Subcommand, Debug)]
enum StakingTx {
    /// Bond AMOUNT (e.g. 1000kiln) of the --from host's own coins behind it.
    Bond {
        amount: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Start unbonding AMOUNT of the --from host's own bond (paid after
    /// `unbonding_epochs` settles; slashable until then).
    Unbond {
        amount: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Delegate AMOUNT to HOST (kiln1… or kilnvaloper1…).
    Delegate {
        host: String,
        amount: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Start unbonding AMOUNT of a delegation to HOST.
    Undelegate {
        host: String,
        amount: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Move AMOUNT of a delegation from SRC_HOST to DST_HOST at once.
    Redelegate {
        src_host: String,
        dst_host: String,
        amount: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Set the --from host's commission: RATE as 5%, 2.5% or basis points.
    SetCommission {
        rate: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Take the --from host out of jail (after its jail period; `kiln query
    /// staking host` shows until when).
    Unjail {
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
}

#[derive(Args, Debug, Clone)]
struct HostFieldArgs {
    /// Models served, comma separated (e.g. llama-3-8b,qwen2-7b).
    #[arg(long)]
    models: Option<String>,
    /// Hardware summary (e.g. "1x RTX 4090, 64 GB").
    #[arg(long)]
    hardware: Option<String>,
    /// The node's CometBFT priv_validator_key.json: the consensus key
    /// registered is its public key, and its private key signs the proof of
    /// possession the chain requires (the key never leaves this machine).
    /// `register` defaults to `<home>/config/priv_validator_key.json`;
    /// `update` changes the key only when this is given.
    #[arg(long)]
    consensus_key_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum HostTx {
    /// Register the --from account as a host (MsgRegisterHost; owner = that account).
    Register {
        /// Account key (name or address) that owns the host.
        #[arg(long)]
        from: String,
        /// Public URL of the host's worker API (http:// or https://).
        #[arg(long)]
        worker_url: String,
        #[command(flatten)]
        fields: HostFieldArgs,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Update a host (MsgUpdateHost). Fields not given keep their on-chain
    /// values; the consensus key changes only if given.
    Update {
        #[arg(long)]
        from: String,
        /// New worker URL (default: unchanged).
        #[arg(long)]
        worker_url: Option<String>,
        #[command(flatten)]
        fields: HostFieldArgs,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// The host's ML nodes: the machines (or GPUs) doing its compute, each
    /// with its own ML key, switched on and off at epoch boundaries.
    #[command(subcommand)]
    Mlnode(MlNodeTx),
}

#[derive(Subcommand, Debug)]
enum MlNodeTx {
    /// Declare an ML node (enabled from the next epoch) and grant its key
    /// the ML-ops messages, in one transaction.
    Add {
        /// Node id, unique within the host (a-z, 0-9, '-', '_'; e.g. gpu-0).
        id: String,
        /// The node's own ML operational key (key name or kiln1… address).
        #[arg(long)]
        ml_key: String,
        /// The node's worker URL (http:// or https://).
        #[arg(long)]
        worker_url: String,
        /// Models it serves, comma separated.
        #[arg(long, default_value = "")]
        models: String,
        /// Hardware summary (e.g. "1x RTX 4090").
        #[arg(long, default_value = "")]
        hardware: String,
        /// Expiry of the ML-ops grant: RFC 3339 time, +30d/+12h/…, or "never".
        #[arg(long, default_value = "+365d")]
        expiration: String,
        /// The host's account key.
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Change a node's worker URL, models or hardware (fields not given keep their values).
    Update {
        id: String,
        #[arg(long)]
        worker_url: Option<String>,
        #[arg(long)]
        models: Option<String>,
        #[arg(long)]
        hardware: Option<String>,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Disable a node from the next epoch (no duty from then on).
    Disable {
        id: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Enable a node from the next epoch (or cancel a scheduled disable).
    Enable {
        id: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Remove a node that is disabled in force, and revoke its key's ML-ops grant.
    Remove {
        id: String,
        /// Keep the node key's ML-ops grant (it signs for another node).
        #[arg(long)]
        keep_grant: bool,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
}

#[derive(Subcommand, Debug)]
enum BankTx {
    /// Send coins: AMOUNT like 1000ukiln, 1.5kiln (= 1500000ukiln) or 1ukiln,5uatom.
    Send {
        /// Key name or address in the keyring.
        from: String,
        to: String,
        amount: String,
        #[command(flatten)]
        flags: TxFlags,
    },
}

#[derive(Subcommand, Debug)]
enum AuthzTx {
    /// Grant HOT_ADDRESS permission to send exactly the ML worker's messages (one tx).
    GrantMlOps {
        hot_address: String,
        /// Expiry: RFC 3339 time, +30d/+12h/…, or "never".
        #[arg(long, default_value = "+365d")]
        expiration: String,
        /// Granter key (name or address).
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Revoke every ML-ops grant given to HOT_ADDRESS.
    RevokeMlOps {
        hot_address: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
    /// Execute messages (JSON file, "-" for stdin) on behalf of their granter.
    Exec {
        msgs_file: PathBuf,
        /// Grantee (hot) key.
        #[arg(long)]
        from: String,
        #[command(flatten)]
        flags: TxFlags,
    },
}

#[derive(Args, Debug)]
struct QueryArgs {
    /// Query state at this height (0 = latest).
    #[arg(long, global = true, default_value_t = 0)]
    height: u64,
    #[command(subcommand)]
    cmd: QueryCmd,
}

#[derive(Subcommand, Debug)]
enum QueryCmd {
    /// Bank balances.
    #[command(subcommand)]
    Bank(BankQuery),
    /// Account number, sequence and public key.
    Account { address: String },
    /// A transaction by hash: result, messages and events.
    Tx { hash: String },
    /// Authz grants.
    #[command(subcommand)]
    Authz(AuthzQuery),
    /// Current epoch, stage and blocks to the next stage.
    Epoch,
    /// All registered hosts.
    Hosts,
    /// One host, by address or key name.
    Host { address: String },
    /// Voting weight, share and consensus power of each host, with the
    /// CometBFT voting power of its consensus key (RPC `validators`).
    Weights,
    /// Reputation score (0–100) and good epochs of an address or key.
    Reputation { address: String },
    /// A host's settled sprint result in EPOCH.
    SprintResult { epoch: u64, address: String },
    /// Misbehaviour (double signs, light-client attacks) CometBFT reported,
    /// with the host whose key it was; newest first.
    Misbehavior,
    /// Models the network serves: hashes, validation threshold, price.
    Models,
    /// Each model's price per token (and its floor).
    Prices,
    /// One inference's settlement (escrow, pay, refund, hashes) by id.
    Inference { id: String },
    /// A requester's recent inferences (address or key name), newest first.
    Inferences { address: String },
    /// A host's serving stats: completed, missed, reliability, earnings,
    /// validations passed, upheld disputes, INVALID.
    ServingStats { address: String },
    /// The open dispute over an inference: votes by weight, deadline.
    Dispute { id: String },
    /// Collateral: a host's pool, an account's delegations and unbonding,
    /// the totals.
    #[command(subcommand)]
    Staking(StakingQuery),
    /// An account's pending delegator rewards (and a host's lifetime rewards).
    Rewards { address: String },
    /// Supply, minted, burned, the community pool, bonded and unbonding
    /// coins, and the next epoch's emission.
    Supply,
    /// The points board: per host, one settled epoch's acceptance, weight
    /// and reward, with consensus power, lifetime rewards, inferences
    /// served, reputation and jail now. Sorted by weight.
    Leaderboard {
        /// A settled epoch (default: the last one).
        #[arg(long)]
        epoch: Option<u64>,
    },
    /// Slashes, newest first: all, or one host's (address or key name).
    Slashes { host: Option<String> },
    /// A host's consensus signing this epoch (blocks expected, signed).
    Liveness { host: String },
    /// A host's validation duties: its seeds for the serving periods in
    /// play, and for recent periods the duties assigned, performed and
    /// skipped (in millionths of a validation).
    ValidationDuties { address: String },
    /// Governance: proposals, votes, tallies, params, the upgrade plan.
    #[command(subcommand)]
    Gov(GovQuery),
    /// A module's params in force and those a passed proposal scheduled
    /// for the next epoch (MODULE as in genesis.json: staking, gov, epochs, …).
    Params { module: String },
}

#[derive(Subcommand, Debug)]
enum GovQuery {
    /// Proposals, newest first (at most 100).
    Proposals {
        /// Only those in this status: deposit_period, voting_period,
        /// passed, rejected or failed.
        #[arg(long)]
        status: Option<String>,
    },
    /// One proposal: status, deposits, messages, final tally.
    Proposal { id: u64 },
    /// The votes on a proposal.
    Votes { id: u64 },
    /// A proposal's tally: final once voting ended, else as it stands.
    Tally { id: u64 },
    /// The governance params (and any scheduled change), the authority.
    Params,
    /// The planned software upgrade and those applied.
    Upgrade,
}

#[derive(Subcommand, Debug)]
enum StakingQuery {
    /// A host's pool: backing, shares, self-bond, delegators, commission.
    Host { host: String },
    /// An account's delegations (address or key name).
    Delegations { address: String },
    /// An account's unbonding entries.
    Unbonding { address: String },
    /// Bonded and unbonding totals, and the last settled epoch.
    Pool,
}

#[derive(Subcommand, Debug)]
enum BankQuery {
    /// All balances of an address (or key name).
    Balances { address: String },
    /// Balance of one denom.
    Balance { address: String, denom: String },
}

#[derive(Subcommand, Debug)]
enum AuthzQuery {
    /// Grants given by GRANTER.
    Grants { granter: String },
}

struct Ctx {
    home: PathBuf,
    backend: Backend,
    output: OutputFormat,
    node: String,
    chain_id: Option<String>,
    prompter: Prompter,
}

impl Ctx {
    fn keyring(&self) -> Keyring {
        Keyring::open(&self.home, self.backend)
    }
    fn rpc(&self) -> RpcClient {
        RpcClient::new(&self.node)
    }
    /// The sending key: by name or address in the selected keyring, with a
    /// hint when it lives in the other backend.
    fn signer(&self, kr: &Keyring, from: &str) -> Result<KeyInfo> {
        match kr.find(from) {
            Ok(k) => Ok(k),
            Err(e @ keyring::KeyringError::NotFound(..)) => {
                let other = match self.backend {
                    Backend::File => Backend::Test,
                    Backend::Test => Backend::File,
                };
                if Keyring::open(&self.home, other).find(from).is_ok() {
                    bail!("{e}; it is in the {other} keyring: add --keyring-backend {other}");
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An address, or the address of a key in the keyring.
    fn resolve_address(&self, s: &str) -> Result<String> {
        if keyring::parse_address(s).is_ok() {
            return Ok(s.to_string());
        }
        // Public data only, so look in the selected keyring first, then the other.
        if keyring::validate_name(s).is_ok() {
            let other = match self.backend {
                Backend::File => Backend::Test,
                Backend::Test => Backend::File,
            };
            for b in [self.backend, other] {
                if let Ok(k) = Keyring::open(&self.home, b).get(s) {
                    return Ok(k.address);
                }
            }
        }
        bail!(
            "'{s}' is neither a kiln1… address nor a key in the keyrings under {}",
            self.home.display()
        )
    }
}

fn key_json(k: &KeyInfo) -> Value {
    let mut v = json!({
        "name": k.name,
        "type": "local",
        "address": k.address,
        "pubkey": k.pubkey_json().to_string(),
        "pubkey_bech32": k.pubkey_bech32(),
        "backend": k.backend.as_str(),
        "hd_path": k.hd_path,
    });
    if k.is_unencrypted() {
        v["warning"] = json!(TEST_KEYRING_WARNING);
    }
    v
}

fn print_key(ctx: &Ctx, k: &KeyInfo) {
    output::print(ctx.output, &key_json(k));
}

fn keys(ctx: &Ctx, cmd: KeysCmd) -> Result<()> {
    let kr = ctx.keyring();
    match cmd {
        KeysCmd::Add { name, recover } => add_key(ctx, &kr, &name, recover),
        KeysCmd::Recover { name } => add_key(ctx, &kr, &name, true),
        KeysCmd::List => {
            let list = kr.list()?;
            if ctx.output.is_json() {
                output::print_json(&Value::Array(list.iter().map(key_json).collect()));
            } else {
                if ctx.backend == Backend::Test {
                    println!("# keyring-test: {TEST_KEYRING_WARNING}");
                }
                if list.is_empty() {
                    println!(
                        "no keys in the {} keyring at {}",
                        ctx.backend,
                        kr.dir().display()
                    );
                }
                for k in &list {
                    println!("{:<20} {}  {}", k.name, k.address, k.backend);
                }
            }
            Ok(())
        }
        KeysCmd::Show { name, address } => {
            let k = kr.find(&name)?;
            if address {
                if ctx.output.is_json() {
                    output::print_json(&json!({"address": k.address}));
                } else {
                    println!("{}", k.address);
                }
            } else {
                print_key(ctx, &k);
            }
            Ok(())
        }
        KeysCmd::Export {
            name,
            unarmored_hex,
            yes,
        } => {
            let k = kr.find(&name)?;
            let mnemonic = match ctx.backend {
                Backend::File => {
                    let pass = ctx.prompter.passphrase(&k.name)?;
                    kr.mnemonic(&k.name, Some(&pass))?
                }
                Backend::Test => {
                    if !yes
                        && !ctx.prompter.confirm(&format!(
                            "Print the secret of key '{}'? Anyone who sees it controls the account",
                            k.name
                        ))?
                    {
                        bail!("export cancelled (pass --yes to skip the confirmation)");
                    }
                    kr.mnemonic(&k.name, None)?
                }
            };
            eprintln!("WARNING: this is the secret of key '{}' ({}); anyone who has it controls the account.", k.name, k.address);
            let secret = if unarmored_hex {
                hex::encode(keyring::derive_signing_key(&mnemonic)?.to_bytes())
            } else {
                mnemonic.to_string()
            };
            if ctx.output.is_json() {
                let field = if unarmored_hex {
                    "private_key_hex"
                } else {
                    "mnemonic"
                };
                output::print_json(&json!({"name": k.name, "address": k.address, field: secret}));
            } else {
                println!("{secret}");
            }
            Ok(())
        }
        KeysCmd::Delete { name, yes } => {
            let k = kr.find(&name)?;
            if !yes
                && !ctx.prompter.confirm(&format!(
                    "Delete key '{}' ({})? It can only be restored from its mnemonic",
                    k.name, k.address
                ))?
            {
                bail!(
                    "key '{}' was not deleted (pass --yes to skip the confirmation)",
                    k.name
                );
            }
            kr.delete(&k.name)?;
            if ctx.output.is_json() {
                output::print_json(&json!({"deleted": k.name, "address": k.address}));
            } else {
                println!("key '{}' deleted", k.name);
            }
            Ok(())
        }
    }
}

fn add_key(ctx: &Ctx, kr: &Keyring, name: &str, recover: bool) -> Result<()> {
    keyring::validate_name(name)?;
    if kr.exists(name) {
        return Err(keyring::KeyringError::AlreadyExists(name.to_string()).into());
    }
    let mnemonic = if recover {
        let m = ctx.prompter.mnemonic()?;
        keyring::parse_mnemonic(&m)?
    } else {
        keyring::generate_mnemonic()
    };
    let pass = match ctx.backend {
        Backend::File => {
            let p = ctx.prompter.new_passphrase(name)?;
            if p.chars().count() < keyring::MIN_PASSPHRASE_LEN {
                return Err(keyring::KeyringError::PassphraseTooShort.into());
            }
            Some(p)
        }
        Backend::Test => None,
    };
    let info = kr.add(name, &mnemonic, pass.as_deref().map(|s| s.as_str()))?;
    if ctx.output.is_json() {
        let mut v = key_json(&info);
        if !recover {
            v["mnemonic"] = json!(mnemonic.as_str());
        }
        output::print_json(&v);
    } else {
        print!("{}", output::to_text(&key_json(&info)));
        if !recover {
            println!(
                "\n**Important** write this mnemonic phrase in a safe place.\nIt is the only way to recover your account; it will not be shown again.\n\n{}",
                mnemonic.as_str()
            );
        }
    }
    Ok(())
}

struct CliUi<'a> {
    ctx: &'a Ctx,
}

impl tx::TxUi for CliUi<'_> {
    fn signing_key(&mut self, key: &KeyInfo) -> Result<k256::ecdsa::SigningKey> {
        let kr = self.ctx.keyring();
        Ok(match self.ctx.backend {
            Backend::File => {
                let pass = self.ctx.prompter.passphrase(&key.name)?;
                kr.signing_key(&key.name, Some(&pass))?
            }
            Backend::Test => kr.signing_key(&key.name, None)?,
        })
    }
    fn confirm(&mut self, summary: &str) -> Result<bool> {
        eprintln!("{summary}");
        self.ctx
            .prompter
            .confirm("confirm transaction before signing and broadcasting")
    }
}

fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("invalid duration '{s}' (e.g. 30s, 2m)"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => bail!("invalid duration unit in '{s}': use ms, s, m or h"),
    })
}

fn tx_options(ctx: &Ctx, f: &TxFlags) -> Result<tx::TxOptions> {
    let gas = if f.gas.eq_ignore_ascii_case("auto") {
        None
    } else {
        Some(
            f.gas
                .parse::<u64>()
                .map_err(|_| anyhow!("--gas must be a number or \"auto\", got '{}'", f.gas))?,
        )
    };
    let gas_prices: DecCoin = parse_gas_price(&f.gas_prices).context("--gas-prices")?;
    let fees = match &f.fees {
        Some(s) => Some(parse_coins(s).context("--fees")?),
        None => None,
    };
    Ok(tx::TxOptions {
        chain_id: ctx.chain_id.clone(),
        gas,
        gas_adjustment: f.gas_adjustment,
        gas_prices,
        fees,
        memo: f.memo.clone(),
        timeout_height: f.timeout_height,
        yes: f.yes,
        wait_timeout: parse_duration(&f.timeout).context("--timeout")?,
        dry_run: f.dry_run,
        generate_only: f.generate_only,
        output: ctx.output,
    })
}

fn txs(ctx: &Ctx, cmd: TxCmd) -> Result<()> {
    let kr = ctx.keyring();
    let (from, msgs, flags) = match cmd {
        TxCmd::Gov(g) => return gov_tx(ctx, g),
        TxCmd::Bank(BankTx::Send {
            from,
            to,
            amount,
            flags,
        }) => {
            let key = ctx.signer(&kr, &from)?;
            msgs::check_address("recipient", &to)?;
            let coins = if amount.contains(',') {
                parse_coins(&amount)?
            } else {
                vec![parse_coin(&amount)?]
            };
            let msg = msgs::msg_send(&key.address, &to, &coins);
            (key, vec![msg], flags)
        }
        TxCmd::Authz(AuthzTx::GrantMlOps {
            hot_address,
            expiration,
            from,
            flags,
        }) => {
            let key = ctx.signer(&kr, &from)?;
            msgs::check_address("HOT_ADDRESS", &hot_address)?;
            if hot_address == key.address {
                bail!("the hot key must differ from the granter");
            }
            let exp = expiration_from_now(&expiration)?;
            (
                key.clone(),
                msgs::msgs_grant_ml_ops(&key.address, &hot_address, exp),
                flags,
            )
        }
        TxCmd::Authz(AuthzTx::RevokeMlOps {
            hot_address,
            from,
            flags,
        }) => {
            let key = ctx.signer(&kr, &from)?;
            msgs::check_address("HOT_ADDRESS", &hot_address)?;
            (
                key.clone(),
                msgs::msgs_revoke_ml_ops(&key.address, &hot_address),
                flags,
            )
        }
        TxCmd::Authz(AuthzTx::Exec {
            msgs_file,
            from,
            flags,
        }) => {
            let key = ctx.signer(&kr, &from)?;
            let text = if msgs_file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("cannot read messages from stdin")?;
                s
            } else {
                std::fs::read_to_string(&msgs_file)
                    .with_context(|| format!("cannot read {}", msgs_file.display()))?
            };
            let inner = msgs::parse_exec_messages(&text)
                .with_context(|| format!("in {}", msgs_file.display()))?;
            (
                key.clone(),
                vec![msgs::msg_exec(&key.address, inner)],
                flags,
            )
        }
        TxCmd::Staking(cmd) => {
            let coin_of = |amount: &str| -> Result<u128> {
                kiln_client::staking::ukiln(&parse_coin(amount)?)
            };
            let host_of = |text: &str| -> Result<kiln_client::staking::Address> {
                let resolved = ctx
                    .resolve_address(text)
                    .unwrap_or_else(|_| text.to_string());
                kiln_client::staking::host_address(&resolved)
            };
            let me = |from: &str| -> Result<(KeyInfo, kiln_client::staking::Address)> {
                let key = ctx.signer(&kr, from)?;
                let address = kiln_client::staking::Address::parse(&key.address)?;
                Ok((key, address))
            };
            use kiln_client::staking as st;
            match cmd {
                StakingTx::Bond {
                    amount,
                    from,
                    flags,
                } => {
                    let (key, a) = me(&from)?;
                    (key, vec![st::msg_bond(&a, coin_of(&amount)?)], flags)
                }
                StakingTx::Unbond {
                    amount,
                    from,
                    flags,
                } => {
                    let (key, a) = me(&from)?;
                    (key, vec![st::msg_unbond(&a, coin_of(&amount)?)], flags)
                }
                StakingTx::Delegate {
                    host,
                    amount,
                    from,
                    flags,
                } => {
                    let (key, a) = me(&from)?;
                    let msg = st::msg_delegate(&a, &host_of(&host)?, coin_of(&amount)?);
                    (key, vec![msg], flags)
                }
                StakingTx::Undelegate {
                    host,
                    amount,
                    from,
                    flags,
                } => {
                    let (key, a) = me(&from)?;
                    let msg = st::msg_undelegate(&a, &host_of(&host)?, coin_of(&amount)?);
                    (key, vec![msg], flags)
                }
                StakingTx::Redelegate {
                    src_host,
                    dst_host,
                    amount,
                    from,
                    flags,
                } => {
                    let (key, a) = me(&from)?;
                    let msg = st::msg_redelegate(
                        &a,
                        &host_of(&src_host)?,
                        &host_of(&dst_host)?,
                        coin_of(&amount)?,
                    );
                    (key, vec![msg], flags)
                }
                StakingTx::SetCommission { rate, from, flags } => {
                    let (key, a) = me(&from)?;
                    let msg = st::msg_set_commission(&a, st::parse_commission(&rate)?);
                    (key, vec![msg], flags)
                }
                StakingTx::Unjail { from, flags } => {
                    let (key, a) = me(&from)?;
                    (key, vec![st::msg_unjail(&a)], flags)
                }
            }
        }
        TxCmd::Distribution(DistributionTx::WithdrawRewards { host, from, flags }) => {
            let key = ctx.signer(&kr, &from)?;
            let me = kiln_client::staking::Address::parse(&key.address)?;
            let hosts = match host {
                Some(text) => {
                    let resolved = ctx.resolve_address(&text).unwrap_or(text);
                    vec![kiln_client::staking::host_address(&resolved)?]
                }
                None => {
                    let v = kiln_client::staking::delegations(&ctx.rpc(), &key.address, 0)?;
                    let hosts: Vec<_> = v["delegations"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d["host"].as_str())
                        .filter_map(|h| kiln_client::staking::host_address(h).ok())
                        .filter(|h| *h != me)
                        .collect();
                    if hosts.is_empty() {
                        bail!(
                            "{} has no delegation to another host: nothing to withdraw",
                            key.address
                        );
                    }
                    hosts
                }
            };
            let msgs = hosts
                .iter()
                .map(|h| kiln_client::staking::msg_withdraw_rewards(&me, h))
                .collect();
            (key, msgs, flags)
        }
        TxCmd::Host(HostTx::Register {
            from,
            worker_url,
            fields,
            flags,
        }) => {
            let key = ctx.signer(&kr, &from)?;
            let mut f = host_fields(&fields)?;
            f.worker_url = worker_url;
            host::check_worker_url(&f.worker_url)?;
            let key_file = fields
                .consensus_key_file
                .clone()
                .unwrap_or_else(|| ctx.home.join("config").join("priv_validator_key.json"));
            prove_consensus_key(ctx, &key_file, &key.address, &mut f)?;
            let msg = host::msg_register_host(&key.address, &f)?;
            (key, vec![msg], flags)
        }
        TxCmd::Host(HostTx::Mlnode(cmd)) => mlnode_tx(ctx, &kr, cmd)?,
        TxCmd::Host(HostTx::Update {
            from,
            worker_url,
            fields,
            flags,
        }) => {
            let key = ctx.signer(&kr, &from)?;
            let mut f = host_fields(&fields)?;
            if let Some(key_file) = &fields.consensus_key_file {
                prove_consensus_key(ctx, key_file, &key.address, &mut f)?;
            }
            let complete =
                worker_url.is_some() && fields.models.is_some() && fields.hardware.is_some();
            if complete {
                f.worker_url = worker_url.unwrap_or_default();
            } else {
                // MsgUpdateHost replaces URL, models and hardware: keep the
                // on-chain values of the fields not given.
                if flags.generate_only {
                    bail!("with --generate-only give --worker-url, --models and --hardware (the update replaces all three)");
                }
                let cur = query::host_opt(&ctx.rpc(), &key.address, 0)?.ok_or_else(|| {
                    anyhow!(
                        "{} is not a registered host: use `kiln tx host register`",
                        key.address
                    )
                })?;
                f.worker_url = worker_url
                    .unwrap_or_else(|| cur["worker_url"].as_str().unwrap_or("").to_string());
                if fields.models.is_none() {
                    f.models = cur["models"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|m| m.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                }
                if fields.hardware.is_none() {
                    f.hardware = cur["hardware"].as_str().unwrap_or("").to_string();
                }
            }
            let msg = host::msg_update_host(&key.address, &f)?;
            (key, vec![msg], flags)
        }
    };
    let opts = tx_options(ctx, &flags)?;
    let rpc = ctx.rpc();
    let mut ui = CliUi { ctx };
    tx::run_tx(&rpc, &mut ui, &from, msgs, &opts)
}

/// Reads a file, or stdin for "-".
fn read_input(path: &Path, what: &str) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .with_context(|| format!("cannot read the {what} from stdin"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the {what} {}", path.display()))
    }
}

/// `kiln tx gov …`.
fn gov_tx(ctx: &Ctx, cmd: GovTx) -> Result<()> {
    use kiln_client::gov;
    let kr = ctx.keyring();
    let (key, msgs, flags, submitting) = match cmd {
        GovTx::Draft {
            kind,
            module,
            out,
            force,
        } => return gov_draft(ctx, kind, module, out, force),
        GovTx::SubmitProposal { file, from, flags } => {
            let text = read_input(&file, "proposal file")?;
            let p = gov::parse_proposal(&text)
                .with_context(|| format!("proposal file {}", file.display()))?;
            let key = ctx.signer(&kr, &from)?;
            let msg = gov::msg_submit_proposal(&p, &key.address);
            (key, vec![msg], flags, true)
        }
        GovTx::Deposit {
            id,
            amount,
            from,
            flags,
        } => {
            let coins = parse_coins(&amount).context("AMOUNT")?;
            let key = ctx.signer(&kr, &from)?;
            let msg = gov::msg_deposit(id, &key.address, &coins);
            (key, vec![msg], flags, false)
        }
        GovTx::Vote {
            id,
            option,
            from,
            flags,
        } => {
            let option = gov::parse_vote_option(&option)?;
            let key = ctx.signer(&kr, &from)?;
            (
                key.clone(),
                vec![gov::msg_vote(id, &key.address, option)],
                flags,
                false,
            )
        }
        GovTx::WeightedVote {
            id,
            options,
            from,
            flags,
        } => {
            let options = gov::parse_weighted_options(&options)?;
            let key = ctx.signer(&kr, &from)?;
            let msg = gov::msg_vote_weighted(id, &key.address, options);
            (key, vec![msg], flags, false)
        }
    };
    let opts = tx_options(ctx, &flags)?;
    let rpc = ctx.rpc();
    let mut ui = CliUi { ctx };
    let annotate = |res: &Value| -> Vec<(&'static str, Value)> {
        match gov::proposal_id_of(res) {
            Some(id) if submitting => vec![("proposal_id", json!(id.to_string()))],
            _ => vec![],
        }
    };
    let result = tx::run_tx_with(&rpc, &mut ui, &key, msgs, &opts, &annotate)?;
    if let (true, Some(res)) = (submitting, result) {
        match gov::proposal_id_of(&res) {
            Some(id) => eprintln!(
                "proposal {id} submitted: `kiln query gov proposal {id}`; hosts vote with `kiln tx gov vote {id} yes --from KEY`"
            ),
            None => eprintln!(
                "warning: the tx was included, but its events carry no proposal id (see `kiln query gov proposals`)"
            ),
        }
    }
    Ok(())
}

/// `kiln tx gov draft`.
fn gov_draft(
    ctx: &Ctx,
    kind: kiln_client::gov::DraftKind,
    module: Option<String>,
    out: Option<PathBuf>,
    force: bool,
) -> Result<()> {
    use kiln_client::gov::{self, DraftKind};
    let path = out.unwrap_or_else(|| {
        PathBuf::from(match (&module, kind) {
            (Some(m), DraftKind::Params) => format!("proposal-params-{m}.json"),
            _ => format!("proposal-{kind}.json"),
        })
    });
    if path.exists() && !force {
        bail!(
            "{} already exists: pass --force to overwrite it, or --out another file",
            path.display()
        );
    }
    let inputs = gov::draft_inputs(&ctx.rpc(), kind, module.as_deref())?;
    let draft = gov::draft_proposal(kind, &inputs)?;
    let text = gov::proposal_file_text(&draft);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .create_new(!force)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut edit = gov::draft_hints(kind);
    if let (Some(m), Some(p)) = (&module, &inputs.pending) {
        edit.push(format!(
            "note: a change of the {m} params is already scheduled for the next epoch ({p}); the draft holds the params in force"
        ));
    }
    let next = format!("kiln tx gov submit-proposal {} --from KEY", path.display());
    if ctx.output.is_json() {
        output::print_json(&json!({
            "file": path.display().to_string(),
            "kind": kind.as_str(),
            "edit": edit,
            "next": next,
        }));
    } else {
        println!("wrote the draft of a {kind} proposal to {}", path.display());
        println!("edit it:");
        for line in &edit {
            println!("  - {line}");
        }
        println!("then submit it: {next}");
    }
    Ok(())
}

/// Reads the consensus key pair from `key_file` and fills the key and its
/// proof of possession for `owner` on this chain (chain id from --chain-id,
/// else from the node).
fn prove_consensus_key(
    ctx: &Ctx,
    key_file: &Path,
    owner: &str,
    f: &mut host::HostFields,
) -> Result<()> {
    let pair = host::ConsensusKeyPair::read_file(key_file).context("--consensus-key-file")?;
    let chain_id = match &ctx.chain_id {
        Some(c) => c.clone(),
        None => ctx.rpc().chain_id().context(
            "the proof of possession names the chain: give --chain-id or a reachable --node",
        )?,
    };
    f.consensus_pubkey = pair.public().to_vec();
    f.consensus_key_proof = pair.prove_possession(&chain_id, owner)?;
    Ok(())
}

/// Models and hardware from the flags (URL and consensus key filled by the caller).
fn host_fields(a: &HostFieldArgs) -> Result<host::HostFields> {
    let models = match &a.models {
        Some(m) => host::parse_models(m).context("--models")?,
        None => vec![],
    };
    let hardware = a.hardware.clone().unwrap_or_default();
    host::check_hardware(&hardware)?;
    Ok(host::HostFields {
        worker_url: String::new(),
        consensus_pubkey: Vec::new(),
        consensus_key_proof: Vec::new(),
        models,
        hardware,
    })
}

fn queries(ctx: &Ctx, q: QueryArgs) -> Result<()> {
    let rpc = ctx.rpc();
    let h = q.height;
    let v = match q.cmd {
        QueryCmd::Bank(BankQuery::Balances { address }) => {
            let a = ctx.resolve_address(&address)?;
            let v = query::balances_json(&rpc, &a, h)?;
            if !ctx.output.is_json() {
                let coins = v["balances"].as_array().cloned().unwrap_or_default();
                if coins.is_empty() {
                    println!("{a} has no balances");
                }
                for c in coins {
                    let amount = c["amount"].as_str().unwrap_or("0").to_string();
                    let denom = c["denom"].as_str().unwrap_or("").to_string();
                    if denom == kiln_client::amount::BASE_DENOM {
                        let u: u128 = amount.parse().unwrap_or(0);
                        println!(
                            "{amount}{denom}  ({} KILN)",
                            kiln_client::amount::format_kiln(u)
                        );
                    } else {
                        println!("{amount}{denom}");
                    }
                }
                return Ok(());
            }
            v
        }
        QueryCmd::Bank(BankQuery::Balance { address, denom }) => {
            let a = ctx.resolve_address(&address)?;
            query::balance_json(&rpc, &a, &denom, h)?
        }
        QueryCmd::Account { address } => {
            let a = ctx.resolve_address(&address)?;
            query::account_json(&rpc, &a, h)?
        }
        QueryCmd::Tx { hash } => query::tx_json(&rpc, &hash)?,
        QueryCmd::Authz(AuthzQuery::Grants { granter }) => {
            let a = ctx.resolve_address(&granter)?;
            query::granter_grants_json(&rpc, &a, h)?
        }
        QueryCmd::Epoch => {
            let v = query::epoch_json(&rpc, h)?;
            if !ctx.output.is_json() {
                print!("{}", query::epoch_text(&v));
                return Ok(());
            }
            v
        }
        QueryCmd::Hosts => {
            let v = query::hosts_json(&rpc, h)?;
            if !ctx.output.is_json() && v.as_array().is_some_and(|a| a.is_empty()) {
                println!("no hosts registered");
                return Ok(());
            }
            v
        }
        QueryCmd::Host { address } => {
            let a = ctx.resolve_address(&address)?;
            query::host_json(&rpc, &a, h)?
        }
        QueryCmd::Misbehavior => kiln_client::query::misbehavior(&rpc, h)?,
        QueryCmd::Models => {
            let rows = kiln_client::query::models(&rpc, h)?;
            if !ctx.output.is_json() {
                print!("{}", query::models_text(&rows));
                return Ok(());
            }
            Value::Array(rows)
        }
        QueryCmd::Prices => {
            let rows = kiln_client::query::prices(&rpc, h)?;
            if !ctx.output.is_json() {
                print!("{}", query::prices_text(&rows));
                return Ok(());
            }
            Value::Array(rows)
        }
        QueryCmd::Inference { id } => kiln_client::query::inference(&rpc, id.trim(), h)?
            .ok_or_else(|| {
                anyhow::anyhow!("no inference {id}: never started, or pruned after its retention")
            })?,
        QueryCmd::Inferences { address } => {
            let a = ctx.resolve_address(&address)?;
            Value::Array(kiln_client::query::inferences_by_requester(&rpc, &a, h)?)
        }
        QueryCmd::Dispute { id } => kiln_client::query::json_query_opt(
            &rpc,
            kiln_inference::query::DISPUTE_PATH,
            id.trim().as_bytes(),
            h,
        )?
        .ok_or_else(|| anyhow::anyhow!("no open dispute over {id}"))?,
        QueryCmd::ServingStats { address } => {
            let a = ctx.resolve_address(&address)?;
            kiln_client::query::host_serving_stats(&rpc, &a, h)?
        }
        QueryCmd::Staking(q) => match q {
            StakingQuery::Host { host } => {
                let resolved = ctx.resolve_address(&host).unwrap_or(host);
                let a = kiln_client::staking::host_address(&resolved)?;
                kiln_client::staking::host_pool(&rpc, &a, h)?
            }
            StakingQuery::Delegations { address } => {
                let a = ctx.resolve_address(&address)?;
                kiln_client::staking::delegations(&rpc, &a, h)?
            }
            StakingQuery::Unbonding { address } => {
                let a = ctx.resolve_address(&address)?;
                kiln_client::staking::unbonding(&rpc, &a, h)?
            }
            StakingQuery::Pool => kiln_client::staking::pool(&rpc, h)?,
        },
        QueryCmd::Rewards { address } => {
            let a = ctx.resolve_address(&address)?;
            kiln_client::staking::rewards(&rpc, &a, h)?
        }
        QueryCmd::Supply => kiln_client::staking::supply(&rpc, h)?,
        QueryCmd::Leaderboard { epoch } => kiln_client::staking::leaderboard(&rpc, epoch, h)?,
        QueryCmd::Slashes { host } => {
            let host = match host {
                Some(text) => Some(kiln_client::staking::host_address(
                    &ctx.resolve_address(&text)?,
                )?),
                None => None,
            };
            kiln_client::staking::slashes(&rpc, host.as_ref(), h)?
        }
        QueryCmd::Liveness { host } => {
            let a = kiln_client::staking::host_address(&ctx.resolve_address(&host)?)?;
            kiln_client::staking::liveness(&rpc, &a, h)?
        }
        QueryCmd::ValidationDuties { address } => {
            let a = ctx.resolve_address(&address)?;
            let seeds = kiln_client::query::validation_seeds(&rpc, &a, h)?;
            let duties = kiln_client::query::validation_duties(&rpc, &a, h)?;
            serde_json::json!({
                "host": a,
                "period": seeds["period"],
                "seeds": seeds["seeds"],
                "records": duties["records"],
            })
        }
        QueryCmd::Weights => {
            let v = query::weights_json(&rpc, h)?;
            if !ctx.output.is_json() {
                print!("{}", query::weights_text(&v));
                return Ok(());
            }
            v
        }
        QueryCmd::Reputation { address } => {
            let a = ctx.resolve_address(&address)?;
            let v = query::reputation_json(&rpc, &a, h)?;
            if !ctx.output.is_json() {
                print!("{}", query::reputation_text(&v));
                return Ok(());
            }
            v
        }
        QueryCmd::Gov(g) => {
            use kiln_client::gov;
            let json_out = ctx.output.is_json();
            let (v, text) = match g {
                GovQuery::Proposals { status } => {
                    let v = gov::proposals(&rpc, status.as_deref(), h)?;
                    let t = query::gov_proposals_text(&v, status.as_deref());
                    (v, t)
                }
                GovQuery::Proposal { id } => {
                    let v = gov::proposal(&rpc, id, h)?;
                    let t = query::gov_proposal_text(&v);
                    (v, t)
                }
                GovQuery::Votes { id } => {
                    let v = gov::votes(&rpc, id, h)?;
                    let t = query::gov_votes_text(id, &v);
                    (v, t)
                }
                GovQuery::Tally { id } => {
                    let v = gov::tally(&rpc, id, h)?;
                    let t = query::gov_tally_text(&v);
                    (v, t)
                }
                GovQuery::Params => {
                    let v = gov::params(&rpc, h)?;
                    let t = output::to_text(&v);
                    (v, t)
                }
                GovQuery::Upgrade => {
                    let v = gov::upgrade(&rpc, h)?;
                    let t = query::gov_upgrade_text(&v);
                    (v, t)
                }
            };
            if !json_out {
                print!("{text}");
                return Ok(());
            }
            v
        }
        QueryCmd::Params { module } => {
            let v = kiln_client::gov::module_params(&rpc, module.trim(), h)?;
            if !ctx.output.is_json() {
                print!("{}", query::module_params_text(&v));
                return Ok(());
            }
            v
        }
        QueryCmd::SprintResult { epoch, address } => {
            let a = ctx.resolve_address(&address)?;
            query::sprint_result_json(&rpc, epoch, &a, h)?
        }
    };
    output::print(ctx.output, &v);
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        home: cli.home.clone().unwrap_or_else(keyring::default_home),
        backend: cli.keyring_backend,
        output: cli.output,
        node: cli.node.clone(),
        chain_id: cli.chain_id.clone(),
        prompter: Prompter::new(),
    };
    match cli.cmd {
        Cmd::Keys(k) => keys(&ctx, k),
        Cmd::Tx(t) => txs(&ctx, t),
        Cmd::Query(q) => queries(&ctx, q),
        Cmd::Status => {
            let v = query::status_json(&ctx.rpc())?;
            output::print(ctx.output, &v);
            Ok(())
        }
        Cmd::Infer(a) => infer(&ctx, a),
        Cmd::ApiProxy(a) => api_proxy(&ctx, a),
    }
}

/// The paying key, the chain id and the transfer agent of `infer` and `api-proxy`.
fn buyer(
    ctx: &Ctx,
    a: &TransferAgentArgs,
) -> Result<(
    k256::ecdsa::SigningKey,
    String,
    kiln_client::inference::TransferAgent,
)> {
    let kr = ctx.keyring();
    let info = ctx.signer(&kr, &a.from)?;
    let rpc = ctx.rpc();
    let chain_id = match &ctx.chain_id {
        Some(c) => c.clone(),
        None => rpc.chain_id()?,
    };
    let ta = kiln_client::inference::transfer_agent(
        &rpc,
        a.transfer_agent.as_deref(),
        a.worker.as_deref(),
    )?;
    let mut ui = CliUi { ctx };
    let key = tx::TxUi::signing_key(&mut ui, &info)?;
    Ok((key, chain_id, ta))
}

fn infer(ctx: &Ctx, a: InferArgs) -> Result<()> {
    let (key, chain_id, ta) = buyer(ctx, &a.ta)?;
    let json_out = ctx.output.is_json();
    let streaming = a.stream && !json_out;
    let outcome = kiln_cli::infer::infer(
        &key,
        &chain_id,
        &ta,
        &a.model,
        &a.prompt,
        a.max_tokens,
        a.stream,
        |piece| {
            if streaming {
                print!("{piece}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            }
        },
    )?;
    if json_out {
        output::print(
            ctx.output,
            &serde_json::json!({
                "text": outcome.text, "id": outcome.id, "executor": outcome.executor,
                "transfer_agent": ta.host, "usage": outcome.usage,
            }),
        );
        return Ok(());
    }
    if streaming {
        println!();
    } else {
        println!("{}", outcome.text);
    }
    eprintln!(
        "inference {} executed by {} via {}; settlement: kiln query inference {}",
        outcome.id, outcome.executor, ta.host, outcome.id
    );
    Ok(())
}

fn api_proxy(ctx: &Ctx, a: ApiProxyArgs) -> Result<()> {
    let (key, chain_id, ta) = buyer(ctx, &a.ta)?;
    kiln_cli::infer::api_proxy(&a.listen, key, chain_id, ta, a.default_max_tokens)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `kiln tx host mlnode …`: the messages to sign, by the host's account key.
fn mlnode_tx(
    ctx: &Ctx,
    kr: &Keyring,
    cmd: MlNodeTx,
) -> Result<(KeyInfo, Vec<kiln_client::Any>, TxFlags)> {
    use kiln_client::host as hc;
    Ok(match cmd {
        MlNodeTx::Add {
            id,
            ml_key,
            worker_url,
            models,
            hardware,
            expiration,
            from,
            flags,
        } => {
            let key = ctx.signer(kr, &from)?;
            let ml = ctx.resolve_address(&ml_key).unwrap_or(ml_key);
            msgs::check_address("--ml-key", &ml)?;
            if ml == key.address {
                bail!("--ml-key must be the node's own key, not the host's account key");
            }
            let exp = expiration_from_now(&expiration)?;
            let mut all = vec![hc::msg_add_ml_node(
                &key.address,
                &id,
                &worker_url,
                hc::parse_models(&models)?,
                &hardware,
                &ml,
            )];
            all.extend(msgs::msgs_grant_ml_ops(&key.address, &ml, exp));
            (key, all, flags)
        }
        MlNodeTx::Update {
            id,
            worker_url,
            models,
            hardware,
            from,
            flags,
        } => {
            let key = ctx.signer(kr, &from)?;
            let cur = hc::ml_node(&ctx.rpc(), &key.address, &id)?;
            let text = |k: &str| cur[k].as_str().unwrap_or("").to_string();
            let models = match models {
                Some(m) => hc::parse_models(&m)?,
                None => cur["models"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|m| m.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let msg = hc::msg_update_ml_node(
                &key.address,
                &id,
                &worker_url.unwrap_or_else(|| text("worker_url")),
                models,
                &hardware.unwrap_or_else(|| text("hardware")),
            );
            (key, vec![msg], flags)
        }
        MlNodeTx::Disable { id, from, flags } => {
            let key = ctx.signer(kr, &from)?;
            let msg = hc::msg_set_ml_node_enabled(&key.address, &id, false);
            (key, vec![msg], flags)
        }
        MlNodeTx::Enable { id, from, flags } => {
            let key = ctx.signer(kr, &from)?;
            let msg = hc::msg_set_ml_node_enabled(&key.address, &id, true);
            (key, vec![msg], flags)
        }
        MlNodeTx::Remove {
            id,
            keep_grant,
            from,
            flags,
        } => {
            let key = ctx.signer(kr, &from)?;
            let cur = hc::ml_node(&ctx.rpc(), &key.address, &id)?;
            let mut all = vec![hc::msg_remove_ml_node(&key.address, &id)];
            if !keep_grant {
                if let Some(ml) = cur["ml_key"].as_str() {
                    all.extend(msgs::msgs_revoke_ml_ops(&key.address, ml));
                }
            }
            (key, all, flags)
        }
    })
}

/// A grant expiry from `--expiration` (RFC 3339, `+30d`, or `never`),
/// relative to now.
fn expiration_from_now(text: &str) -> Result<Option<kiln_client::Timestamp>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    msgs::parse_expiration(text, now)
}
