//! Inference serving: the OpenAI-compatible API `kiln-mlworker serve`
//! answers. [`openai`] owns the wire format (request parsing and checking,
//! errors in OpenAI's shape), [`responses`] the response bodies and SSE,
//! [`sampling`] token choice, logprobs and stop strings, [`engine`] the
//! continuous-batching scheduler over the model on the engine executor,
//! [`metrics`] `/metrics`, and [`http`] the routes.

pub mod engine;
pub mod http;
pub mod metrics;
pub mod openai;
pub mod responses;
pub mod sampling;

use std::sync::Arc;

use anyhow::{Context, Result};
use kiln_llm::model::LoadOptions;
use kiln_llm::Llm;

use crate::cli::ServeArgs;
use crate::executor::EngineExecutor;

/// Engine and API settings (`serve`'s flags; `run --serve-model` uses the
/// defaults and its `--inference-precision`).
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub max_batch: usize,
    pub max_queue: usize,
    pub prefill_chunk: usize,
    pub limits: http::ApiLimits,
    /// The model's dtype (see [`crate::device::inference_kind`]).
    pub precision: crate::device::Precision,
    /// Tests of validation only: serve the model with every weight ×
    /// (1 + this · N(0, 1)) — a cheaper substitute claiming the file's hash.
    pub substitute_perturbation: Option<f64>,
}

impl Default for ServeSettings {
    fn default() -> Self {
        let engine = engine::EngineConfig::default();
        ServeSettings {
            max_batch: engine.max_batch,
            max_queue: engine.max_queue,
            prefill_chunk: engine.prefill_chunk,
            limits: http::ApiLimits::default(),
            precision: crate::device::Precision::Auto,
            substitute_perturbation: None,
        }
    }
}

/// Loads `model` (a known name or a GGUF path) and starts its engine on
/// `executor` — the worker's own executor under `run`, so inference and the
/// sprint share the device by priority.
pub fn load_app(
    model: &str,
    executor: EngineExecutor,
    settings: ServeSettings,
    metrics: Arc<metrics::ServeMetrics>,
) -> Result<Arc<http::ServeApp>> {
    let device = executor.device().device;
    let options = LoadOptions {
        device,
        kind: crate::device::inference_kind(device, settings.precision),
    };
    if options.kind == tch::Kind::BFloat16
        && device == tch::Device::Cpu
        && !crate::device::cpu_has_native_bf16()
    {
        // Measured on such a CPU: 8 concurrent requests at 29 tokens/s in
        // bf16 against 90 in f32.
        tracing::warn!(
            "this CPU has no native bf16 (AVX512-BF16): torch emulates it and serving in bf16 is ~3x slower than in f32 (the CPU default)"
        );
    }
    let started = std::time::Instant::now();
    let llm = match settings.substitute_perturbation {
        None => Llm::load(model, options),
        Some(relative) => {
            tracing::warn!(
                relative,
                "serving a PERTURBED substitute of the model (validation tests only)"
            );
            Llm::load_with(
                model,
                options,
                &kiln_llm::validation::substitute::perturb(7, relative),
            )
        }
    }
    .with_context(|| format!("loading model {model}"))?;
    let Llm {
        name,
        path,
        identity,
        tokenizer,
        chat,
        model,
    } = llm;
    let context_length = model.config().context_length;
    tracing::info!(model = %name, sha256 = %identity.sha256, device = %executor.device(), seconds = started.elapsed().as_secs_f64(), "model loaded");
    let tokenizer = Arc::new(tokenizer);
    let engine = engine::InferenceEngine::start(
        executor,
        model,
        (path, options),
        tokenizer.clone(),
        engine::EngineConfig {
            max_batch: settings.max_batch.max(1),
            max_queue: settings.max_queue,
            prefill_chunk: settings.prefill_chunk.max(1),
            context_length,
        },
        metrics.clone(),
    )?;
    Ok(Arc::new(http::ServeApp {
        model_name: name,
        model_sha256: identity.sha256,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        tokenizer,
        chat,
        engine,
        metrics,
        limits: settings.limits,
        market: Default::default(),
        replayer: Default::default(),
    }))
}

/// `kiln-mlworker serve`: loads the model, starts the engine on its own
/// executor and serves the API until killed.
pub fn run_serve(args: ServeArgs) -> Result<()> {
    let threads = crate::device::configure_threads(args.dev.threads);
    let device = crate::device::ComputeDevice::resolve(args.dev.device, args.dev.precision)?;
    let executor = EngineExecutor::start(device, threads)?;
    let app = load_app(
        &args.model,
        executor,
        ServeSettings {
            max_batch: args.max_batch,
            max_queue: args.max_queue,
            prefill_chunk: args.prefill_chunk,
            limits: http::ApiLimits {
                max_body_bytes: args.max_body_bytes,
                max_tokens: args.max_tokens.max(1),
            },
            precision: args.dev.precision,
            substitute_perturbation: None,
        },
        Arc::new(metrics::ServeMetrics::default()),
    )?;
    let listener = std::net::TcpListener::bind(&args.http).with_context(|| {
        format!(
            "cannot listen on {} (choose another address with --http)",
            args.http
        )
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("api")
        .build()?;
    let kind = crate::device::inference_kind(device.device, args.dev.precision);
    if kind == tch::Kind::Float && !device.is_cuda() && crate::device::cpu_has_native_bf16() {
        println!("this CPU has native bf16 (AVX512-BF16): --precision bf16 serves faster (README, \"Serving inference\")");
    }
    println!(
        "serving {} (sha256 {}) on {} in {} on http://{local}/v1 — try: curl http://{local}/v1/models",
        app.model_name,
        app.model_sha256,
        if device.is_cuda() { "cuda" } else { "cpu" },
        if kind == tch::Kind::BFloat16 { "bf16" } else { "f32" },
    );
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, http::router(app)).await?;
        Ok(())
    })
}
