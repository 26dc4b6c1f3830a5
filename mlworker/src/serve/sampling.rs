//! Picking each next token from the model's logits: greedy at temperature 0,
//! else temperature, top-k and top-p (nucleus) over a softmax, drawn from a
//! ChaCha20 stream keyed by the request's seed — the same seed and the same
//! logits give the same token on every machine. Also the log-probabilities
//! OpenAI's `logprobs` report (of the model's own distribution, before
//! temperature), and the stop-string matcher that holds back text which might
//! still become a stop sequence.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;

use super::openai::SamplingParams;

/// A deterministic source of uniform numbers in [0, 1): ChaCha20's keystream
/// under the seed.
pub struct SeededUniform {
    cipher: ChaCha20,
}

impl SeededUniform {
    pub fn new(seed: u64) -> SeededUniform {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..24].copy_from_slice(b"kiln/sampling/v1");
        SeededUniform {
            cipher: ChaCha20::new(&key.into(), &[0u8; 12].into()),
        }
    }

    /// 53 random bits as a float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        let mut bytes = [0u8; 8];
        self.cipher.apply_keystream(&mut bytes);
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One request's sampler.
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: u32,
    uniform: SeededUniform,
}

impl Sampler {
    /// Without a seed, one is drawn from the OS (the output is then not
    /// reproducible, as OpenAI's without `seed`).
    pub fn new(params: &SamplingParams) -> Sampler {
        let seed = params.seed.unwrap_or_else(|| {
            let mut bytes = [0u8; 8];
            // getrandom failing leaves a fixed seed: sampling still works.
            let _ = rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut bytes);
            u64::from_le_bytes(bytes)
        });
        Sampler {
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k,
            uniform: SeededUniform::new(seed),
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// The next token for these logits (one per vocabulary entry): the
    /// candidates in descending logit order (ties: lower id first), cut to
    /// the top `k`, then to the smallest prefix whose probability reaches
    /// `top_p`, and one uniform draw walked down that prefix.
    ///
    /// Only the head of the order is sorted: [`SORTED_HEAD`] candidates
    /// first, more only when the nucleus or the draw reaches past them. A
    /// full sort of SmolLM2's 49 152 logits per token cost a quarter of a
    /// batch of eight's throughput (the scheduler samples between two steps).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.is_greedy() || logits.len() < 2 {
            return argmax(logits);
        }
        let t = f64::from(self.temperature);
        let max = f64::from(logits[argmax(logits) as usize]);
        let weight = |i: u32| ((f64::from(logits[i as usize]) - max) / t).exp();
        let vocab = logits.len();
        let kept_len = match self.top_k {
            0 => vocab,
            k => (k as usize).min(vocab),
        };
        // The mass of every kept candidate (the nucleus is a share of it).
        let total: f64 = if kept_len == vocab {
            (0..vocab as u32).map(weight).sum()
        } else {
            descending_head(logits, kept_len)
                .into_iter()
                .map(weight)
                .sum()
        };
        let draw = self.uniform.next_f64();
        let mut head = SORTED_HEAD.min(kept_len);
        loop {
            let order = descending_head(logits, head);
            let weights: Vec<f64> = order.iter().map(|&i| weight(i)).collect();
            let whole = head == kept_len;
            // Nucleus: the smallest prefix whose mass reaches top_p.
            let cut = if self.top_p < 1.0 {
                let mut mass = 0.0;
                let reached = weights.iter().position(|w| {
                    mass += w / total;
                    mass >= f64::from(self.top_p)
                });
                match reached {
                    Some(n) => Some(n + 1),
                    None if whole => Some(head),
                    None => None,
                }
            } else {
                None
            };
            match cut {
                Some(cut) => {
                    let kept: f64 = weights[..cut].iter().sum();
                    return walk(&order[..cut], &weights[..cut], draw * kept);
                }
                // The nucleus reaches past the sorted head: sort more.
                None if self.top_p < 1.0 => {}
                None => {
                    let mut target = draw * total;
                    for (n, w) in weights.iter().enumerate() {
                        if target < *w {
                            return order[n];
                        }
                        target -= w;
                    }
                    if whole {
                        // Rounding left the draw past the last candidate.
                        return order[head - 1];
                    }
                }
            }
            head = (head * 8).min(kept_len);
        }
    }
}

/// The candidate where `target` (a point in the candidates' mass, in
/// order) falls; the last one when rounding leaves it past the end.
fn walk(order: &[u32], weights: &[f64], mut target: f64) -> u32 {
    for (n, w) in weights.iter().enumerate() {
        if target < *w {
            return order[n];
        }
        target -= w;
    }
    order[order.len() - 1]
}

/// Candidates sorted at first when sampling (see [`Sampler::sample`]).
const SORTED_HEAD: usize = 256;

/// The `n` highest logits' ids, best first (ties: lower id first).
fn descending_head(logits: &[f32], n: usize) -> Vec<u32> {
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    if n == 0 {
        return Vec::new();
    }
    if n < order.len() {
        order.select_nth_unstable_by(n - 1, by_logit);
        order.truncate(n);
    }
    order.sort_unstable_by(by_logit);
    order
}

/// The highest logit's index (the lowest index among equal maxima).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// `log_softmax(logits)[token]` and the `top` most likely tokens with their
/// log-probabilities (descending; ties by lower id), computed in f64.
pub fn logprobs(logits: &[f32], token: u32, top: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_total = logits
        .iter()
        .map(|v| (f64::from(*v) - f64::from(max)).exp())
        .sum::<f64>()
        .ln()
        + f64::from(max);
    let lp = |i: u32| (f64::from(logits[i as usize]) - log_total) as f32;
    let best = top_ids(logits, top);
    (lp(token), best.into_iter().map(|i| (i, lp(i))).collect())
}

/// The `n` highest logits' ids, best first (ties: lower id first), in one
/// pass that keeps the best `n` seen so far: for the few alternatives
/// `logprobs` reports (≤ 20), most logits are turned away by one comparison.
fn top_ids(logits: &[f32], n: usize) -> Vec<u32> {
    use std::cmp::Ordering::Greater;
    if n > 64 {
        // Insertion would cost n per kept logit: partition instead.
        return descending_head(logits, n.min(logits.len()));
    }
    let mut best: Vec<u32> = Vec::with_capacity(n + 1);
    if n == 0 {
        return best;
    }
    for (i, v) in logits.iter().enumerate() {
        if let Some(&last) = best.last() {
            // A later id with an equal logit ranks after the earlier one.
            if best.len() == n && v.total_cmp(&logits[last as usize]) != Greater {
                continue;
            }
        }
        let at =
            best.partition_point(|&b| logits[b as usize].total_cmp(v) != std::cmp::Ordering::Less);
        best.insert(at, i as u32);
        best.truncate(n);
    }
    best
}

/// Watches generated text for stop strings. Text is released only when no
/// stop string can begin inside it, so a client never receives the start of
/// a stop sequence (OpenAI's behaviour: the stop string is not returned).
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds newly generated text; returns the text now safe to emit and
    /// whether a stop string was reached (then nothing after it is emitted).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        // Hold back the longest suffix that is a proper prefix of a stop string.
        let mut keep_from = self.held.len();
        for stop in &self.stops {
            for (i, _) in self.held.char_indices() {
                if i < keep_from && stop.starts_with(&self.held[i..]) {
                    keep_from = i;
                    break;
                }
            }
        }
        let out = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        (out, false)
    }

    /// At the end of generation (EOS or length): whatever is held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, top_k: u32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            seed: Some(seed),
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_the_argmax_and_the_lowest_id_on_ties() {
        let mut s = Sampler::new(&params(0.0, 1.0, 0, 1));
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 2.0]), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens_and_another_seed_differs() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(&params(1.0, 1.0, 0, seed));
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    /// The sampler before it sorted only the head of the order: every
    /// logit sorted, every draw walked down the full order.
    fn full_sort_sample(
        params: &SamplingParams,
        uniform: &mut SeededUniform,
        logits: &[f32],
    ) -> u32 {
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_unstable_by(|a, b| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        });
        if params.top_k > 0 {
            order.truncate((params.top_k as usize).min(logits.len()));
        }
        let t = f64::from(params.temperature);
        let max = f64::from(logits[order[0] as usize]);
        let weights: Vec<f64> = order
            .iter()
            .map(|&i| ((f64::from(logits[i as usize]) - max) / t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut cut = weights.len();
        if params.top_p < 1.0 {
            let mut mass = 0.0;
            for (n, w) in weights.iter().enumerate() {
                mass += w / total;
                if mass >= f64::from(params.top_p) {
                    cut = n + 1;
                    break;
                }
            }
        }
        let kept: f64 = weights[..cut].iter().sum();
        let mut target = uniform.next_f64() * kept;
        for (n, w) in weights[..cut].iter().enumerate() {
            if target < *w {
                return order[n];
            }
            target -= w;
        }
        order[cut - 1]
    }

    /// Sorting only the head draws the same tokens as sorting everything,
    /// for peaked and flat distributions (the draw then reaches past the
    /// head) and every mix of temperature, top-k and top-p.
    #[test]
    fn sorting_only_the_head_draws_what_a_full_sort_draws() {
        let mut noise = SeededUniform::new(99);
        let vocab = 49_152;
        // Logits like a model's (a few high, a long tail) and nearly flat ones.
        let peaked: Vec<f32> = (0..vocab)
            .map(|_| (noise.next_f64() * 4.0).powi(3) as f32 - 20.0)
            .collect();
        let flat: Vec<f32> = (0..vocab)
            .map(|_| (noise.next_f64() * 0.5) as f32)
            .collect();
        let mut reached_past_head = false;
        for logits in [&peaked, &flat] {
            let ranked = descending_head(logits, vocab);
            for (temperature, top_p, top_k) in [
                (1.0, 1.0, 0),
                (0.7, 0.9, 0),
                (1.3, 0.95, 0),
                (1.0, 0.5, 0),
                (0.8, 1.0, 40),
                (1.0, 0.9, 1000),
                (2.0, 0.999, 0),
            ] {
                let p = params(temperature, top_p, top_k, 5);
                let mut fast = Sampler::new(&p);
                let mut reference = SeededUniform::new(5);
                for _ in 0..40 {
                    let token = fast.sample(logits);
                    assert_eq!(
                        token,
                        full_sort_sample(&p, &mut reference, logits),
                        "t {temperature} top_p {top_p} top_k {top_k}"
                    );
                    let rank = ranked.iter().position(|&t| t == token);
                    reached_past_head |= rank.is_some_and(|r| r >= SORTED_HEAD);
                }
            }
        }
        assert!(
            reached_past_head,
            "some draw must come from past the sorted head"
        );
    }

    #[test]
    fn the_one_pass_top_equals_a_full_sort_with_ties() {
        let mut noise = SeededUniform::new(3);
        // Coarse values: many ties.
        let logits: Vec<f32> = (0..5_000)
            .map(|_| (noise.next_f64() * 40.0).floor() as f32)
            .collect();
        let sorted = descending_head(&logits, logits.len());
        for n in [0, 1, 2, 5, 20, 4_999, 5_000, 6_000] {
            assert_eq!(
                top_ids(&logits, n),
                sorted[..n.min(logits.len())].to_vec(),
                "n = {n}"
            );
        }
    }

    #[test]
    fn top_k_and_top_p_restrict_the_candidates() {
        // Probabilities ~ 0.64, 0.24, 0.09, 0.03.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut k1 = Sampler::new(&params(1.0, 1.0, 1, 3));
        assert!((0..200).all(|_| k1.sample(&logits) == 0));
        let mut k2 = Sampler::new(&params(1.0, 1.0, 2, 3));
        let drawn: std::collections::BTreeSet<u32> = (0..400).map(|_| k2.sample(&logits)).collect();
        assert_eq!(drawn, [0, 1].into());
        let mut p = Sampler::new(&params(1.0, 0.8, 0, 3));
        let drawn: std::collections::BTreeSet<u32> = (0..400).map(|_| p.sample(&logits)).collect();
        assert_eq!(drawn, [0, 1].into(), "0.64 < 0.8 <= 0.88: two tokens");
        let mut all = Sampler::new(&params(1.0, 1.0, 0, 3));
        let counts = (0..4000).fold([0u32; 4], |mut c, _| {
            c[all.sample(&logits) as usize] += 1;
            c
        });
        assert!((2400..2750).contains(&counts[0]), "{counts:?}");
        assert!(counts[3] > 50, "{counts:?}");
    }

    #[test]
    fn logprobs_are_a_log_softmax_with_sorted_alternatives() {
        let (lp, top) = logprobs(&[1.0, 3.0, 2.0], 2, 2);
        let z = (1f64.exp() + 3f64.exp() + 2f64.exp()).ln();
        assert!((f64::from(lp) - (2.0 - z)).abs() < 1e-6);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((f64::from(top[0].1) - (3.0 - z)).abs() < 1e-6);
    }

    #[test]
    fn stop_strings_are_held_back_and_cut() {
        let mut m = StopMatcher::new(&["END".into(), "\n\n".into()]);
        assert_eq!(m.push("Hello E"), ("Hello ".into(), false));
        assert_eq!(m.push("N"), ("".into(), false));
        assert_eq!(m.push("X more"), ("ENX more".into(), false));
        assert_eq!(m.push(" text\n"), (" text".into(), false));
        assert_eq!(m.push("\nignored"), ("".into(), true));
        let mut m = StopMatcher::new(&["stop".into()]);
        assert_eq!(m.push("no sto"), ("no ".into(), false));
        assert_eq!(m.finish(), "sto");
        let mut none = StopMatcher::new(&[]);
        assert_eq!(none.push("anything"), ("anything".into(), false));
    }
}
