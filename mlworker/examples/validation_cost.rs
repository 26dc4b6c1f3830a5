//! Validation compute ÷ serving compute (issue 12's benchmark), measured on
//! the real model. `scripts/bench_inference.sh` runs it in `make bench`.
//!
//! For each prompt (the chat template applied), on one CPU thread in f32:
//! - **serving**: what the executor computes — prefill the prompt, then
//!   greedy decode `--new-tokens` tokens one step at a time, top-5 logprobs
//!   at each step (`LlamaModel::generate_greedy`);
//! - **validation**: what a validator computes — one prefill of prompt +
//!   response with teacher forcing, top-5 logprobs at every response
//!   position (`LlamaModel::replay_logprobs`).
//!
//! It prints the per-inference ratio, and the network-wide ratio
//! `m × ratio`, where `m` is SPEC §5's expected validations per inference:
//! `m = base + (1 − reputation/100)(1 − base)`, at full reputation `m =
//! base`: 100% at ≤ 100 inferences per epoch for the model (the devnet's
//! traffic), 5% at 5 000, 1% at ≥ 10 000.

// A benchmark, not consensus code: it reads the wall clock and prints rates.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use anyhow::{anyhow, Result};
use kiln_llm::{chat::ChatMessage, model::LoadOptions, Llm};
use std::time::{Duration, Instant};

const PROMPTS: &[&str] = &[
    "Name three colours of the rainbow.",
    "Write one sentence about the sea.",
    "What is two plus two? Explain briefly.",
    "Give me a short tip for learning a language.",
    "Describe a cat in a few words.",
    "Why is the sky blue?",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let new_tokens = arg("--new-tokens", 64);
    let rounds = arg("--rounds", 3);
    tch::set_num_threads(1);
    let llm = Llm::load("smollm2-135m", LoadOptions::cpu())?;
    let stop: Vec<u32> = llm.tokenizer.stop_ids().to_vec();
    let (mut serve, mut validate) = (Duration::ZERO, Duration::ZERO);
    let (mut served_tokens, mut prompts_tokens) = (0usize, 0usize);
    // One warm-up pass, then `rounds` timed passes over the prompts.
    for round in 0..=rounds {
        for text in PROMPTS {
            let prompt = llm.chat_prompt(&[ChatMessage::new("user", *text)])?;
            let t = Instant::now();
            let record = llm.model.generate_greedy(&prompt, new_tokens, 5, &stop)?;
            let s = t.elapsed();
            let response: Vec<u32> = record.iter().map(|p| p.token).collect();
            let t = Instant::now();
            let replay = llm.model.replay_logprobs(&prompt, &response, 5)?;
            let v = t.elapsed();
            let distance = kiln_llm::validation::replay_distance(&record, &replay)
                .map_err(|e| anyhow!("replay of {text:?}: {e}"))?;
            if distance > kiln_llm::validation::THRESHOLD {
                return Err(anyhow!("an honest replay was flagged ({distance})"));
            }
            if round > 0 {
                serve += s;
                validate += v;
                served_tokens += response.len();
                prompts_tokens += prompt.len();
            }
        }
    }
    let n = rounds * PROMPTS.len();
    let ratio = validate.as_secs_f64() / serve.as_secs_f64();
    println!("kiln validation-cost benchmark: SmolLM2-135M, CPU f32, 1 thread, {n} inferences ({} prompt + {} generated tokens on average)",
        prompts_tokens / n.max(1), served_tokens / n.max(1));
    println!(
        "  serving (prefill + greedy decode, top-5 logprobs): {:.1} ms per inference",
        serve.as_secs_f64() * 1e3 / n as f64
    );
    println!(
        "  validation (one teacher-forced prefill of prompt + response, top-5): {:.1} ms per inference",
        validate.as_secs_f64() * 1e3 / n as f64
    );
    println!("  one validation ÷ one serving: {ratio:.3}");
    for (traffic, base) in [
        ("<= 100 (devnet)", 1.0),
        ("5 000", 0.05),
        (">= 10 000", 0.01),
    ] {
        println!(
            "  at full reputation, {traffic} inferences/epoch: m = {base} -> validation ÷ serving = {:.4}",
            base * ratio
        );
    }
    println!(
        "RESULT validation cost: {:.1}% of serving compute at full reputation and devnet traffic (m = 1; target <= 3%); {:.2}% at >= 10 000 inferences/epoch (m = 0.01)",
        ratio * 100.0,
        ratio
    );
    Ok(())
}
