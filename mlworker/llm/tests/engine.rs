//! The KV-cache API on the real model (no Python): batched decode of
//! sequences of different lengths that join and leave equals each sequence
//! run alone; chunked prefill equals one prefill; the replay's logprobs
//! equal the ones seen while generating; CPU runs are bit-for-bit
//! repeatable; bad inputs are errors.

mod common;

use kiln_llm::model::{logprobs_of, LlamaModel, LoadOptions, ModelError, Sequence, PREFILL_CHUNK};
use kiln_llm::Llm;
use tch::Tensor;

/// Logits from one batch composition and from another agree to this (f32
/// matmuls with a different row count take different blocking paths).
const LOGIT_TOLERANCE: f64 = 1e-3;

fn load() -> Llm {
    common::one_torch_thread();
    Llm::load("smollm2-135m", LoadOptions::cpu()).unwrap()
}

fn prompts(llm: &Llm) -> Vec<Vec<u32>> {
    common::conversations()
        .iter()
        .take(4)
        .map(|c| llm.chat_prompt(c).unwrap())
        .collect()
}

fn argmax(logits: &Tensor) -> u32 {
    logits.argmax(-1, false).int64_value(&[]) as u32
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Greedy alone: the logits of prefill and of each of `steps` decodes.
fn alone(model: &LlamaModel, prompt: &[u32], steps: usize) -> Vec<Tensor> {
    let mut seq = model.new_sequence();
    let mut logits = vec![model.prefill(&mut seq, prompt).unwrap()];
    for _ in 0..steps {
        let next = argmax(logits.last().unwrap());
        logits.push(
            model
                .decode_step(&mut [&mut seq], &[next])
                .unwrap()
                .squeeze_dim(0),
        );
    }
    logits
}

#[test]
fn batched_decode_of_sequences_that_join_and_leave_equals_each_alone() {
    let llm = load();
    let model = &llm.model;
    let prompts = prompts(&llm);
    let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
    assert!(
        lens.windows(2).any(|w| w[0] != w[1]),
        "lengths differ: {lens:?}"
    );
    const STEPS: usize = 12;
    let reference: Vec<Vec<Tensor>> = prompts.iter().map(|p| alone(model, p, STEPS)).collect();

    // Sequence i joins at step `join[i]` (prefilled then) and leaves after
    // STEPS decodes; so the batch is 1, 2, 3, 4, then shrinks again.
    let join = [0usize, 2, 3, 5];
    let mut seqs: Vec<Sequence> = (0..4).map(|_| model.new_sequence()).collect();
    let mut got: Vec<Vec<Tensor>> = (0..4).map(|_| Vec::new()).collect();
    let mut max_diff = 0f64;
    let mut batch_sizes = Vec::new();
    for step in 0..join[3] + STEPS + 1 {
        for i in 0..4 {
            if join[i] == step {
                got[i].push(model.prefill(&mut seqs[i], &prompts[i]).unwrap());
            }
        }
        let active: Vec<usize> = (0..4)
            .filter(|&i| join[i] < step + 1 && !got[i].is_empty() && got[i].len() <= STEPS)
            .filter(|&i| join[i] != step)
            .collect();
        if active.is_empty() {
            continue;
        }
        batch_sizes.push(active.len());
        let next: Vec<u32> = active
            .iter()
            .map(|&i| argmax(got[i].last().unwrap()))
            .collect();
        let mut batch: Vec<&mut Sequence> = seqs
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| active.contains(i))
            .map(|(_, s)| s)
            .collect();
        let logits = model.decode_step(&mut batch, &next).unwrap();
        assert_eq!(logits.size(), vec![active.len() as i64, 49152]);
        for (row, &i) in active.iter().enumerate() {
            got[i].push(logits.get(row as i64));
        }
    }
    println!("batch sizes per step: {batch_sizes:?}");
    assert!(batch_sizes.contains(&4), "all four ran together");
    for i in 0..4 {
        assert_eq!(got[i].len(), STEPS + 1, "sequence {i}");
        for (step, (a, b)) in got[i].iter().zip(&reference[i]).enumerate() {
            assert_eq!(
                argmax(a),
                argmax(b),
                "sequence {i} step {step}: greedy token"
            );
            let d = max_abs_diff(a, b);
            max_diff = max_diff.max(d);
            assert!(
                d < LOGIT_TOLERANCE,
                "sequence {i} step {step}: logits differ by {d}"
            );
        }
        assert_eq!(seqs[i].len(), lens[i] + STEPS);
    }
    println!("batched vs alone: max |logit diff| {max_diff:.2e} (tolerance {LOGIT_TOLERANCE:.0e})");
}

/// A serving step: two running sequences decode while two others prefill
/// chunks (one its first, one its last), all in one `forward_batch`; each
/// row equals what the sequence gets on its own.
#[test]
fn one_pass_of_decodes_and_prefill_chunks_equals_each_alone() {
    let llm = load();
    let model = &llm.model;
    let prompts = prompts(&llm);
    let next_of = |p: &[u32]| {
        let mut s = model.new_sequence();
        argmax(&model.prefill(&mut s, p).unwrap())
    };
    let mut running: Vec<Sequence> = (0..2).map(|_| model.new_sequence()).collect();
    for (s, p) in running.iter_mut().zip(&prompts) {
        let _ = model.prefill(s, p).unwrap();
    }
    let tokens = [next_of(&prompts[0]), next_of(&prompts[1])];
    // Sequence 3 already holds the first 7 tokens of its prompt.
    let (p2, p3) = (&prompts[2], &prompts[3]);
    let mut fresh = model.new_sequence();
    let mut resumed = model.new_sequence();
    let _ = model.prefill(&mut resumed, &p3[..7]).unwrap();
    let mut expected = Vec::new();
    for (i, s) in running.iter().enumerate() {
        let mut alone_seq = model.new_sequence();
        let _ = model.prefill(&mut alone_seq, &prompts[i]).unwrap();
        assert_eq!(alone_seq.len(), s.len());
        expected.push(
            model
                .decode_step(&mut [&mut alone_seq], &[tokens[i]])
                .unwrap()
                .squeeze_dim(0),
        );
    }
    expected.push(model.prefill(&mut model.new_sequence(), &p2[..9]).unwrap());
    expected.push(model.prefill(&mut model.new_sequence(), p3).unwrap());

    let [a, b] = &mut running[..] else {
        unreachable!()
    };
    // Prefill chunks first: forward_batch reorders the decode rows itself.
    let logits = model
        .forward_batch(
            &mut [&mut fresh, a, &mut resumed, b],
            &[&p2[..9], &tokens[..1], &p3[7..], &tokens[1..]],
        )
        .unwrap();
    assert_eq!(logits.size(), vec![4, 49152]);
    let got = [logits.get(1), logits.get(3), logits.get(0), logits.get(2)];
    let mut max_diff = 0f64;
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(argmax(g), argmax(e), "row {i}: greedy token");
        max_diff = max_diff.max(max_abs_diff(g, e));
    }
    println!("one mixed pass vs alone: max |logit diff| {max_diff:.2e}");
    assert!(max_diff < LOGIT_TOLERANCE);
    assert_eq!(fresh.len(), 9);
    assert_eq!(resumed.len(), p3.len());
    assert_eq!(running[0].len(), prompts[0].len() + 1);
}

#[test]
fn chunked_prefill_equals_one_prefill_and_replay_equals_generation() {
    let llm = load();
    let model = &llm.model;
    let prompt = &prompts(&llm)[1];

    let mut whole = model.new_sequence();
    let one = model.prefill_all(&mut whole, prompt).unwrap();
    let mut chunked = model.new_sequence();
    let mut rows = Vec::new();
    for chunk in prompt.chunks(7) {
        rows.push(model.prefill_all(&mut chunked, chunk).unwrap());
    }
    let chunks = Tensor::cat(&rows, 0);
    let d = max_abs_diff(&one, &chunks);
    println!("chunked (7) vs one prefill: max |logit diff| {d:.2e}");
    assert!(d < LOGIT_TOLERANCE);
    assert_eq!(whole.len(), chunked.len());
    // A prompt longer than one internal prefill chunk (PREFILL_CHUNK) gives
    // the same logits as feeding it 150 tokens at a time.
    let long: Vec<u32> = prompts(&llm)
        .concat()
        .into_iter()
        .cycle()
        .take(PREFILL_CHUNK + 88)
        .collect();
    let mut whole = model.new_sequence();
    let one_long = model.prefill_all(&mut whole, &long).unwrap();
    let mut chunked = model.new_sequence();
    let rows: Vec<Tensor> = long
        .chunks(150)
        .map(|c| model.prefill_all(&mut chunked, c).unwrap())
        .collect();
    let d = max_abs_diff(&one_long, &Tensor::cat(&rows, 0));
    println!(
        "{}-token prompt, internal chunks vs 150 at a time: max |logit diff| {d:.2e}",
        long.len()
    );
    assert!(d < LOGIT_TOLERANCE);
    assert_eq!(whole.len(), long.len());

    // prefill's last-position logits are prefill_all's last row (up to the
    // LM-head matmul's blocking for 1 row vs many).
    let mut s = model.new_sequence();
    let last = model.prefill(&mut s, prompt).unwrap();
    assert!(max_abs_diff(&last, &one.get(prompt.len() as i64 - 1)) < LOGIT_TOLERANCE);

    // Replay (one prefill over prompt + response) reproduces what
    // generation saw at every response position.
    let generated = model.generate_greedy(prompt, 24, 5, &[]).unwrap();
    let response: Vec<u32> = generated.iter().map(|p| p.token).collect();
    let replay = model.replay_logprobs(prompt, &response, 5).unwrap();
    assert_eq!(replay.len(), response.len());
    let mut max_diff = 0f32;
    for (g, r) in generated.iter().zip(&replay) {
        assert_eq!(g.token, r.token);
        assert_eq!(
            r.top[0].token, r.token,
            "greedy token is the replay's top-1"
        );
        max_diff = max_diff.max((g.logprob - r.logprob).abs());
        for (a, b) in g.top.iter().zip(&r.top) {
            max_diff = max_diff.max((a.logprob - b.logprob).abs());
        }
    }
    println!("replay vs generation logprobs: max |diff| {max_diff:.2e}");
    assert!(max_diff < 1e-3);
    // A response token that is not the model's choice gets its own logprob.
    let mut other = response.clone();
    other[3] = 42;
    let r = model.replay_logprobs(prompt, &other, 5).unwrap();
    assert_eq!(r[3].token, 42);
    assert!(r[3].logprob < r[3].top[0].logprob);
}

#[test]
fn cpu_runs_repeat_bit_for_bit_and_bad_inputs_are_errors() {
    let llm = load();
    let model = &llm.model;
    let prompt = &prompts(&llm)[0];
    let a = alone(model, prompt, 6);
    let b = alone(model, prompt, 6);
    for (x, y) in a.iter().zip(&b) {
        assert!(x.equal(y), "same inputs, same logits bit for bit");
    }
    let top = logprobs_of(&a[0], 3, None).unwrap();
    assert_eq!(top[0].top.len(), 3);

    let mut seq = model.new_sequence();
    assert!(matches!(
        model.prefill(&mut seq, &[]),
        Err(ModelError::BadInput(_))
    ));
    assert!(matches!(
        model.prefill(&mut seq, &[1, 49152]),
        Err(ModelError::TokenOutOfRange { id: 49152, .. })
    ));
    assert_eq!(
        seq.len(),
        0,
        "a failed prefill leaves the sequence as it was"
    );
    let too_long = vec![1u32; model.config().context_length + 1];
    assert!(matches!(
        model.prefill(&mut seq, &too_long),
        Err(ModelError::ContextFull { .. })
    ));
    assert!(matches!(
        model.decode_step(&mut [&mut seq], &[1, 2]),
        Err(ModelError::BadInput(_))
    ));
    let _ = model.prefill(&mut seq, &prompt[..5]).unwrap();
    seq.truncate(3);
    assert_eq!(seq.len(), 3);
}

/// bf16 weights (what CUDA runs) through the same code on the CPU: finite
/// logits, and the same first greedy token as f32 on these prompts.
#[test]
fn bf16_weights_run_the_same_code_path() {
    common::one_torch_thread();
    let f32_llm = load();
    let bf16 = Llm::load(
        "smollm2-135m",
        LoadOptions {
            device: tch::Device::Cpu,
            kind: tch::Kind::BFloat16,
        },
    )
    .unwrap();
    let mut max_diff = 0f32;
    for prompt in prompts(&f32_llm) {
        let a = f32_llm.model.generate_greedy(&prompt, 2, 5, &[]).unwrap();
        let b = bf16.model.generate_greedy(&prompt, 2, 5, &[]).unwrap();
        assert!(b.iter().all(|p| p.logprob.is_finite()));
        assert_eq!(a[0].token, b[0].token);
        max_diff = max_diff.max((a[0].logprob - b[0].logprob).abs());
    }
    println!("bf16 vs f32, first token: max |logprob diff| {max_diff:.2e}");
}

/// Decode steps on the file's Q4_1/Q8_0 blocks (`kiln_llm::quant`, the CPU
/// default) compute the model the f32 weights compute: the same greedy
/// tokens and logits within float rounding, alone and in a batch of four,
/// with the products split over two threads (the helper pool) as the
/// serving worker runs them.
#[test]
fn decode_on_quantized_blocks_equals_decode_on_f32_weights() {
    let llm = load();
    tch::set_num_threads(2);
    let blocks = &llm.model;
    assert!(blocks.uses_block_products(), "SmolLM2's GGUF is Q4_1/Q8_0");
    let file = kiln_llm::gguf::GgufFile::open(common::model_path()).unwrap();
    let f32_model = LlamaModel::load(&file, LoadOptions::cpu())
        .unwrap()
        .without_block_products();
    assert!(!f32_model.uses_block_products());
    let prompts = prompts(&llm);
    let steps = 12;
    let mut worst = 0f64;
    for prompt in &prompts {
        let a = alone(blocks, prompt, steps);
        let b = alone(&f32_model, prompt, steps);
        for (step, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(argmax(x), argmax(y), "step {step}");
            worst = worst.max(max_abs_diff(x, y));
        }
    }
    // A batch of four on blocks against each alone on f32.
    let mut seqs: Vec<Sequence> = prompts.iter().map(|_| blocks.new_sequence()).collect();
    let mut next: Vec<u32> = seqs
        .iter_mut()
        .zip(&prompts)
        .map(|(s, p)| argmax(&blocks.prefill(s, p).unwrap()))
        .collect();
    let reference: Vec<Vec<Tensor>> = prompts
        .iter()
        .map(|p| alone(&f32_model, p, steps))
        .collect();
    for step in 1..=steps {
        let mut refs: Vec<&mut Sequence> = seqs.iter_mut().collect();
        let logits = blocks.decode_step(&mut refs, &next).unwrap();
        for (i, r) in reference.iter().enumerate() {
            let row = logits.get(i as i64);
            assert_eq!(argmax(&row), argmax(&r[step]), "sequence {i} step {step}");
            worst = worst.max(max_abs_diff(&row, &r[step]));
            next[i] = argmax(&row);
        }
    }
    assert!(
        worst < LOGIT_TOLERANCE,
        "blocks vs f32 logits differ by {worst}"
    );
    println!("largest logit difference, blocks vs f32: {worst:.2e}");
}
