//! Serving metrics for `/metrics` (Prometheus text format): tokens generated
//! and the rate over the last minute, queue depth and running batch size,
//! and histograms of time to first token and inter-token latency.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A Prometheus histogram with fixed upper bounds (seconds).
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Time-to-first-token buckets: 10 ms … 30 s.
pub const TTFT_BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Inter-token latency buckets: 1 ms … 2.5 s.
pub const ITL_BOUNDS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, seconds: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests_total: u64,
    requests_failed: u64,
    requests_cancelled: u64,
    prompt_tokens_total: u64,
    generated_tokens_total: u64,
    /// (when, tokens) of recent decode steps, for the tokens/s gauge.
    recent: VecDeque<(Instant, u64)>,
    queue_depth: usize,
    batch_size: usize,
    ttft: Histogram,
    itl: Histogram,
}

/// Shared by the HTTP handlers and the scheduler.
#[derive(Debug)]
pub struct ServeMetrics {
    inner: Mutex<Inner>,
}

/// The window of the tokens/s gauge.
const RATE_WINDOW: Duration = Duration::from_secs(60);

impl Default for ServeMetrics {
    fn default() -> Self {
        ServeMetrics {
            inner: Mutex::new(Inner {
                requests_total: 0,
                requests_failed: 0,
                requests_cancelled: 0,
                prompt_tokens_total: 0,
                generated_tokens_total: 0,
                recent: VecDeque::new(),
                queue_depth: 0,
                batch_size: 0,
                ttft: Histogram::new(TTFT_BOUNDS),
                itl: Histogram::new(ITL_BOUNDS),
            }),
        }
    }
}

impl ServeMetrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub fn request_started(&self, prompt_tokens: usize) {
        self.with(|m| {
            m.requests_total += 1;
            m.prompt_tokens_total += prompt_tokens as u64;
        });
    }

    pub fn request_failed(&self) {
        self.with(|m| m.requests_failed += 1);
    }

    pub fn request_cancelled(&self) {
        self.with(|m| m.requests_cancelled += 1);
    }

    pub fn first_token(&self, since_arrival: Duration) {
        self.with(|m| m.ttft.observe(since_arrival.as_secs_f64()));
    }

    pub fn next_token(&self, since_previous: Duration) {
        self.with(|m| m.itl.observe(since_previous.as_secs_f64()));
    }

    /// A decode step produced `tokens` tokens at `now`.
    pub fn tokens_generated(&self, now: Instant, tokens: u64) {
        self.with(|m| {
            m.generated_tokens_total += tokens;
            m.recent.push_back((now, tokens));
            while m
                .recent
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                m.recent.pop_front();
            }
        });
    }

    /// Requests waiting or in the batch at the scheduler's last step: the
    /// load a host's front worker weighs against its ML nodes' when it
    /// routes a request.
    pub fn load(&self) -> usize {
        self.with(|m| m.queue_depth.saturating_add(m.batch_size))
    }

    /// The queue as `run`'s live status line shows it.
    pub fn queue_view(&self, now: Instant) -> crate::progress::QueueView {
        let tokens_per_second = self.tokens_per_second(now);
        self.with(|m| crate::progress::QueueView {
            queued: m.queue_depth,
            in_batch: m.batch_size,
            requests: m.requests_total,
            tokens_per_second,
        })
    }

    pub fn set_queue(&self, queue_depth: usize, batch_size: usize) {
        self.with(|m| {
            m.queue_depth = queue_depth;
            m.batch_size = batch_size;
        });
    }

    /// Generated tokens per second over the last minute (or since the first
    /// step, when more recent).
    pub fn tokens_per_second(&self, now: Instant) -> f64 {
        self.with(|m| {
            let Some((first, _)) = m.recent.front() else {
                return 0.0;
            };
            let span = now.duration_since(*first).as_secs_f64().max(1.0);
            m.recent.iter().map(|(_, n)| *n).sum::<u64>() as f64 / span
        })
    }

    pub fn render(&self, now: Instant) -> String {
        let rate = self.tokens_per_second(now);
        self.with(|m| {
            let mut out = String::new();
            let counters = [
                (
                    "kiln_inference_requests_total",
                    "Inference requests accepted.",
                    m.requests_total,
                ),
                (
                    "kiln_inference_requests_failed_total",
                    "Inference requests that ended in an error.",
                    m.requests_failed,
                ),
                (
                    "kiln_inference_requests_cancelled_total",
                    "Inference requests whose client went away.",
                    m.requests_cancelled,
                ),
                (
                    "kiln_inference_prompt_tokens_total",
                    "Prompt tokens prefilled.",
                    m.prompt_tokens_total,
                ),
                (
                    "kiln_inference_generated_tokens_total",
                    "Tokens generated.",
                    m.generated_tokens_total,
                ),
            ];
            for (name, help, v) in counters {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
                );
            }
            let gauges = [
                (
                    "kiln_inference_tokens_per_second",
                    "Generated tokens per second over the last minute.",
                    rate,
                ),
                (
                    "kiln_inference_queue_depth",
                    "Requests waiting to join the batch.",
                    m.queue_depth as f64,
                ),
                (
                    "kiln_inference_batch_size",
                    "Requests in the running batch.",
                    m.batch_size as f64,
                ),
            ];
            for (name, help, v) in gauges {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
            }
            m.ttft.render(
                "kiln_inference_time_to_first_token_seconds",
                "Time from arrival to the first generated token.",
                &mut out,
            );
            m.itl.render(
                "kiln_inference_inter_token_latency_seconds",
                "Time between consecutive tokens of one request.",
                &mut out,
            );
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_render_as_prometheus_text() {
        let m = ServeMetrics::default();
        m.first_token(Duration::from_millis(30));
        m.first_token(Duration::from_millis(700));
        m.next_token(Duration::from_millis(3));
        let t0 = Instant::now();
        m.tokens_generated(t0, 8);
        m.set_queue(2, 8);
        let text = m.render(t0);
        assert!(
            text.contains("kiln_inference_time_to_first_token_seconds_bucket{le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kiln_inference_time_to_first_token_seconds_bucket{le=\"1\"} 2"),
            "{text}"
        );
        assert!(text.contains("kiln_inference_time_to_first_token_seconds_count 2"));
        assert!(text.contains("kiln_inference_inter_token_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("kiln_inference_queue_depth 2"));
        assert!(text.contains("kiln_inference_batch_size 8"));
        assert!(text.contains("kiln_inference_generated_tokens_total 8"));
    }

    #[test]
    fn the_rate_counts_the_last_minute_only() {
        let m = ServeMetrics::default();
        let t0 = Instant::now();
        m.tokens_generated(t0, 1000);
        let later = t0 + Duration::from_secs(120);
        m.tokens_generated(later - Duration::from_secs(10), 100);
        m.tokens_generated(later, 100);
        let rate = m.tokens_per_second(later);
        assert!((rate - 20.0).abs() < 1e-9, "{rate}");
    }
}
