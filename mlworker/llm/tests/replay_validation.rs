//! Replay validation on the real SmolLM2 (SPEC §5, issue 11): executions by
//! the honest model replayed by the honest model score inside
//! `validation::THRESHOLD` every time; executions by a substitute (weights
//! perturbed by 1%, or requantized to Q4_0) replayed by the honest model are
//! flagged on ≥ 99%. Both distance distributions are printed.
//!
//! The executor is realistic: it samples (temperature 0.8, seeded), decodes
//! [`BATCH`] sequences per forward pass and records each position from the
//! decode logits; the validator replays each execution alone with one
//! prefill. So the honest distances carry the f32 noise of a different batch
//! composition and of prefill vs decode kernels, not a bit-identical rerun.
//! A bf16 executor's distances are measured and printed (not inside the
//! f32 threshold: see `bf16_precision_noise_is_measured`).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Instant: the test prints its own runtime.

mod common;

use std::time::Instant;

use kiln_llm::gguf::GgufFile;
use kiln_llm::model::{LlamaModel, LoadOptions};
use kiln_llm::validation::{self, substitute, ExecutorPosition, Verdict, THRESHOLD};
use kiln_llm::Llm;
use tch::{Kind, Tensor};

/// Honest sampled executions per prompt: 20 prompts × 10 = 200 replays.
const HONEST_SAMPLES: usize = 10;
/// Per substitute: 20 × 5 = 100 replays, 200 over the two substitutes.
const SUBSTITUTE_SAMPLES: usize = 5;
/// bf16 executor (measured, CPU bf16 is slow): 20 × 2 = 40 replays.
const BF16_SAMPLES: usize = 2;
/// Generated tokens per execution (fewer when EOS comes first).
const NEW_TOKENS: usize = 8;
/// Sequences decoded together by the executor.
const BATCH: usize = 25;
const TEMPERATURE: f64 = 0.8;

const PROMPTS: [&str; 20] = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "The three primary colors are",
    "Photosynthesis is the process by which",
    "In 1969, the first humans",
    "To make a cup of tea, first",
    "The quick brown fox",
    "Water boils at a temperature of",
    "My favourite book is",
    "The stock market fell today because",
    "SELECT name FROM users WHERE",
    "Dear Sir or Madam, I am writing to",
    "The mitochondria is the",
    "Le chat est sur la",
    "1, 2, 3, 5, 8, 13,",
    "The best way to learn a language is",
    "Breaking news: scientists have discovered",
    "import numpy as np\nx =",
    "The weather tomorrow will be",
];

struct Execution {
    prompt: usize,
    record: Vec<ExecutorPosition>,
}

fn prompts(llm: &Llm) -> Vec<Vec<u32>> {
    PROMPTS
        .iter()
        .map(|p| llm.tokenizer.encode(p, false).unwrap())
        .collect()
}

/// Every prompt × `samples` sampled executions on `model`, BATCH
/// sequences decoding together; sequences that emit a stop token leave.
fn execute(
    model: &LlamaModel,
    prompts: &[Vec<u32>],
    stop: &[u32],
    seed: i64,
    samples: usize,
) -> Vec<Execution> {
    let jobs: Vec<usize> = (0..prompts.len())
        .flat_map(|p| std::iter::repeat_n(p, samples))
        .collect();
    tch::manual_seed(seed);
    let mut done = Vec::with_capacity(jobs.len());
    for batch in jobs.chunks(BATCH) {
        let mut seqs: Vec<_> = batch.iter().map(|_| model.new_sequence()).collect();
        let mut logits: Vec<Tensor> = batch
            .iter()
            .zip(&mut seqs)
            .map(|(&p, seq)| model.prefill(seq, &prompts[p]).unwrap())
            .collect();
        let mut records: Vec<Vec<ExecutorPosition>> = vec![Vec::new(); batch.len()];
        let mut live: Vec<usize> = (0..batch.len()).collect();
        for step in 0..NEW_TOKENS {
            let mut next = Vec::with_capacity(live.len());
            for &i in &live {
                let probs = (&logits[i] / TEMPERATURE).softmax(-1, Kind::Float);
                let token = probs.multinomial(1, false).int64_value(&[0]) as u32;
                records[i].push(validation::record_position(&logits[i], token).unwrap());
                next.push(token);
            }
            let keep: Vec<bool> = next.iter().map(|t| !stop.contains(t)).collect();
            let (live_next, tokens): (Vec<usize>, Vec<u32>) = live
                .iter()
                .zip(&next)
                .zip(&keep)
                .filter(|(_, &k)| k)
                .map(|((&i, &t), _)| (i, t))
                .unzip();
            live = live_next;
            if live.is_empty() || step + 1 == NEW_TOKENS {
                break;
            }
            let mut refs: Vec<&mut _> = Vec::with_capacity(live.len());
            let mut rest: &mut [_] = &mut seqs;
            let mut offset = 0;
            for &i in &live {
                let (_, tail) = rest.split_at_mut(i - offset);
                let (one, tail) = tail.split_at_mut(1);
                refs.push(&mut one[0]);
                rest = tail;
                offset = i + 1;
            }
            let out = model.decode_step(&mut refs, &tokens).unwrap();
            for (row, &i) in live.iter().enumerate() {
                logits[i] = out.get(row as i64);
            }
        }
        done.extend(
            batch
                .iter()
                .zip(records)
                .map(|(&prompt, record)| Execution { prompt, record }),
        );
    }
    done
}

/// The validator: each execution replayed alone by `validator`.
fn distances(validator: &LlamaModel, prompts: &[Vec<u32>], executions: &[Execution]) -> Vec<f64> {
    executions
        .iter()
        .map(|e| {
            validation::validate(validator, &prompts[e.prompt], &e.record)
                .unwrap()
                .distance
        })
        .collect()
}

/// "min / median / p99 / max" of `values`.
fn summary(values: &[f64]) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "n {} min {:.3e} median {:.3e} p99 {:.3e} max {:.3e}",
        v.len(),
        v[0],
        at(0.5),
        at(0.99),
        v[v.len() - 1]
    )
}

fn load_honest() -> Llm {
    common::one_torch_thread();
    Llm::load("smollm2-135m", LoadOptions::cpu()).unwrap()
}

#[test]
fn honest_executions_score_inside_the_threshold_on_every_replay() {
    let started = Instant::now();
    let llm = load_honest();
    let prompts = prompts(&llm);
    let executions = execute(
        &llm.model,
        &prompts,
        llm.tokenizer.stop_ids(),
        11,
        HONEST_SAMPLES,
    );
    assert!(executions.len() >= 200);
    let positions: usize = executions.iter().map(|e| e.record.len()).sum();
    let honest = distances(&llm.model, &prompts, &executions);
    println!(
        "honest (f32 executor batched by {BATCH}, f32 replay by prefill; {positions} positions): {}",
        summary(&honest)
    );
    let flagged: Vec<f64> = honest.iter().copied().filter(|&d| d > THRESHOLD).collect();
    assert!(flagged.is_empty(), "honest executions flagged: {flagged:?}");
    // The distance sees any change at all: a record with one position's
    // alternatives shifted by 0.5 nats is far from 0.
    let mut forged = executions[0].record.clone();
    for alt in &mut forged[0].top {
        alt.logprob -= 0.5;
    }
    let forged_distance = validation::validate(&llm.model, &prompts[0], &forged)
        .unwrap()
        .distance;
    assert!(forged_distance > honest.iter().copied().fold(0.0, f64::max));
    println!("runtime {:.1} s", started.elapsed().as_secs_f64());
}

/// Precision noise, measured: an executor computing in bf16 (as on a GPU
/// host) replayed by a bf16 validator (different kernels and batch
/// composition, same precision) and by an f32 validator. Both distributions
/// are printed; they reach the 1%-perturbed substitute's range (see the
/// README), so [`THRESHOLD`] is calibrated for f32 executors and validators
/// only. Asserted: most bf16 replays in bf16 are bit-identical (median
/// distance 0) and an f32 replay of bf16 work is never closer than that.
#[test]
fn bf16_precision_noise_is_measured() {
    let started = Instant::now();
    let llm = load_honest();
    let file = GgufFile::open(common::model_path()).unwrap();
    let bf16 = LoadOptions {
        device: tch::Device::Cpu,
        kind: Kind::BFloat16,
    };
    let executor = LlamaModel::load(&file, bf16).unwrap();
    drop(file);
    let prompts = prompts(&llm);
    let executions = execute(
        &executor,
        &prompts,
        llm.tokenizer.stop_ids(),
        13,
        BF16_SAMPLES,
    );
    let same_precision = distances(&executor, &prompts, &executions);
    let cross_precision = distances(&llm.model, &prompts, &executions);
    let over = |d: &[f64]| d.iter().filter(|&&d| d > THRESHOLD).count();
    println!(
        "honest bf16 executor, bf16 replay: {}; over the threshold {}/{}",
        summary(&same_precision),
        over(&same_precision),
        same_precision.len()
    );
    println!(
        "honest bf16 executor, f32 replay: {}; over the threshold {}/{}; runtime {:.1} s",
        summary(&cross_precision),
        over(&cross_precision),
        cross_precision.len(),
        started.elapsed().as_secs_f64()
    );
    let median = |d: &[f64]| {
        let mut v = d.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    assert!(median(&same_precision) <= THRESHOLD);
    assert!(median(&cross_precision) >= median(&same_precision));
}

/// Executions by `substitute` replayed by the honest model: ≥ 99% flagged.
fn substitute_is_flagged(label: &str, transform: &dyn Fn(&str, Tensor) -> Tensor) {
    let started = Instant::now();
    let llm = load_honest();
    let file = GgufFile::open(common::model_path()).unwrap();
    let fake = LlamaModel::load_with(&file, LoadOptions::cpu(), transform).unwrap();
    drop(file);
    let prompts = prompts(&llm);
    let executions = execute(
        &fake,
        &prompts,
        llm.tokenizer.stop_ids(),
        12,
        SUBSTITUTE_SAMPLES,
    );
    let d = distances(&llm.model, &prompts, &executions);
    let flagged = d
        .iter()
        .filter(|&&d| validation::verdict(d) == Verdict::Flagged)
        .count();
    println!(
        "substitute {label}: {}; flagged {flagged}/{} at threshold {THRESHOLD}; runtime {:.1} s",
        summary(&d),
        d.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(d.len() >= 100);
    assert!(
        flagged * 100 >= d.len() * 99,
        "{label}: only {flagged} of {} flagged",
        d.len()
    );
}

#[test]
fn a_substitute_with_weights_perturbed_by_1_percent_is_flagged() {
    substitute_is_flagged("weights × (1 + 0.01·N(0,1))", &substitute::perturb(1, 0.01));
}

#[test]
fn a_substitute_requantized_to_q4_0_is_flagged() {
    substitute_is_flagged("requantized Q4_1 → Q4_0", &substitute::requantize(4));
}
