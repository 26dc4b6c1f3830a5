//! Greedy chat completion with timings, then the same decode for BATCH
//! sequences in one batch (aggregate tokens/s):
//! `cargo run --release -p kiln-llm --example greedy -- [MODEL] [PROMPT] [TOKENS] [THREADS] [BATCH]`.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall clock: printed timings

use std::time::Instant;

use kiln_llm::chat::ChatMessage;
use kiln_llm::model::LoadOptions;
use kiln_llm::Llm;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map_or("smollm2-135m", String::as_str);
    let prompt = args
        .get(1)
        .map_or("Write a short poem about kilns.", String::as_str);
    let tokens: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    if let Some(threads) = args.get(3) {
        tch::set_num_threads(threads.parse()?);
    }
    let started = Instant::now();
    let llm = Llm::load(model, LoadOptions::auto())?;
    println!(
        "load: {:.2} s ({:?})",
        started.elapsed().as_secs_f64(),
        llm.model.options()
    );
    println!(
        "identity: sha256 {} ({} bytes)",
        llm.identity.sha256, llm.identity.size_bytes
    );
    let ids = llm.chat_prompt(&[ChatMessage::new("user", prompt)])?;
    let m = &llm.model;
    let mut seq = m.new_sequence();
    let started = Instant::now();
    let mut logits = m.prefill(&mut seq, &ids)?;
    let prefill = started.elapsed().as_secs_f64();
    let mut out = Vec::new();
    let mut decoder = llm.tokenizer.stream_decoder(true);
    let mut text = String::new();
    let started = Instant::now();
    for _ in 0..tokens {
        let next = logits.argmax(-1, false).int64_value(&[]) as u32;
        out.push(next);
        text.push_str(&decoder.push(next));
        logits = m.decode_step(&mut [&mut seq], &[next])?.squeeze_dim(0);
    }
    let decode = started.elapsed().as_secs_f64();
    text.push_str(&decoder.finish());
    println!("{text}");
    println!(
        "prefill: {} tokens in {prefill:.3} s ({:.0} tokens/s); decode: {tokens} tokens in {decode:.2} s = {:.1} tokens/s (torch threads {})",
        ids.len(),
        ids.len() as f64 / prefill,
        tokens as f64 / decode,
        tch::get_num_threads()
    );
    let batch: usize = args.get(4).map_or(Ok(8), |s| s.parse())?;
    if batch > 1 {
        let mut seqs: Vec<_> = (0..batch).map(|_| m.new_sequence()).collect();
        let mut next = Vec::new();
        for seq in &mut seqs {
            let logits = m.prefill(seq, &ids)?;
            next.push(logits.argmax(-1, false).int64_value(&[]) as u32);
        }
        let started = Instant::now();
        for _ in 0..tokens {
            let mut refs: Vec<_> = seqs.iter_mut().collect();
            let logits = m.decode_step(&mut refs, &next)?;
            next = Vec::<i64>::try_from(logits.argmax(-1, false))?
                .into_iter()
                .map(|t| t as u32)
                .collect();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "batched decode: {batch} sequences × {tokens} tokens in {secs:.2} s = {:.1} tokens/s aggregate",
            (batch * tokens) as f64 / secs
        );
    }
    Ok(())
}
