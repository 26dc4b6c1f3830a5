//! Times one decode step at several batch sizes (each sequence prefilled
//! with PROMPT_LEN tokens first): median of STEPS steps.
//! `decode_profile [THREADS] [PROMPT_LEN] [STEPS] [BATCHES...]`; with
//! `KILN_F32_PRODUCTS=1` every product uses the f32 weights.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall clock: printed timings

use std::time::Instant;

use kiln_llm::model::LoadOptions;
use kiln_llm::Llm;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: i32 = args.first().map_or(Ok(2), |s| s.parse())?;
    let prompt_len: usize = args.get(1).map_or(Ok(128), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(16), |s| s.parse())?;
    let batches: Vec<usize> = if args.len() > 3 {
        args[3..]
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![1, 8]
    };
    tch::set_num_threads(threads);
    let llm = Llm::load("smollm2-135m", LoadOptions::cpu())?;
    // KILN_F32_PRODUCTS=1: every product on the f32 weights (the reference).
    let m = if std::env::var("KILN_F32_PRODUCTS").is_ok_and(|v| v == "1") {
        llm.model.without_block_products()
    } else {
        llm.model
    };
    println!("block products: {}", m.uses_block_products());
    let m = &m;
    let prompt: Vec<u32> = (0..prompt_len as u32)
        .map(|i| 100 + (i * 37) % 5000)
        .collect();
    for &b in &batches {
        let mut seqs: Vec<_> = (0..b).map(|_| m.new_sequence()).collect();
        let t = Instant::now();
        for s in &mut seqs {
            let _ = m.prefill(s, &prompt)?;
        }
        let prefill = t.elapsed().as_secs_f64();
        let mut times = Vec::new();
        let mut next = vec![42u32; b];
        for _ in 0..steps {
            let mut refs: Vec<_> = seqs.iter_mut().collect();
            let t = Instant::now();
            let logits = m.decode_step(&mut refs, &next)?;
            next = Vec::<i64>::try_from(logits.argmax(-1, false))?
                .into_iter()
                .map(|t| t as u32)
                .collect();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "threads {threads} batch {b}: prefill {prefill:.2}s ({:.0} tok/s); decode step median {:.1} ms min {:.1} ms = {:.1} tok/s aggregate",
            (b * prompt_len) as f64 / prefill,
            med * 1e3,
            times[0] * 1e3,
            b as f64 / med
        );
    }
    Ok(())
}
