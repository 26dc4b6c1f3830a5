//! Times the model's weight products alone for a few rows: every matrix of
//! SmolLM2-135M once (a decode step's products), with the file's blocks
//! (`kiln_llm::quant`) and with torch on the f32 weights.
//! `block_products [THREADS] [ROWS...]`; each figure is the best of
//! `KILN_BENCH_REPS` passes (default 5; more on a noisy machine).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall clock: printed timings

use std::time::Instant;

use kiln_llm::gguf::GgufFile;
use kiln_llm::quant::QuantMatrix;
use tch::Tensor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = args.first().map_or(Ok(2), |s| s.parse())?;
    let rows: Vec<usize> = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![1, 8]
    };
    let reps: usize = std::env::var("KILN_BENCH_REPS").map_or(Ok(5), |s| s.parse())?;
    tch::set_num_threads(threads as i32);
    let path = kiln_llm::registry::resolve_model("smollm2-135m")?;
    let file = GgufFile::open(&path)?;
    let mut mats = Vec::new();
    for info in &file.tensors {
        let shape = info.shape();
        if shape.len() != 2 {
            continue;
        }
        let (r, c) = (shape[0] as usize, shape[1] as usize);
        if let Some(q) = QuantMatrix::new(info.ggml_type, r, c, file.tensor_bytes(info)?) {
            let (_, values) = file.dequantize(&info.name)?;
            mats.push((q, Tensor::from_slice(&values).reshape([r as i64, c as i64])));
        }
    }
    println!(
        "{} matrices, {:.0} MB of blocks",
        mats.len(),
        mats.iter().map(|m| m.0.bytes()).sum::<usize>() as f64 / 1e6
    );
    for &n in &rows {
        let mut best_q = f64::MAX;
        let mut best_t = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            for (q, _) in &mats {
                let x = vec![0.5f32; n * q.cols()];
                std::hint::black_box(q.matmul(&x, n, threads));
            }
            best_q = best_q.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for (q, w) in &mats {
                let x = Tensor::ones(
                    [n as i64, q.cols() as i64],
                    (tch::Kind::Float, tch::Device::Cpu),
                );
                let x = if n == 1 { Tensor::cat(&[&x, &x], 0) } else { x };
                let _ = std::hint::black_box(w.mm(&x.tr()));
            }
            best_t = best_t.min(t.elapsed().as_secs_f64());
        }
        println!(
            "rows {n}: blocks {:.1} ms, torch f32 {:.1} ms",
            best_q * 1e3,
            best_t * 1e3
        );
    }
    Ok(())
}
