//! The inference engine: continuous batching over the model on the engine
//! executor.
//!
//! A scheduler thread keeps the running batch. Between two decode steps it
//! admits waiting requests (up to `max_batch`) and drops finished or
//! abandoned ones, so requests join and leave without waiting for each
//! other. A step is one forward pass of the model over every running
//! request's next token plus up to `prefill_chunk` prompt tokens of joining
//! requests (in arrival order, several requests' prompts in one step when
//! they fit), so the weights are read once per step for all of them, and a
//! long prompt delays the others by one chunk's time per step instead of
//! its whole prefill.
//!
//! Each step is one work item on the [`EngineExecutor`] at
//! [`Priority::Inference`]: the model and every sequence's KV cache live on
//! the executor thread, and a sprint running on the same device yields to a
//! waiting step between two of its slices (the sprint loses the time the
//! steps take; no request is refused because a sprint runs). Sampling,
//! detokenizing and stop strings run on the scheduler thread, off the
//! device.
//!
//! Events go to each request over an unbounded channel; when the receiver is
//! gone (the client disconnected), the request is cancelled at the next step.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use kiln_llm::model::{LlamaModel, LoadOptions, Sequence};
use kiln_llm::tokenizer::Tokenizer;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::metrics::ServeMetrics;
use super::openai::{ApiError, SamplingParams};
use super::responses::{FinishReason, TokenLogprob, Usage};
use super::sampling::{logprobs, Sampler, StopMatcher};
use crate::executor::{EngineExecutor, Priority};

/// Engine limits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests decoded together at most.
    pub max_batch: usize,
    /// Requests waiting to join the batch at most (then 429).
    pub max_queue: usize,
    /// Prompt tokens prefilled per step, over all joining requests.
    pub prefill_chunk: usize,
    /// The model's context length (prompt + generated tokens).
    pub context_length: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_batch: 8,
            max_queue: 64,
            prefill_chunk: 256,
            context_length: 8192,
        }
    }
}

/// What a request asks the engine for (already checked by the API layer).
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    /// Tokens to generate at most (already bounded by the context).
    pub max_new_tokens: usize,
    /// Report each token's logprob, with this many alternatives.
    pub logprobs: bool,
    pub top_logprobs: usize,
}

/// What the engine tells a request, in order: tokens, then `Done` or `Failed`.
#[derive(Debug, Clone)]
pub enum Event {
    /// One generated token. `text` is what may be shown now (possibly empty:
    /// an incomplete character or a possible stop string is held back).
    Token {
        id: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    Done {
        /// Text released at the end (what was held back, when no stop string cut it).
        tail: String,
        finish: FinishReason,
        usage: Usage,
    },
    Failed(ApiError),
}

struct Job {
    id: u64,
    spec: JobSpec,
    events: UnboundedSender<Event>,
    arrived: Instant,
}

/// The model side of the engine, on the executor thread.
#[derive(Default)]
struct DeviceSide {
    model: Option<LlamaModel>,
    sequences: BTreeMap<u64, Sequence>,
}

/// What one step does on the device.
struct StepPlan {
    /// Sequences to forget (finished, failed or cancelled).
    drop: Vec<u64>,
    /// What each request feeds in this step: the token it decodes, or a
    /// chunk of its prompt (joining requests). All run in one forward pass.
    inputs: Vec<(u64, Vec<u32>)>,
}

/// Per input of the plan, in its order: the logits at its last position, or
/// why it failed.
type StepOutput = Vec<(u64, Result<Vec<f32>, String>)>;

fn logits_rows(t: &tch::Tensor) -> Result<Vec<Vec<f32>>> {
    let t = t.to_kind(tch::Kind::Float).to_device(tch::Device::Cpu);
    let t = if t.dim() == 1 { t.unsqueeze(0) } else { t };
    let (rows, vocab) = t.size2()?;
    let flat: Vec<f32> = Vec::<f32>::try_from(&t.reshape([-1]))?;
    Ok((0..rows as usize)
        .map(|r| flat[r * vocab as usize..(r + 1) * vocab as usize].to_vec())
        .collect())
}

impl DeviceSide {
    fn step(&mut self, plan: StepPlan, reload: &(PathBuf, LoadOptions)) -> Result<StepOutput> {
        for id in &plan.drop {
            self.sequences.remove(id);
        }
        if self.model.is_none() {
            // After a panic the executor drops engines' state: load again.
            let file = kiln_llm::gguf::GgufFile::open(&reload.0)?;
            self.model = Some(LlamaModel::load(&file, reload.1)?);
            self.sequences.clear();
        }
        let model = self.model.as_ref().ok_or_else(|| anyhow!("no model"))?;
        let (context, vocab) = (model.config().context_length, model.config().vocab_size);
        let mut out: StepOutput = Vec::with_capacity(plan.inputs.len());
        // An input that cannot run fails alone, before the shared forward pass.
        let mut ids = Vec::with_capacity(plan.inputs.len());
        let mut seqs: Vec<Sequence> = Vec::with_capacity(plan.inputs.len());
        let mut inputs: Vec<Vec<u32>> = Vec::with_capacity(plan.inputs.len());
        for (id, input) in plan.inputs {
            let seq = self
                .sequences
                .remove(&id)
                .unwrap_or_else(|| model.new_sequence());
            let problem = if input.is_empty() {
                Some("an empty input".to_string())
            } else if seq.len() + input.len() > context {
                Some(format!(
                    "{} tokens exceed the context length {context}",
                    seq.len() + input.len()
                ))
            } else {
                input
                    .iter()
                    .find(|&&t| t as usize >= vocab)
                    .map(|t| format!("token id {t} is outside the vocabulary of {vocab}"))
            };
            match problem {
                Some(e) => out.push((id, Err(e))),
                None => {
                    ids.push(id);
                    seqs.push(seq);
                    inputs.push(input);
                }
            }
        }
        if ids.is_empty() {
            return Ok(out);
        }
        let result = {
            // A pass of decodes on the model's quantized blocks keeps torch
            // on one thread until its logits are read (see BlockThreads).
            let rows = inputs.iter().map(Vec::len).sum();
            let _threads = model.block_threads(rows);
            let mut refs: Vec<&mut Sequence> = seqs.iter_mut().collect();
            let inputs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
            model
                .forward_batch(&mut refs, &inputs)
                .map_err(|e| e.to_string())
                .and_then(|t| logits_rows(&t).map_err(|e| e.to_string()))
        };
        match result {
            Ok(rows) => {
                for ((id, seq), row) in ids.into_iter().zip(seqs).zip(rows) {
                    self.sequences.insert(id, seq);
                    out.push((id, Ok(row)));
                }
            }
            Err(e) => {
                // A sequence's cache is unreliable after a failed pass: forget it.
                for id in ids {
                    out.push((id, Err(e.clone())));
                }
            }
        }
        Ok(out)
    }
}

/// Handle to the engine; clones share it.
#[derive(Clone)]
pub struct InferenceEngine {
    executor: EngineExecutor,
    jobs: mpsc::Sender<Job>,
    waiting: Arc<AtomicUsize>,
    next_id: Arc<AtomicUsize>,
    config: EngineConfig,
    metrics: Arc<ServeMetrics>,
}

impl InferenceEngine {
    /// Moves `model` onto the executor thread and starts the scheduler.
    /// `reload` is where the model comes from, to load it again should a
    /// panic on the executor drop it.
    pub fn start(
        executor: EngineExecutor,
        model: LlamaModel,
        reload: (PathBuf, LoadOptions),
        tokenizer: Arc<Tokenizer>,
        config: EngineConfig,
        metrics: Arc<ServeMetrics>,
    ) -> Result<InferenceEngine> {
        executor
            .run(Priority::Inference, move |ctx| {
                ctx.state::<DeviceSide>().model = Some(model);
                Ok(())
            })
            .context("installing the model on the engine executor")?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let scheduler = Scheduler {
            executor: executor.clone(),
            reload,
            tokenizer,
            config: config.clone(),
            metrics: metrics.clone(),
            waiting: waiting.clone(),
            jobs: rx,
            queue: VecDeque::new(),
            active: BTreeMap::new(),
            to_drop: Vec::new(),
        };
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || scheduler.run())?;
        Ok(InferenceEngine {
            executor,
            jobs,
            waiting,
            next_id: Arc::new(AtomicUsize::new(1)),
            config,
            metrics,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Requests waiting or generating (see [`ServeMetrics::load`]).
    pub fn load(&self) -> usize {
        self.metrics.load().max(self.waiting.load(Ordering::SeqCst))
    }

    /// A validator's replay (SPEC §5): `prompt ++ response` in one prefill
    /// with teacher forcing on the served model, the top-`k` logprobs and the
    /// response token's logprob at each response position. Runs on the
    /// executor at inference priority, between the engine's own steps.
    pub fn replay(
        &self,
        prompt: Vec<u32>,
        response: Vec<u32>,
        k: usize,
    ) -> Result<Vec<kiln_llm::model::PositionLogprobs>> {
        self.executor.run(Priority::Inference, move |ctx| {
            let side = ctx.state::<DeviceSide>();
            let model = side
                .model
                .as_ref()
                .ok_or_else(|| anyhow!("the model is not loaded"))?;
            Ok(model.replay_logprobs(&prompt, &response, k)?)
        })
    }

    /// Queues a request; 429 when `max_queue` requests already wait.
    pub fn submit(&self, spec: JobSpec) -> Result<UnboundedReceiver<Event>, ApiError> {
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.config.max_queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::queue_full(waiting, 1));
        }
        let (tx, rx) = unbounded_channel();
        self.metrics.request_started(spec.prompt.len());
        let job = Job {
            id: self.next_id.fetch_add(1, Ordering::SeqCst) as u64,
            spec,
            events: tx,
            arrived: Instant::now(),
        };
        if self.jobs.send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::unavailable("the inference engine has stopped"));
        }
        Ok(rx)
    }
}

/// A request in the running batch.
struct Active {
    job: Job,
    sampler: Sampler,
    stop: StopMatcher,
    /// Prompt tokens prefilled so far.
    prefilled: usize,
    /// The token to feed at the next decode step (None while prefilling).
    next_input: Option<u32>,
    generated: usize,
    /// Bytes of an incomplete UTF-8 character.
    pending_utf8: Vec<u8>,
    last_token_at: Option<Instant>,
}

struct Scheduler {
    executor: EngineExecutor,
    reload: (PathBuf, LoadOptions),
    tokenizer: Arc<Tokenizer>,
    config: EngineConfig,
    metrics: Arc<ServeMetrics>,
    waiting: Arc<AtomicUsize>,
    jobs: mpsc::Receiver<Job>,
    queue: VecDeque<Job>,
    active: BTreeMap<u64, Active>,
    to_drop: Vec<u64>,
}

impl Scheduler {
    fn run(mut self) {
        // Held while requests are in flight: the sprint's next round waits
        // instead of running between every two steps (device policy, README
        // "Serving inference"); released whenever the engine goes idle.
        let mut sprint_hold = None;
        loop {
            if self.active.is_empty() && self.queue.is_empty() {
                sprint_hold = None;
                match self.jobs.recv() {
                    Ok(job) => self.queue.push_back(job),
                    Err(_) => return, // every handle is gone
                }
            }
            if sprint_hold.is_none() {
                sprint_hold = Some(self.executor.hold_sprint());
            }
            while let Ok(job) = self.jobs.try_recv() {
                self.queue.push_back(job);
            }
            self.admit();
            self.metrics.set_queue(self.queue.len(), self.active.len());
            if self.active.is_empty() {
                continue;
            }
            self.step();
        }
    }

    /// Moves waiting requests into the batch; drops those whose client left.
    fn admit(&mut self) {
        let before = self.queue.len();
        self.queue.retain(|j| !j.events.is_closed());
        let abandoned = before - self.queue.len();
        for _ in 0..abandoned {
            self.metrics.request_cancelled();
        }
        self.waiting.fetch_sub(abandoned, Ordering::SeqCst);
        while self.active.len() < self.config.max_batch {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            let sampler = Sampler::new(&job.spec.sampling);
            let stop = StopMatcher::new(&job.spec.sampling.stop);
            self.active.insert(
                job.id,
                Active {
                    job,
                    sampler,
                    stop,
                    prefilled: 0,
                    next_input: None,
                    generated: 0,
                    pending_utf8: Vec::new(),
                    last_token_at: None,
                },
            );
        }
    }

    fn step(&mut self) {
        // Clients that left are dropped before spending a step on them.
        let gone: Vec<u64> = self
            .active
            .iter()
            .filter(|(_, a)| a.job.events.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.metrics.request_cancelled();
            self.finish_silently(id);
        }
        // Joining requests' prompts, in arrival order, up to `prefill_chunk`
        // tokens in all, and every running request's next token: one pass.
        let mut budget = self.config.prefill_chunk;
        let mut prefill_ends: BTreeMap<u64, usize> = BTreeMap::new();
        let mut inputs: Vec<(u64, Vec<u32>)> = Vec::with_capacity(self.active.len());
        for a in self.active.values() {
            match a.next_input {
                Some(token) => inputs.push((a.job.id, vec![token])),
                None if budget > 0 => {
                    let prompt = &a.job.spec.prompt;
                    let end = (a.prefilled + budget).min(prompt.len());
                    budget -= end - a.prefilled;
                    prefill_ends.insert(a.job.id, end);
                    inputs.push((a.job.id, prompt[a.prefilled..end].to_vec()));
                }
                None => {}
            }
        }
        if inputs.is_empty() {
            return;
        }
        let plan = StepPlan {
            drop: std::mem::take(&mut self.to_drop),
            inputs,
        };
        let reload = self.reload.clone();
        let out = self.executor.run(Priority::Inference, move |ctx| {
            ctx.state::<DeviceSide>().step(plan, &reload)
        });
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                // The device step itself failed: every running request fails.
                let ids: Vec<u64> = self.active.keys().copied().collect();
                for id in ids {
                    self.fail(
                        id,
                        ApiError::unavailable(format!("the inference step failed: {e:#}")),
                    );
                }
                return;
            }
        };
        let now = Instant::now();
        let mut tokens_this_step = 0u64;
        for (id, result) in out {
            let prefill_end = prefill_ends.get(&id).copied();
            match (result, prefill_end) {
                (Err(e), Some(_)) => {
                    self.fail(id, ApiError::internal(format!("prefill failed: {e}")))
                }
                (Err(e), None) => self.fail(id, ApiError::internal(format!("decode failed: {e}"))),
                (Ok(row), Some(end)) => {
                    let Some(a) = self.active.get_mut(&id) else {
                        continue;
                    };
                    a.prefilled = end;
                    if end == a.job.spec.prompt.len() {
                        tokens_this_step += 1;
                        self.accept(id, &row, now);
                    }
                }
                (Ok(row), None) => {
                    tokens_this_step += 1;
                    self.accept(id, &row, now);
                }
            }
        }
        self.metrics.tokens_generated(now, tokens_this_step);
        self.metrics.set_queue(self.queue.len(), self.active.len());
    }

    /// Samples request `id`'s next token from `logits` and tells its client.
    fn accept(&mut self, id: u64, logits: &[f32], now: Instant) {
        let Some(a) = self.active.get_mut(&id) else {
            return;
        };
        // Below `min_tokens` the end-of-sequence tokens cannot be drawn;
        // logprobs still report the model's own distribution.
        let token = if a.generated < a.job.spec.sampling.min_tokens as usize {
            let mut masked = logits.to_vec();
            for &stop in self.tokenizer.stop_ids() {
                if let Some(l) = masked.get_mut(stop as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
            a.sampler.sample(&masked)
        } else {
            a.sampler.sample(logits)
        };
        match a.last_token_at {
            None => self.metrics.first_token(now.duration_since(a.job.arrived)),
            Some(prev) => self.metrics.next_token(now.duration_since(prev)),
        }
        a.last_token_at = Some(now);
        a.generated += 1;
        let usage = Usage {
            prompt_tokens: a.job.spec.prompt.len(),
            completion_tokens: a.generated,
        };
        if self.tokenizer.stop_ids().contains(&token) && !a.job.spec.sampling.ignore_eos {
            let tail = a.stop.finish();
            self.done(id, tail, FinishReason::Stop, usage);
            return;
        }
        let logprob = a.job.spec.logprobs.then(|| {
            let (lp, top) = logprobs(logits, token, a.job.spec.top_logprobs);
            let text_of = |t: u32| {
                let bytes = self.tokenizer.token_bytes(t).unwrap_or_default().to_vec();
                (String::from_utf8_lossy(&bytes).into_owned(), bytes)
            };
            let (text, bytes) = text_of(token);
            TokenLogprob {
                token: text,
                bytes,
                logprob: lp,
                top_ids: top.iter().map(|(t, _)| *t).collect(),
                top: top
                    .into_iter()
                    .map(|(t, lp)| {
                        let (s, b) = text_of(t);
                        (s, b, lp)
                    })
                    .collect(),
                token_id: token,
            }
        });
        // Special tokens other than the stop ids are not shown as text.
        if !self.tokenizer.is_special(token) {
            a.pending_utf8
                .extend_from_slice(self.tokenizer.token_bytes(token).unwrap_or_default());
        }
        let complete = match std::str::from_utf8(&a.pending_utf8) {
            Ok(s) => s.len(),
            // An invalid sequence (not just an incomplete one) is replaced.
            Err(e) if e.error_len().is_some() => a.pending_utf8.len(),
            Err(e) => e.valid_up_to(),
        };
        let ready: Vec<u8> = a.pending_utf8.drain(..complete).collect();
        let (text, stopped) = a.stop.push(&String::from_utf8_lossy(&ready));
        let sent = a
            .job
            .events
            .send(Event::Token {
                id: token,
                text,
                logprob,
            })
            .is_ok();
        if !sent {
            self.metrics.request_cancelled();
            self.finish_silently(id);
            return;
        }
        let total = a.job.spec.prompt.len() + a.generated;
        if stopped {
            self.done(id, String::new(), FinishReason::Stop, usage);
        } else if a.generated >= a.job.spec.max_new_tokens || total >= self.config.context_length {
            let mut tail =
                String::from_utf8_lossy(&std::mem::take(&mut a.pending_utf8)).into_owned();
            tail.push_str(&a.stop.finish());
            self.done(id, tail, FinishReason::Length, usage);
        } else {
            a.next_input = Some(token);
        }
    }

    fn done(&mut self, id: u64, tail: String, finish: FinishReason, usage: Usage) {
        if let Some(a) = self.active.remove(&id) {
            let _ = a.job.events.send(Event::Done {
                tail,
                finish,
                usage,
            });
        }
        self.to_drop.push(id);
    }

    fn fail(&mut self, id: u64, error: ApiError) {
        if let Some(a) = self.active.remove(&id) {
            self.metrics.request_failed();
            let _ = a.job.events.send(Event::Failed(error));
        }
        self.to_drop.push(id);
    }

    fn finish_silently(&mut self, id: u64) {
        self.active.remove(&id);
        self.to_drop.push(id);
    }
}
