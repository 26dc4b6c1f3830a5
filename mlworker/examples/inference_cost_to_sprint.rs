//! What serving inference costs the sprint, measured (issue 11: "document the
//! policy and what it costs the sprint"). `scripts/bench_inference.sh` runs
//! it in `make bench`.
//!
//! One engine executor on the CPU (f32), as under `kiln-mlworker run
//! --serve-model`: the sprint submits one round of nonce batches per work item
//! at `Priority::Sprint` (what the worker's sprint slice does), the inference
//! engine submits its steps at `Priority::Inference`. Five phases of
//! `--seconds` each (default 15):
//! 1. sprint alone (nonces/s);
//! 2. inference alone, one request at a time back to back (tokens/s);
//! 3. both, inference back to back (the worst case for the sprint);
//! 4. inference alone, one request every `--interval` seconds (default 4);
//! 5. both, paced.
//!
//! It prints each phase and the ratios: the sprint's throughput kept under
//! each load, and what the sprint costs inference (request latency).

// A benchmark, not consensus code: it reads the wall clock and prints rates.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use anyhow::{anyhow, Result};
use kiln_llm::{chat::ChatMessage, model::LoadOptions, Llm};
use kiln_mlworker::device::{configure_threads, ComputeDevice};
use kiln_mlworker::executor::{EngineExecutor, Priority};
use kiln_mlworker::serve::engine::{EngineConfig, Event, InferenceEngine, JobSpec};
use kiln_mlworker::serve::metrics::ServeMetrics;
use kiln_mlworker::serve::openai::SamplingParams;
use kiln_mlworker::sprint::engine::SprintEngine;
use kiln_sprint_protocol::model::ModelConfig;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NEW_TOKENS: usize = 32;

/// The sprint engine on the executor, built on first use.
#[derive(Default)]
struct SprintSide {
    engine: Option<SprintEngine>,
}

fn sprint_round(executor: &EngineExecutor, threads: usize, next: u64) -> Result<u64> {
    executor.run(Priority::Sprint, move |ctx| {
        let side = ctx.state::<SprintSide>();
        if side.engine.is_none() {
            tch::set_num_threads(threads as i32);
            side.engine = Some(SprintEngine::new(
                [7; 32],
                [9; 20],
                ModelConfig::DEVNET,
                ComputeDevice::cpu_f32(),
                None,
            )?);
        }
        let engine = side.engine.as_ref().ok_or_else(|| anyhow!("no engine"))?;
        let round = (engine.batch * engine.workers()) as u64;
        let nonces: Vec<u64> = (next..next + round).collect();
        let d = engine.distances(&nonces);
        // The inference engine runs torch on the pool this thread shares.
        tch::set_num_threads(threads as i32);
        Ok(d.len() as u64)
    })
}

/// Generates one request to the end; returns (tokens, latency).
fn one_request(engine: &InferenceEngine, prompt: &[u32]) -> Result<(usize, Duration)> {
    let t0 = Instant::now();
    let mut rx = engine
        .submit(JobSpec {
            prompt: prompt.to_vec(),
            sampling: SamplingParams {
                temperature: 0.0,
                max_tokens: Some(NEW_TOKENS as u32),
                ..SamplingParams::default()
            },
            max_new_tokens: NEW_TOKENS,
            logprobs: false,
            top_logprobs: 0,
        })
        .map_err(|e| anyhow!("{}", e.message))?;
    let mut tokens = 0;
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token { .. } => {}
            Event::Done { usage, .. } => {
                tokens = usage.completion_tokens;
                break;
            }
            Event::Failed(e) => return Err(anyhow!("{}", e.message)),
        }
    }
    Ok((tokens, t0.elapsed()))
}

#[derive(Default, Debug, Clone, Copy)]
struct Phase {
    nonces_per_s: f64,
    tokens_per_s: f64,
    mean_latency_s: f64,
    requests: usize,
}

fn phase(
    executor: &EngineExecutor,
    threads: usize,
    inference: Option<(&InferenceEngine, Option<Duration>)>,
    sprint: bool,
    prompt: &[u32],
    seconds: f64,
) -> Result<Phase> {
    let stop = AtomicBool::new(false);
    let nonces = AtomicU64::new(0);
    let latencies = Mutex::new(Vec::<Duration>::new());
    let tokens = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let sprinter = sprint.then(|| {
            s.spawn(|| -> Result<()> {
                let mut next = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = sprint_round(executor, threads, next)?;
                    next += n;
                    nonces.fetch_add(n, Ordering::Relaxed);
                }
                Ok(())
            })
        });
        let (stop, tokens, latencies) = (&stop, &tokens, &latencies);
        let client = inference.map(|(engine, interval)| {
            s.spawn(move || -> Result<()> {
                let mut due = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(i) = interval {
                        let now = Instant::now();
                        if now < due {
                            std::thread::sleep((due - now).min(Duration::from_millis(50)));
                            continue;
                        }
                        due += i;
                    }
                    let (n, latency) = one_request(engine, prompt)?;
                    tokens.fetch_add(n as u64, Ordering::Relaxed);
                    latencies
                        .lock()
                        .map_err(|_| anyhow!("poisoned"))?
                        .push(latency);
                }
                Ok(())
            })
        });
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        for h in sprinter.into_iter().chain(client) {
            h.join().map_err(|_| anyhow!("a load thread panicked"))??;
        }
        Ok(())
    })?;
    // Rates over the whole phase, including the round or request in flight
    // when it ended (both sides are counted the same way).
    let elapsed = t0.elapsed().as_secs_f64();
    let lat = latencies.into_inner().map_err(|_| anyhow!("poisoned"))?;
    Ok(Phase {
        nonces_per_s: nonces.load(Ordering::Relaxed) as f64 / elapsed,
        tokens_per_s: tokens.load(Ordering::Relaxed) as f64 / elapsed,
        mean_latency_s: if lat.is_empty() {
            0.0
        } else {
            lat.iter().map(|d| d.as_secs_f64()).sum::<f64>() / lat.len() as f64
        },
        requests: lat.len(),
    })
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let seconds = arg("--seconds", 15.0);
    let interval = Duration::from_secs_f64(arg("--interval", 4.0));
    let threads = configure_threads(None);
    let executor = EngineExecutor::start(ComputeDevice::cpu_f32(), threads)?;
    let llm = Llm::load("smollm2-135m", LoadOptions::cpu())?;
    let chat = llm
        .chat
        .as_ref()
        .ok_or_else(|| anyhow!("the model has no chat template"))?;
    let text = chat.render(
        &[ChatMessage {
            role: "user".into(),
            content: "Explain in a few sentences why the sky is blue, and what the sunset has to do with it.".into(),
        }],
        true,
    )?;
    // The rendered template carries its own special tokens.
    let prompt = llm.tokenizer.encode(&text, false)?;
    let engine = InferenceEngine::start(
        executor.clone(),
        llm.model,
        (llm.path.clone(), LoadOptions::cpu()),
        Arc::new(llm.tokenizer),
        EngineConfig {
            max_batch: 8,
            max_queue: 64,
            prefill_chunk: 256,
            context_length: 8192,
        },
        Arc::new(ServeMetrics::default()),
    )?;
    // Warm both sides up (engine build, first allocations).
    sprint_round(&executor, threads, 0)?;
    one_request(&engine, &prompt)?;

    println!(
        "cpu f32, {threads} threads, {seconds} s per phase; requests: {} prompt tokens, {NEW_TOKENS} new, greedy",
        prompt.len()
    );
    let every = format!("inference every {:.0} s", interval.as_secs_f64());
    // (name, inference load: None = none, Some(None) = back to back, Some(Some(i)) = paced; sprint?)
    let plan: [(String, Option<Option<Duration>>, bool); 5] = [
        ("sprint alone".into(), None, true),
        ("inference back to back, alone".into(), Some(None), false),
        ("inference back to back + sprint".into(), Some(None), true),
        (format!("{every}, alone"), Some(Some(interval)), false),
        (format!("{every} + sprint"), Some(Some(interval)), true),
    ];
    let mut results = Vec::with_capacity(plan.len());
    for (name, load, sprint) in plan {
        let p = phase(
            &executor,
            threads,
            load.map(|pace| (&engine, pace)),
            sprint,
            &prompt,
            seconds,
        )?;
        println!(
            "{name:<44} sprint {:>8.1} nonces/s | inference {:>5.1} tok/s, {:>3} requests, mean latency {:.2} s",
            p.nonces_per_s, p.tokens_per_s, p.requests, p.mean_latency_s
        );
        results.push(p);
    }
    let [sprint_alone, busy_alone, busy_both, paced_alone, paced_both] = results[..] else {
        return Err(anyhow!("a phase is missing"));
    };
    let kept = |p: &Phase| p.nonces_per_s / sprint_alone.nonces_per_s.max(1e-9);
    println!(
        "RESULT sprint_kept_under_back_to_back_inference={:.3} (inference kept {:.2} of its alone rate)",
        kept(&busy_both),
        busy_both.tokens_per_s / busy_alone.tokens_per_s.max(1e-9)
    );
    println!(
        "RESULT sprint_kept_under_paced_inference={:.3} (request latency {:.2} s with the sprint vs {:.2} s alone)",
        kept(&paced_both),
        paced_both.mean_latency_s,
        paced_alone.mean_latency_s
    );
    Ok(())
}
