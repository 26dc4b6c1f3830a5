//! Command line of `kiln-mlworker`: `run` (follow the chain and do the host's
//! sprint duties), `status` (ask a running worker), and the offline `sprint`
//! tools. A later issue adds `serve` (inference engine, OpenAI-compatible API).

use crate::device::{configure_threads, ComputeDevice, DeviceChoice, Precision};
use crate::sprint::bench::{dense_matmul_flops, run_reference, sprint_throughput};
use crate::sprint::engine::SprintEngine;
use crate::sprint::leaves::{default_r_target, prove, verify, ProofFile, RunFile, VerifyParams};
use crate::sprint::model::{flops_per_nonce, nominal_flops_per_nonce};
use crate::sprint::shares::recheck_near_boundary;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_client::address;
use kiln_sprint_protocol::leaf::{claims_share, quantize_distance, Leaf};
use kiln_sprint_protocol::model::ModelConfig;
use kiln_sprint_protocol::verdict::Ratio;
use kiln_sprint_protocol::Hash32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "kiln-mlworker",
    version,
    about = "Kiln ML worker: sprint (proof of compute) engine"
)]
pub struct Cli {
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Follow the chain and do the host's sprint duties every epoch: sprint,
    /// commit, open, validate and vote, signed by the ML operational key.
    Run(WorkerRunArgs),
    /// Show a running worker's stage, progress and last transaction.
    Status(StatusArgs),
    /// Check what `run` needs — torch and the device, the model file, the
    /// node, the ML key, the host's registration and ML-ops grant, the fee
    /// allowance, the ML node, the port — and print a fix for each failure.
    /// Exits 1 when a check fails.
    Doctor(DoctorArgs),
    /// The sprint: the proof-of-compute transformer (SPEC §4).
    #[command(subcommand)]
    Sprint(SprintCmd),
    /// The LLMs this worker can serve.
    #[command(subcommand)]
    Models(ModelsCmd),
    /// Serve an LLM behind an OpenAI-compatible API, without a chain:
    /// /v1/models, /v1/chat/completions, /v1/completions, /health, /metrics.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// CometBFT RPC address of the host's node.
    #[arg(long, env = "KILN_NODE", default_value = "http://127.0.0.1:26657")]
    pub node: String,
    /// The host's account address.
    #[arg(long)]
    pub host: String,
    /// Name (or address) of the worker's ML operational key.
    #[arg(long)]
    pub key: String,
    /// Home directory holding the keyrings (default ~/.kiln).
    #[arg(long, env = "KILN_HOME")]
    pub home: Option<PathBuf>,
    #[arg(long, env = "KILN_KEYRING_BACKEND", default_value = "file")]
    pub keyring_backend: kiln_client::Backend,
    /// The device `run` will use: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// The model `run --serve-model` will serve (also checks the inference grants).
    #[arg(long)]
    pub serve_model: Option<String>,
    /// The address `run --http` will listen on.
    #[arg(long, default_value = "127.0.0.1:8547")]
    pub http: String,
    /// The ML node `run --ml-node` will be.
    #[arg(long, value_name = "ID")]
    pub ml_node: Option<String>,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A known model's name (`kiln-mlworker models list`) or a GGUF file.
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
    /// Address of the API.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub http: String,
    /// Requests decoded together at most (continuous batching).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Requests waiting for a batch slot at most; more get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Prompt tokens prefilled per step, over all joining requests.
    #[arg(long, default_value_t = 256)]
    pub prefill_chunk: usize,
    /// Request bodies above this many bytes get 413.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Tokens generated per request at most (`max_tokens` above it gets 400).
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub dev: DeviceArgs,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCmd {
    /// Every model known by name: its file, and the identity the chain pins
    /// (SHA-256 of the file) with its size.
    List(ModelsListArgs),
}

#[derive(Args, Debug)]
pub struct ModelsListArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WorkerRunArgs {
    /// CometBFT RPC address of the host's node.
    #[arg(long, env = "KILN_NODE", default_value = "http://127.0.0.1:26657")]
    pub node: String,
    /// The host's account address (the registered host the worker works for).
    #[arg(long)]
    pub host: String,
    /// Name (or address) of the ML operational key in the keyring; the host
    /// must have granted it the ML-ops messages (`kiln tx authz grant-ml-ops`).
    #[arg(long)]
    pub key: String,
    /// Home directory holding the keyrings (default ~/.kiln).
    #[arg(long, env = "KILN_HOME")]
    pub home: Option<PathBuf>,
    /// Keyring backend: file (encrypted; passphrase from KILN_KEYRING_PASSPHRASE
    /// or stdin) or test (unencrypted, devnets only).
    #[arg(long, env = "KILN_KEYRING_BACKEND", default_value = "file")]
    pub keyring_backend: kiln_client::Backend,
    /// Journal directory (default <home>/worker/<host>/<ML key address>).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Address of the /health, /metrics and /status endpoints.
    #[arg(long, default_value = "127.0.0.1:8547")]
    pub http: String,
    /// Re-commit the growing share tree at most every this many blocks.
    #[arg(long, default_value_t = 3)]
    pub commit_every: u64,
    /// Seconds of compute between chain polls during the sprint.
    #[arg(long, default_value_t = 0.5)]
    pub slice_seconds: f64,
    /// Stop after this epoch has settled (default: run until killed).
    #[arg(long)]
    pub until_epoch: Option<u64>,
    /// Also serve this model (a known name such as smollm2-135m, or a GGUF
    /// path) behind the OpenAI-compatible /v1 routes on --http, sharing the
    /// device with the sprint (inference runs first; see README "Serving").
    #[arg(long)]
    pub serve_model: Option<String>,
    /// Precision of the served model: f32, bf16 or auto (f32 on CPU, bf16 on
    /// CUDA; see `serve --precision`). `--precision` is the sprint's.
    #[arg(long, default_value = "auto")]
    pub inference_precision: Precision,
    /// Serve and validate inference only; take no part in sprints. The
    /// host's weight then comes from another worker that sprints for it
    /// (or, until the first settle, from genesis). Needs --serve-model.
    #[arg(long, requires = "serve_model")]
    pub no_sprint: bool,
    /// Drain before a clean stop: commit no new sprint, keep every other
    /// duty (reveal and open what was committed, vote, validate, serve), and
    /// exit with status 0 once a settle leaves the host with weight 0 in
    /// force (docs/operator-guide.md, "Stopping a host cleanly"). An ML node
    /// is retired with `kiln tx host mlnode disable` instead.
    #[arg(long, conflicts_with = "ml_node")]
    pub drain: bool,
    /// The live status line at the bottom of stderr (model loading, stage,
    /// nonces, shares, votes, inference queue, txs): auto draws it on a
    /// terminal only.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub progress: String,
    /// This worker is the host's ML node ID (`kiln tx host mlnode add ID
    /// --ml-key <this key>`): it sprints in that node's lane, and idles
    /// until the node is enabled — it never stands in for the host's own
    /// worker, even before the node is declared.
    #[arg(long, value_name = "ID")]
    pub ml_node: Option<String>,
    /// Hours the executor keeps each served payload (request, completion,
    /// top logprobs) for the validators the chain assigns.
    #[arg(long, default_value_t = 48)]
    pub payload_retention_hours: u64,
    /// Tests of validation only: serve a substitute (weights × (1 + r·N(0,1)))
    /// that claims the registered model's hash. Validators must catch it.
    #[arg(long, hide = true)]
    pub test_substitute_perturbation: Option<f64>,
    #[command(flatten)]
    pub dev: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The worker's --http address.
    #[arg(long, default_value = "127.0.0.1:8547")]
    pub http: String,
    /// Print the raw JSON status.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SprintCmd {
    /// Measure nonces/s, shares/s, effective FLOP/s and dense matmul FLOP/s.
    Bench(BenchArgs),
    /// Compute shares for a seed and address and write the leaves.
    Run(RunArgs),
    /// Open the challenged leaves of a run file with Merkle proofs.
    Prove(ProveArgs),
    /// Recompute opened leaves, test them and print the verdict.
    Verify(VerifyArgs),
    /// Measure the distance distribution and print r_target for a share rate.
    Calibrate(CalibrateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// devnet, mainnet, or custom (then give every dimension).
    #[arg(long, default_value = "devnet")]
    pub preset: String,
    #[arg(long)]
    pub dim: Option<usize>,
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long)]
    pub ffn_dim: Option<usize>,
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[arg(long)]
    pub out_dim: Option<usize>,
}

impl ModelArgs {
    pub fn config(&self) -> Result<ModelConfig> {
        let base =
            match self.preset.as_str() {
                "custom" => None,
                p => Some(ModelConfig::preset(p).with_context(|| {
                    format!("unknown preset {p:?}: use devnet, mainnet or custom")
                })?),
            };
        let pick = |v: Option<usize>, b: Option<usize>, name: &str| -> Result<usize> {
            v.or(b)
                .with_context(|| format!("--preset custom needs --{name}"))
        };
        let cfg = ModelConfig {
            dim: pick(self.dim, base.map(|b| b.dim), "dim")?,
            layers: pick(self.layers, base.map(|b| b.layers), "layers")?,
            heads: pick(self.heads, base.map(|b| b.heads), "heads")?,
            ffn_dim: pick(self.ffn_dim, base.map(|b| b.ffn_dim), "ffn-dim")?,
            seq_len: pick(self.seq_len, base.map(|b| b.seq_len), "seq-len")?,
            out_dim: pick(self.out_dim, base.map(|b| b.out_dim), "out-dim")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// cpu, cuda, cuda:N or auto (cuda:0 when torch sees a GPU). One worker
    /// per GPU: each process takes its own cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// f32, bf16 or auto (f32 on CPU, bf16 on CUDA). For `serve`, the
    /// model's precision: bf16 on a CPU with AVX512-BF16 serves ~1.8× faster
    /// but batched outputs may differ from one-at-a-time ones.
    #[arg(long, default_value = "auto")]
    pub precision: Precision,
    /// Torch intra-op threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Nonces per forward pass (default: sized to the device).
    #[arg(long)]
    pub batch: Option<usize>,
    /// CPU: one batch stream split across torch's intra-op threads, instead
    /// of one single-threaded batch stream per core (the default).
    #[arg(long)]
    pub intra_op: bool,
}

impl DeviceArgs {
    pub fn resolve(&self) -> Result<ComputeDevice> {
        configure_threads(self.threads);
        ComputeDevice::resolve(self.device, self.precision)
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Seconds of sprint measurement.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Size of the dense square matmul baseline.
    #[arg(long, default_value_t = 2048)]
    pub matmul_n: i64,
    /// Also run the Python reference (scripts/sprint_reference.py) for the same seconds and print the ratio.
    #[arg(long)]
    pub compare_python: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// r_target in millionths for the shares/s figure (default: the preset's).
    #[arg(long)]
    pub r_target: Option<u64>,
    /// Use the unoptimised reference forward pass (A/B comparison).
    #[arg(long)]
    pub reference_forward: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The sprint seed (32 bytes hex).
    #[arg(long)]
    pub seed: String,
    /// The host address (kiln1… or 40 hex chars).
    #[arg(long)]
    pub address: String,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Stop after this many nonces (default: only the time limit).
    #[arg(long)]
    pub max_nonces: Option<u64>,
    #[arg(long, default_value_t = 0)]
    pub start_nonce: u64,
    /// r_target in millionths (default: the preset's).
    #[arg(long)]
    pub r_target: Option<u64>,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub dev: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct ProveArgs {
    /// Run file written by `sprint run`.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The epoch's beacon (or any 32-byte hex for offline use); the challenge is
    /// SHA256(beacon ‖ addr). Each sampled leaf is opened with its neighbour.
    #[arg(long)]
    pub challenge: String,
    /// sprint_samples: how many leaves to open (k = min(count, N)).
    #[arg(long, default_value_t = 200)]
    pub k: u32,
    /// Write the opening here (JSON) as well as printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Opening written by `sprint prove`.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// sprint_tolerance in millionths.
    #[arg(long, default_value_t = 2000)]
    pub tolerance_micro: u64,
    /// share_slack in millionths: how far above the share bound (where shares end) a recomputed f32 distance may lie.
    #[arg(long, default_value_t = kiln_sprint_protocol::verdict::SHARE_SLACK_MICRO_DEFAULT)]
    pub share_slack_micro: u64,
    /// Honest mismatch rate p0 (a/b or decimal).
    #[arg(long, default_value = "5/10000")]
    pub p0: String,
    /// Significance alpha (a/b or decimal).
    #[arg(long, default_value = "1/10000000")]
    pub alpha: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dev: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Target share rate (a/b or decimal), e.g. 1/16 or 0.001953125.
    #[arg(long)]
    pub share_rate: String,
    /// Nonces to measure.
    #[arg(long, default_value_t = 4000)]
    pub nonces: u64,
    /// Seed to measure with (default: a fixed calibration seed).
    #[arg(long)]
    pub seed: Option<String>,
    #[arg(long)]
    pub address: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub dev: DeviceArgs,
}

/// Parse `a/b` or a decimal into an exact ratio.
pub fn parse_ratio(s: &str) -> Result<Ratio> {
    if let Some((a, b)) = s.split_once('/') {
        let r = Ratio::new(a.trim().parse()?, b.trim().parse()?);
        if r.den == 0 {
            bail!("zero denominator in {s:?}");
        }
        return Ok(r);
    }
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 18 {
        bail!("too many decimals in {s:?}");
    }
    let den = 10u64.pow(frac.len() as u32);
    let num = int.parse::<u64>().unwrap_or(0) * den
        + if frac.is_empty() {
            0
        } else {
            frac.parse::<u64>()?
        };
    Ok(Ratio::new(num, den))
}

fn parse_seed(s: &str) -> Result<Hash32> {
    let v = hex::decode(s.trim()).context("--seed must be hex")?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("--seed must be 32 bytes (64 hex chars)"))
}

/// A fixed seed for benchmarks and calibration (the spec vectors' seed).
pub const BENCH_SEED: &str = "836c28835f9d66a15c9adc3ba6b889228990c556771f215d96f753ba2aa11ae5";
pub const BENCH_ADDR: &str = "00112233445566778899aabbccddeeff00112233";

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Run(a) => cmd_worker_run(a, cli.log_json),
        Cmd::Status(a) => cmd_status(a),
        Cmd::Doctor(a) => cmd_doctor(a),
        Cmd::Sprint(c) => match c {
            SprintCmd::Bench(a) => cmd_bench(a),
            SprintCmd::Run(a) => cmd_run(a),
            SprintCmd::Prove(a) => cmd_prove(a),
            SprintCmd::Verify(a) => cmd_verify(a),
            SprintCmd::Calibrate(a) => cmd_calibrate(a),
        },
        Cmd::Models(ModelsCmd::List(a)) => cmd_models_list(a),
        Cmd::Serve(a) => crate::serve::run_serve(a),
    }
}

/// `models list`: name, path, SHA-256 and size of every known model; a model
/// that is not installed is listed with the reason instead.
fn cmd_models_list(a: ModelsListArgs) -> Result<()> {
    use kiln_llm::registry::{bytes_identity, KNOWN_MODELS};
    if !a.json {
        println!("{:<14} {:<64} {:>11}  PATH", "NAME", "SHA256", "BYTES");
    }
    for model in KNOWN_MODELS {
        let found = model
            .locate()
            .map_err(anyhow::Error::from)
            .and_then(|path| {
                // Read once: hashed whole, then parsed for the tokenizer.
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let id = bytes_identity(&bytes);
                let gguf = kiln_llm::gguf::GgufFile::parse(bytes)?;
                let tokenizer = kiln_llm::tokenizer::tokenizer_sha256(&gguf)?;
                Ok((path, id, tokenizer))
            });
        match (found, a.json) {
            (Ok((path, id, tokenizer)), true) => println!(
                "{}",
                serde_json::json!({
                    "name": model.name, "path": path, "sha256": id.sha256, "size_bytes": id.size_bytes,
                    "tokenizer_sha256": tokenizer,
                })
            ),
            (Ok((path, id, tokenizer)), false) => println!(
                "{:<14} {:<64} {:>11}  {}\n{:<14} tokenizer {}",
                model.name,
                id.sha256,
                id.size_bytes,
                path.display(),
                "",
                tokenizer
            ),
            (Err(e), true) => println!(
                "{}",
                serde_json::json!({ "name": model.name, "error": format!("{e:#}") })
            ),
            (Err(e), false) => println!("{:<14} not installed: {e:#}", model.name),
        }
    }
    Ok(())
}

fn load_engine(
    seed: Hash32,
    addr: [u8; 20],
    cfg: ModelConfig,
    dev: &DeviceArgs,
) -> Result<SprintEngine> {
    load_engine_with(seed, addr, cfg, dev, false)
}

fn load_engine_with(
    seed: Hash32,
    addr: [u8; 20],
    cfg: ModelConfig,
    dev: &DeviceArgs,
    reference: bool,
) -> Result<SprintEngine> {
    let d = dev.resolve()?;
    let pb = ProgressBar::new_spinner();
    pb.set_message(format!(
        "generating {:.1}M weights and loading them onto {d}",
        cfg.param_count() as f64 / 1e6
    ));
    pb.enable_steady_tick(Duration::from_millis(120));
    let t0 = Instant::now();
    let threads = tch::get_num_threads().max(1) as usize;
    let mut e = SprintEngine::with_options(seed, addr, cfg, d, dev.batch, reference)?;
    if dev.intra_op {
        e.use_intra_op_threads(threads);
    }
    pb.finish_and_clear();
    tracing::info!(device = %d, batch = e.batch, secs = t0.elapsed().as_secs_f64(), "model loaded");
    Ok(e)
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    let cfg = a.model.config()?;
    let e = load_engine_with(
        parse_seed(BENCH_SEED)?,
        address::parse(BENCH_ADDR)?,
        cfg,
        &a.dev,
        a.reference_forward,
    )?;
    let r_target_opt = a.r_target.or(default_r_target(&cfg));
    let r_target = r_target_opt.unwrap_or(0);
    // Dense matmul measured right before and right after the sprint (same
    // process, same torch, same threads) and averaged, so a change in the
    // machine's load during the run affects both sides alike.
    let mm_secs = 2.0_f64.min(a.seconds / 2.0);
    let mm_before = dense_matmul_flops(&e.model.dev, a.matmul_n, mm_secs, e.workers());
    let s = sprint_throughput(&e, a.seconds, r_target, !a.json);
    let mm_after = dense_matmul_flops(&e.model.dev, a.matmul_n, mm_secs, e.workers());
    let mm = (mm_before + mm_after) / 2.0;
    let py = if a.compare_python {
        let args: Vec<String> = vec![
            "bench".into(),
            "--seconds".into(),
            format!("{}", a.seconds),
            "--dims".into(),
            format!(
                "{},{},{},{},{},{}",
                cfg.dim, cfg.layers, cfg.heads, cfg.ffn_dim, cfg.seq_len, cfg.out_dim
            ),
            "--threads".into(),
            "0".into(),
        ];
        Some(run_reference(&args)?)
    } else {
        None
    };
    let py_rate = py.as_ref().and_then(|v| v["nonces_per_s"].as_f64());
    let out = serde_json::json!({
        "device": e.model.dev.to_string(),
        "threads": tch::get_num_threads(),
        "workers": e.workers(),
        "batch": e.batch,
        "model": cfg,
        "nonces": s.nonces,
        "seconds": s.seconds,
        "nonces_per_s": s.nonces_per_s,
        "shares": s.shares,
        "shares_per_s": r_target_opt.map(|_| s.shares_per_s),
        "r_target_micro": r_target_opt,
        "flops_per_nonce": s.flops_per_nonce,
        "nominal_flops_per_nonce": nominal_flops_per_nonce(&cfg),
        "effective_flops": s.effective_flops,
        "dense_matmul_n": a.matmul_n,
        "dense_matmul_flops": mm,
        "dense_matmul_flops_before_after": [mm_before, mm_after],
        "load_average": std::fs::read_to_string("/proc/loadavg").ok().map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
        "sprint_over_matmul": s.effective_flops / mm,
        "python_nonces_per_s": py_rate,
        "rust_over_python": py_rate.map(|p| s.nonces_per_s / p),
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "device            {} ({} batch streams x {} torch threads), batch {}",
            e.model.dev,
            e.workers(),
            tch::get_num_threads(),
            e.batch
        );
        println!("model             {cfg:?}");
        println!(
            "nonces/s          {:.1}  ({} nonces in {:.2}s)",
            s.nonces_per_s, s.nonces, s.seconds
        );
        match r_target_opt {
            Some(r) => println!(
                "shares/s          {:.2}  (r_target {r} millionths)",
                s.shares_per_s
            ),
            None => {
                println!("shares/s          n/a (no r_target for custom dims; pass --r-target)")
            }
        }
        println!(
            "flops/nonce       {:.3e} (nominal unpruned {:.3e})",
            flops_per_nonce(&cfg),
            nominal_flops_per_nonce(&cfg)
        );
        println!("effective FLOP/s  {:.3e}", s.effective_flops);
        println!(
            "dense matmul      {:.3e} FLOP/s ({}x{} {})",
            mm, a.matmul_n, a.matmul_n, e.model.dev
        );
        println!("sprint / matmul   {:.3}", s.effective_flops / mm);
        if let Some(p) = py_rate {
            println!("python reference  {:.1} nonces/s", p);
            println!("rust / python     {:.2}", s.nonces_per_s / p);
        }
    }
    Ok(())
}

fn cmd_run(a: RunArgs) -> Result<()> {
    let cfg = a.model.config()?;
    let seed = parse_seed(&a.seed)?;
    let addr = address::parse(&a.address)?;
    let r_target = match a.r_target.or(default_r_target(&cfg)) {
        Some(r) => r,
        None => bail!("--r-target is required for custom dimensions"),
    };
    let e = load_engine(seed, addr, cfg, &a.dev)?;
    let pb = ProgressBar::new((a.seconds * 10.0) as u64);
    pb.set_style(
        ProgressStyle::with_template("{spinner} sprint [{bar:30}] {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(a.seconds);
    let max = a.max_nonces.unwrap_or(u64::MAX);
    // Shares are decided in f32 (sprint::shares): a bf16 sweep's
    // near-boundary nonces are recomputed by an f32 twin on the same device.
    let f32_twin = if e.model.dev.kind == tch::Kind::Float {
        None
    } else {
        let dev = ComputeDevice {
            kind: tch::Kind::Float,
            ..e.model.dev
        };
        Some(SprintEngine::new(seed, addr, cfg, dev, a.dev.batch)?)
    };
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut computed = 0u64;
    let mut rechecked = 0usize;
    let shares = std::cell::Cell::new(0u64);
    e.sweep(
        a.start_nonce,
        |done| {
            let el = t0.elapsed();
            pb.set_position((el.as_secs_f64() * 10.0) as u64);
            pb.set_message(format!("{done} nonces, {} shares", shares.get()));
            el < limit && done < max
        },
        |ns, ds| {
            let mut ds = ds.to_vec();
            if let Some(twin) = &f32_twin {
                rechecked +=
                    recheck_near_boundary(ns, &mut ds, r_target, |near| Ok(twin.distances(near)))
                        .unwrap_or(0);
            }
            for (&n, &d) in ns.iter().zip(&ds) {
                if computed >= max {
                    break;
                }
                computed += 1;
                let d_q = quantize_distance(d);
                if claims_share(d_q, r_target) {
                    leaves.push(Leaf { nonce: n, d_q });
                    shares.set(shares.get() + 1);
                }
            }
        },
    );
    if f32_twin.is_some() {
        tracing::info!(rechecked, "near-boundary nonces recomputed in f32");
    }
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let root = RunFile::root_of(&leaves)
        .map(hex::encode)
        .unwrap_or_default();
    let rf = RunFile {
        version: 1,
        seed: hex::encode(seed),
        address: address::encode(&addr),
        model: cfg,
        r_target_micro: r_target,
        start_nonce: a.start_nonce,
        nonces_computed: computed,
        seconds: secs,
        count: leaves.len() as u64,
        root: root.clone(),
        leaves,
    };
    std::fs::write(&a.out, serde_json::to_vec_pretty(&rf)?)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{} nonces in {:.2}s ({:.1}/s), {} shares, root {}, written to {}",
        computed,
        secs,
        computed as f64 / secs,
        rf.count,
        if root.is_empty() { "-" } else { &root },
        a.out.display()
    );
    Ok(())
}

fn cmd_prove(a: ProveArgs) -> Result<()> {
    let rf: RunFile = serde_json::from_slice(
        &std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?,
    )
    .context("not a sprint run file")?;
    let addr = address::parse(&rf.address)?;
    let block = hex::decode(a.challenge.trim()).context("--challenge must be hex")?;
    let p: ProofFile = prove(&rf, &addr, &block, a.k)?;
    let text = serde_json::to_string_pretty(&p)?;
    if let Some(out) = &a.out {
        std::fs::write(out, &text)?;
    }
    println!("{text}");
    Ok(())
}

fn cmd_verify(a: VerifyArgs) -> Result<()> {
    let p: ProofFile = serde_json::from_slice(
        &std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?,
    )
    .context("not a sprint opening (from `sprint prove`)")?;
    let addr = address::parse(&p.address)?;
    // Validation recomputes in f32 whatever the device computes sprints in:
    // shares are f32's (sprint::shares).
    let mut dev = a.dev.clone();
    dev.precision = Precision::F32;
    let e = load_engine(parse_seed(&p.seed)?, addr, p.model, &dev)?;
    let params = VerifyParams {
        tol_micro: a.tolerance_micro,
        share_slack_micro: a.share_slack_micro,
        p0: parse_ratio(&a.p0)?,
        alpha: parse_ratio(&a.alpha)?,
    };
    let r = verify(&p, &e, params)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{:>6} {:>12} {:>8} {:>10} {:>9} {:>6} {:>8}",
            "index", "nonce", "d_q", "recomputed", "diff", "proof", "leaf"
        );
        for l in &r.leaves {
            println!(
                "{:>6} {:>12} {:>8} {:>10.6} {:>+9.6} {:>6} {:>8}",
                l.index,
                l.nonce,
                l.claimed_d_q,
                l.recomputed_d,
                l.diff,
                if l.proof_ok { "ok" } else { "BAD" },
                if l.mismatch { "MISMATCH" } else { "agree" }
            );
        }
        if let Some(err) = &r.structural_error {
            println!("structure: {err}");
        }
        println!(
            "k {}  mismatches {}  p-value {:.3e}  critical count {}  verdict {}",
            r.k,
            r.mismatches,
            r.p_value,
            r.critical_count
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none".into()),
            if r.invalid { "INVALID" } else { "valid" }
        );
    }
    Ok(())
}

fn cmd_calibrate(a: CalibrateArgs) -> Result<()> {
    let cfg = a.model.config()?;
    let rate = parse_ratio(&a.share_rate)?;
    let rate = rate.num as f64 / rate.den as f64;
    if !(rate > 0.0 && rate < 1.0) {
        bail!("--share-rate must be in (0, 1)");
    }
    let seed = parse_seed(a.seed.as_deref().unwrap_or(BENCH_SEED))?;
    let addr = address::parse(a.address.as_deref().unwrap_or(BENCH_ADDR))?;
    let e = load_engine(seed, addr, cfg, &a.dev)?;
    let pb = ProgressBar::new(a.nonces);
    let mut ds = Vec::with_capacity(a.nonces as usize);
    let nonces: Vec<u64> = (0..a.nonces).collect();
    for chunk in nonces.chunks(e.batch) {
        ds.extend(e.distances(chunk));
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let r = calibrate(&ds, rate);
    let q = |p: f64| ds_sorted(&ds)[((p * ds.len() as f64) as usize).min(ds.len() - 1)];
    println!(
        "measured {} nonces on {}: min {:.6}  p1 {:.6}  median {:.6}  p99 {:.6}",
        ds.len(),
        e.model.dev,
        q(0.0),
        q(0.01),
        q(0.5),
        q(0.99)
    );
    println!(
        "share rate {rate} -> r_target {r} (millionths) = {:.6}",
        r as f64 / 1e6
    );
    let hits = ds.iter().filter(|&&d| d * 1e6 < r as f64).count();
    println!(
        "check: {hits}/{} = {:.5} of the measured nonces fall below it",
        ds.len(),
        hits as f64 / ds.len() as f64
    );
    Ok(())
}

fn ds_sorted(ds: &[f64]) -> Vec<f64> {
    let mut v = ds.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// r_target (millionths) such that a fraction `rate` of the measured distances
/// is below it: the midpoint between the order statistics around the quantile.
pub fn calibrate(ds: &[f64], rate: f64) -> u64 {
    let v = ds_sorted(ds);
    if v.is_empty() {
        return 0;
    }
    let m = ((rate * v.len() as f64).round() as usize).clamp(1, v.len() - 1);
    let r = (v[m - 1] + v[m]) / 2.0;
    (r * 1e6).round() as u64
}

fn cmd_doctor(a: DoctorArgs) -> Result<()> {
    let setup = crate::doctor::Setup {
        node: a.node,
        host: a.host,
        key: a.key,
        home: a.home.unwrap_or_else(kiln_client::keyring::default_home),
        keyring_backend: a.keyring_backend,
        device: a.device,
        serve_model: a.serve_model,
        http: a.http,
        ml_node: a.ml_node,
    };
    let checks = crate::doctor::examine(&setup);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks.iter().map(|c| c.json()).collect::<Vec<_>>())?
        );
    } else {
        print!("{}", crate::doctor::render(&checks));
    }
    if checks.iter().any(|c| !c.ok) {
        std::process::exit(1);
    }
    Ok(())
}

fn cmd_worker_run(a: WorkerRunArgs, log_json: bool) -> Result<()> {
    use crate::worker::{
        chain::RpcChain, http, journal::Journal, Misbehaviour, Pace, Tick, Worker, WorkerConfig,
    };
    let home = a
        .home
        .clone()
        .unwrap_or_else(kiln_client::keyring::default_home);
    kiln_client::keyring::parse_address(&a.host).with_context(|| format!("--host {}", a.host))?;
    let keyring = kiln_client::Keyring::open(&home, a.keyring_backend);
    let info = keyring.find(&a.key).with_context(|| {
        format!(
            "ML operational key {:?} in {}",
            a.key,
            keyring.dir().display()
        )
    })?;
    let passphrase = match a.keyring_backend {
        kiln_client::Backend::Test => None,
        kiln_client::Backend::File => Some(kiln_client::passphrase::read_passphrase(&info.name)?),
    };
    let key = keyring.signing_key(&info.name, passphrase.as_deref().map(|p| p.as_str()))?;
    if info.address == a.host {
        eprintln!("warning: --key is the host's account key itself; use a separate ML operational key with a grant (`kiln tx authz grant-ml-ops`)");
    }
    // The live line starts once the passphrase prompt (if any) is done.
    let draw_progress = match a.progress.as_str() {
        "always" => true,
        "never" => false,
        _ => std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    if draw_progress && !log_json {
        crate::progress::StatusLine::global().enable();
    }
    let threads = configure_threads(a.dev.threads);
    let device = a.dev.resolve()?;
    // One journal per ML key: several workers of one host (its ML nodes)
    // can share a home without sharing a journal.
    let journal_dir = a
        .journal
        .clone()
        .unwrap_or_else(|| home.join("worker").join(&a.host).join(&info.address));
    let journal = Journal::open(&journal_dir)?;
    let cfg = WorkerConfig {
        host: a.host.clone(),
        operator: info.address.clone(),
        device,
        threads,
        batch: a.dev.batch,
        pace: Pace::Continuous {
            slice_seconds: a.slice_seconds.clamp(0.05, 30.0),
        },
        commit_every_blocks: a.commit_every.max(1),
        misbehaviour: Misbehaviour::default(),
        ml_node: a.ml_node.clone(),
        drain: a.drain,
    };
    let executor = crate::executor::EngineExecutor::start(device, threads)?;
    let mut worker = Worker::with_executor(cfg, journal, executor.clone())?;
    if a.no_sprint {
        worker.remove_duty("sprint");
    }
    let mut chain = RpcChain::new(&a.node, key.clone());
    // The model loads beside the worker (its duties do not wait for it);
    // the API answers 503 until it is ready.
    // Paid inference: requests must be signed and are settled on chain; the
    // model's API opens only once the market is ready (never unpaid).
    let host_address = kiln_framework::Address::parse(&a.host)
        .map_err(|e| anyhow::anyhow!("--host {}: {e}", a.host))?;
    let market_cell: Arc<std::sync::OnceLock<Arc<crate::market::Market>>> = Default::default();
    let market_outbox = crate::market::MarketOutbox::default();
    // What the market queued and no block took before the worker stopped:
    // sent again (journal/market-pending.json).
    let market_pending = match &a.serve_model {
        Some(_) => {
            let pending = Arc::new(crate::pending::PendingMessages::open(
                journal_dir.join("market-pending.json"),
            )?);
            let left = pending.unconfirmed();
            if !left.is_empty() {
                tracing::info!(
                    messages = left.len(),
                    "sending again the inference messages no block took before the last stop"
                );
            }
            if let Ok(mut q) = market_outbox.lock() {
                q.extend(left);
            }
            worker.add_duty(Box::new(
                crate::market::InferenceDuty::new(market_outbox.clone())
                    .with_journal(pending.clone()),
            ));
            Some(pending)
        }
        None => None,
    };
    let model_load_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let model_load_started = std::time::Instant::now();
    let inference = match &a.serve_model {
        Some(model) => {
            let cell = crate::serve::http::LoadingApp::default();
            let market_for_loader = market_cell.clone();
            let validator_key = key.clone();
            let validator_status = worker.status();
            let seeds_path = journal_dir.join("validation-seeds.json");
            let metrics = std::sync::Arc::new(crate::serve::metrics::ServeMetrics::default());
            let (model, loaded, metrics_for_loader) =
                (model.clone(), cell.clone(), metrics.clone());
            let precision = a.inference_precision;
            let substitute_perturbation = a.test_substitute_perturbation;
            let load_failed = model_load_failed.clone();
            std::thread::Builder::new()
                .name("model-load".into())
                .spawn(move || {
                    match crate::serve::load_app(
                        &model,
                        executor,
                        crate::serve::ServeSettings {
                            precision,
                            substitute_perturbation,
                            ..Default::default()
                        },
                        metrics_for_loader,
                    ) {
                        Ok(app) => {
                            let market = loop {
                                if let Some(m) = market_for_loader.get() {
                                    break m.clone();
                                }
                                std::thread::sleep(Duration::from_millis(200));
                            };
                            let _ = app.market.set(market.clone());
                            let replayer = std::sync::Arc::new(crate::validator::Replayer::new(
                                market.clone(),
                                app.clone(),
                                validator_key,
                            ));
                            let _ = app.replayer.set(replayer.clone());
                            let is_node = market.is_ml_node().unwrap_or_else(|e| {
                                tracing::warn!(error = %format!("{e:#}"), "cannot tell whether this worker is an ML node; running the validation duty");
                                false
                            });
                            if is_node {
                                tracing::info!("this worker is one of the host's ML nodes: it executes the requests and validation replays the host's own worker routes to it; the host's own worker keeps its validation duty");
                            } else if let Err(e) = crate::validator::spawn(
                                replayer,
                                validator_status,
                                seeds_path,
                            ) {
                                tracing::error!(error = %format!("{e:#}"), "cannot start the validator duty");
                            }
                            let _ = loaded.set(app);
                            tracing::info!(%model, "selling inference: the OpenAI-compatible API takes signed requests");
                        }
                        Err(e) => {
                            load_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                            tracing::error!(error = %format!("{e:#}"), %model, "cannot serve the model; the /v1 routes answer 503")
                        }
                    }
                })?;
            Some((cell, metrics))
        }
        None => None,
    };
    let model_progress = inference.as_ref().map(|(cell, metrics)| {
        let (cell, metrics) = (cell.clone(), metrics.clone());
        crate::progress::ModelSource {
            started: model_load_started,
            failed: model_load_failed.clone(),
            ready: Arc::new(move || {
                cell.get()?;
                Some(metrics.queue_view(std::time::Instant::now()))
            }),
        }
    });
    let bound = http::serve_with_inference(&a.http, worker.status(), inference)?;
    crate::progress::spawn(crate::progress::Sources {
        status: worker.status(),
        model: model_progress,
    });
    crate::progress::eprint_line(&format!(
        "kiln-mlworker: host {} with ML key {} ({}) on {device}; node {}; journal {}; http://{bound}/status",
        a.host,
        info.name,
        info.address,
        a.node,
        journal_dir.display()
    ));
    // Wait for the node, then check the host is registered.
    let mut waited = 0;
    loop {
        match worker.preflight(&mut chain) {
            Ok(()) => break,
            Err(e) if e.downcast_ref::<crate::worker::PreflightError>().is_some() => return Err(e),
            Err(e) => {
                if waited % 10 == 0 {
                    crate::progress::eprint_line(&format!("waiting for the node: {e:#}"));
                }
                waited += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    if a.serve_model.is_some() {
        let market = crate::market::Market::new(
            crate::worker::chain::ChainClient::chain_id(&mut chain)?,
            host_address,
            &a.node,
            journal_dir.join("payloads"),
            a.payload_retention_hours.saturating_mul(3600),
            market_outbox.clone(),
            info.address.clone(),
            market_pending.clone(),
        )?;
        let _ = market_cell.set(market);
    }
    let status = worker.status();
    // Wake up as soon as the node announces a block; poll when it cannot.
    let new_blocks = crate::worker::follow::spawn(&a.node);
    let mut blocks_seen = new_blocks.blocks();
    loop {
        let result = worker.tick(&mut chain);
        if result.is_ok() {
            // Recovered: the status shows current problems only.
            if let Ok(mut s) = status.lock() {
                s.last_error = None;
            }
        }
        match result {
            Ok(Tick::Busy) => {}
            Ok(Tick::Idle) => {
                let poll = if new_blocks.connected() {
                    Duration::from_secs(2)
                } else {
                    Duration::from_millis(250)
                };
                blocks_seen = new_blocks.wait_after(blocks_seen, poll);
                if let Ok(mut s) = status.lock() {
                    s.websocket = new_blocks.connected();
                    s.new_block_events = blocks_seen;
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "tick failed; retrying");
                crate::progress::eprint_line(&format!("worker: {e:#}"));
                if let Ok(mut s) = status.lock() {
                    s.last_error = Some(format!("{e:#}"));
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }
        if a.drain {
            let drained = status.lock().map(|s| s.drained).unwrap_or(false);
            let unsent = market_outbox.lock().map(|q| q.len()).unwrap_or(0);
            if drained && unsent == 0 {
                crate::progress::eprint_line(
                    "drained: the host has weight 0 in force and no committee duty is left; safe to stop the node",
                );
                crate::progress::StatusLine::global().finish(&mut std::io::stderr());
                return Ok(());
            }
        }
        if let Some(until) = a.until_epoch {
            let done = status
                .lock()
                .map(|s| {
                    s.last_result
                        .as_ref()
                        .and_then(|r| r["epoch"].as_u64())
                        .is_some_and(|e| e >= until)
                })
                .unwrap_or(false);
            if done {
                crate::progress::eprint_line(&format!(
                    "epoch {until} settled; stopping (--until-epoch)"
                ));
                crate::progress::StatusLine::global().finish(&mut std::io::stderr());
                return Ok(());
            }
        }
    }
}

fn cmd_status(a: StatusArgs) -> Result<()> {
    let (code, body) = crate::worker::http::get(&a.http, "/status")?;
    if code != 200 {
        bail!(
            "the worker at {} answered HTTP {code}: {}",
            a.http,
            body.trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).context("the worker's /status is not JSON")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    println!(
        "host      {}  (ML key {})",
        v["host"].as_str().unwrap_or(""),
        v["operator"].as_str().unwrap_or("")
    );
    println!(
        "chain     {} at height {}, epoch {}, next block's stage: {}",
        v["chain_id"].as_str().unwrap_or(""),
        n("height"),
        n("epoch"),
        v["stage"].as_str().unwrap_or("")
    );
    println!(
        "sprint    {} nonces, {} shares ({} committed on chain), {:.1} nonces/s on {}",
        n("nonces_done"),
        n("shares"),
        n("committed_shares"),
        v["nonces_per_second"].as_f64().unwrap_or(0.0),
        v["device"].as_str().unwrap_or("")
    );
    println!(
        "duties    opened: {}, validating {} opening(s): {} vote(s) committed, {} revealed",
        if v["opened"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        },
        n("duties"),
        n("votes_committed"),
        n("votes_revealed")
    );
    if let Some(val) = v.get("inference_validation").filter(|x| !x.is_null()) {
        let m = |k: &str| val[k].as_u64().unwrap_or(0);
        println!(
            "validates {} finished inferences of its model seen, {} owed, {} validated ({} below the threshold), block {}",
            m("finished_seen"),
            m("duties"),
            m("validated"),
            m("flagged"),
            m("followed_height")
        );
    }
    println!(
        "follows   {}",
        if v["websocket"].as_bool() == Some(true) {
            format!(
                "new blocks over the websocket ({} seen)",
                n("new_block_events")
            )
        } else {
            "the node by polling (no websocket)".to_string()
        }
    );
    println!(
        "txs       {} accepted, {} refused by CheckTx, {} failed in their block",
        n("txs_accepted"),
        n("txs_refused"),
        n("txs_failed_in_block")
    );
    if let Some(t) = v["last_tx"].as_object() {
        println!(
            "last tx   {} at height {} code {} {}{}",
            t.get("kind").and_then(|x| x.as_str()).unwrap_or(""),
            t.get("height").and_then(|x| x.as_u64()).unwrap_or(0),
            t.get("code").and_then(|x| x.as_u64()).unwrap_or(0),
            t.get("hash").and_then(|x| x.as_str()).unwrap_or(""),
            t.get("log")
                .and_then(|x| x.as_str())
                .filter(|l| !l.is_empty())
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        );
    }
    if let Some(t) = v["last_failure"].as_object() {
        println!(
            "failure   {} in epoch {} code {}: {}",
            t.get("kind").and_then(|x| x.as_str()).unwrap_or(""),
            t.get("epoch").and_then(|x| x.as_u64()).unwrap_or(0),
            t.get("code").and_then(|x| x.as_u64()).unwrap_or(0),
            t.get("log").and_then(|x| x.as_str()).unwrap_or("")
        );
    }
    if !v["last_result"].is_null() {
        println!("settled   {}", v["last_result"]);
    }
    if let Some(st) = v["standing"].as_object() {
        let g = |k: &str| st.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        println!(
            "standing  weight {} ({}.{:02}% of total), consensus power {}, reputation {}/100 ({} good epochs)",
            g("weight"),
            g("share_bps") / 100,
            g("share_bps") % 100,
            g("consensus_power"),
            g("reputation"),
            g("good_epochs")
        );
    }
    if let Some(e) = v["last_error"].as_str() {
        println!("error     {e}");
    }
    Ok(())
}
