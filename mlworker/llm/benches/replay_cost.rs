//! Replay cost ÷ generation cost for the same tokens (issue 11's benchmark
//! row, target ≤ 0.1), on CPU f32:
//! `cargo bench -p kiln-llm --bench replay_cost -- [THREADS] [NEW_TOKENS]`.
//!
//! Generation is what a host does to serve a request: prefill the prompt,
//! then greedy decode steps keeping each position's top-5 logprobs (the
//! payload the worker keeps for validators). Replay is what a validator
//! does: [`LlamaModel::replay_logprobs`], one prefill over prompt + response
//! returning the top-5 at every response position. Two rows:
//! - one request alone (generation at batch 1, the host's worst case);
//! - 8 requests generated together as one batch (the serving case: the
//!   generation cost per request is the batch's time ÷ 8) against the 8
//!   replays run one after another.
//!
//! The prompts are `scripts/bench_inference.py`'s (~120 tokens) and every
//! response is exactly NEW_TOKENS long (no stop token).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall clock: the measured timings

use std::time::Instant;

use kiln_llm::model::{logprobs_of, LoadOptions, Sequence};
use kiln_llm::Llm;

const TOPICS: [&str; 8] = [
    "the ocean",
    "mountains",
    "a city at night",
    "an old library",
    "a desert journey",
    "a winter forest",
    "a space station",
    "a small bakery",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`: keep only the numbers.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let threads: i32 = args.first().map_or(Ok(2), |s| s.parse())?;
    let new_tokens: usize = args.get(1).map_or(Ok(128), |s| s.parse())?;
    tch::set_num_threads(threads);
    let llm = Llm::load("smollm2-135m", LoadOptions::cpu())?;
    let model = &llm.model;
    let prompts: Vec<Vec<u32>> = TOPICS
        .iter()
        .map(|t| {
            let text = format!(
                "Write a long, detailed story about {t}. {}",
                "Describe the place, the people, the sounds and the smells, and what happens over one whole day, from the first light of the morning to the last hour of the night. ".repeat(3)
            );
            llm.tokenizer.encode(text.trim(), false)
        })
        .collect::<Result<_, _>>()?;
    let _ = model.generate_greedy(&prompts[0][..16], 4, 5, &[])?; // warm up

    // One request alone.
    let started = Instant::now();
    let generated = model.generate_greedy(&prompts[0], new_tokens, 5, &[])?;
    let generate_s = started.elapsed().as_secs_f64();
    let response: Vec<u32> = generated.iter().map(|p| p.token).collect();
    let started = Instant::now();
    let replayed = model.replay_logprobs(&prompts[0], &response, 5)?;
    let replay_s = started.elapsed().as_secs_f64();
    let same_top1 = replayed
        .iter()
        .zip(&response)
        .filter(|(r, &t)| r.top[0].token == t)
        .count();
    println!(
        "RESULT replay_1 prompt_tokens={} response_tokens={} generate_s={generate_s:.2} replay_s={replay_s:.3} replay/generate={:.3} (target <= 0.1; replay top-1 = response at {same_top1}/{})",
        prompts[0].len(),
        response.len(),
        replay_s / generate_s,
        response.len()
    );

    // 8 requests as one batch: prefill each, then batched decode steps.
    let started = Instant::now();
    let mut seqs: Vec<Sequence> = prompts.iter().map(|_| model.new_sequence()).collect();
    let mut responses: Vec<Vec<u32>> = vec![Vec::with_capacity(new_tokens); prompts.len()];
    let mut next = Vec::with_capacity(prompts.len());
    for (seq, prompt) in seqs.iter_mut().zip(&prompts) {
        let logits = model.prefill(seq, prompt)?;
        next.push(logprobs_of(&logits, 5, None)?.remove(0).token);
    }
    for step in 0..new_tokens {
        for (r, &t) in responses.iter_mut().zip(&next) {
            r.push(t);
        }
        if step + 1 == new_tokens {
            break;
        }
        let mut refs: Vec<&mut Sequence> = seqs.iter_mut().collect();
        let logits = model.decode_step(&mut refs, &next)?;
        next = logprobs_of(&logits, 5, None)?
            .into_iter()
            .map(|p| p.token)
            .collect();
    }
    let generate8_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (prompt, response) in prompts.iter().zip(&responses) {
        let _ = model.replay_logprobs(prompt, response, 5)?;
    }
    let replay8_s = started.elapsed().as_secs_f64();
    println!(
        "RESULT replay_8 requests={} generate_batch_s={generate8_s:.2} replays_s={replay8_s:.2} replay/generate={:.3} (target <= 0.1; generation batched 8-way, the 8 replays one after another)",
        prompts.len(),
        replay8_s / generate8_s
    );
    Ok(())
}
