//! Inference market parameters (SPEC §5), mainnet-like defaults.

#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct InferenceParams {
    /// Blocks after which an unfinished inference is refunded and counts as
    /// a miss for its executor.
    pub inference_timeout_blocks: u64,
    /// Tokens (prompt + max_tokens of the requests started) one model may
    /// take per block at 100% utilisation.
    pub block_token_capacity: u64,
    /// The utilisation band the price steers toward, in basis points of the
    /// capacity: no change inside `[low, high]`.
    pub utilisation_low_bps: u64,
    pub utilisation_high_bps: u64,
    /// Largest price change per block, in basis points of the price (200 =
    /// ±2%), reached at 0% and at 100% utilisation.
    pub max_price_step_bps: u64,
    /// How many blocks back a request's draw seed (`seed_height`) may be:
    /// the chain keeps that many block hashes to re-derive the draw.
    #[serde(default = "default_draw_window")]
    pub draw_window_blocks: u64,
    /// Misses in a row (in one epoch) after which a host gets no more
    /// requests until the next epoch's settle: a dead host stops getting work.
    #[serde(default = "default_dead_after")]
    pub dead_after_misses: u64,
    /// Blocks a settled inference's record stays queryable (and available
    /// to validation) before it is pruned: `payload_retention`.
    #[serde(default = "default_retention")]
    pub record_retention_blocks: u64,
    /// Largest `prompt_tokens + max_tokens` of one request.
    #[serde(default = "default_max_request_tokens")]
    pub max_request_tokens: u64,
    /// Blocks a dispute stays open for votes (SPEC `dispute_blocks`).
    #[serde(default = "default_dispute_blocks")]
    pub dispute_blocks: u64,
    /// Upheld disputes in one epoch that make an executor INVALID (SPEC
    /// `invalid_streak`).
    #[serde(default = "default_invalid_streak")]
    pub invalid_streak: u64,
}

fn default_dispute_blocks() -> u64 {
    20
}

fn default_invalid_streak() -> u64 {
    5
}

fn default_draw_window() -> u64 {
    20
}

fn default_dead_after() -> u64 {
    3
}

fn default_retention() -> u64 {
    2 * 17_280
}

fn default_max_request_tokens() -> u64 {
    32_768
}

impl Default for InferenceParams {
    fn default() -> Self {
        InferenceParams {
            inference_timeout_blocks: 20,
            block_token_capacity: 1_000_000,
            utilisation_low_bps: 4_000,
            utilisation_high_bps: 6_000,
            max_price_step_bps: 200,
            draw_window_blocks: default_draw_window(),
            dead_after_misses: default_dead_after(),
            record_retention_blocks: default_retention(),
            max_request_tokens: default_max_request_tokens(),
            dispute_blocks: default_dispute_blocks(),
            invalid_streak: default_invalid_streak(),
        }
    }
}

impl InferenceParams {
    /// The devnet's: records kept two 60-block epochs.
    pub fn devnet() -> Self {
        InferenceParams {
            record_retention_blocks: 120,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.inference_timeout_blocks == 0 {
            return Err("inference.params.inference_timeout_blocks must be at least 1".into());
        }
        if self.block_token_capacity == 0 {
            return Err("inference.params.block_token_capacity must be at least 1 token".into());
        }
        if self.utilisation_low_bps >= self.utilisation_high_bps
            || self.utilisation_high_bps >= 10_000
            || self.utilisation_low_bps == 0
        {
            return Err(format!(
                "inference.params: need 0 < utilisation_low_bps < utilisation_high_bps < 10000, got {} and {}",
                self.utilisation_low_bps, self.utilisation_high_bps
            ));
        }
        if self.max_price_step_bps == 0 || self.max_price_step_bps >= 10_000 {
            return Err(format!(
                "inference.params.max_price_step_bps must be in 1..10000, got {}",
                self.max_price_step_bps
            ));
        }
        if self.draw_window_blocks == 0 || self.draw_window_blocks > 1_000 {
            return Err(format!(
                "inference.params.draw_window_blocks must be in 1..=1000, got {}",
                self.draw_window_blocks
            ));
        }
        if self.dead_after_misses == 0 {
            return Err("inference.params.dead_after_misses must be at least 1".into());
        }
        if self.record_retention_blocks < self.inference_timeout_blocks {
            return Err(format!(
                "inference.params.record_retention_blocks ({}) must be at least inference_timeout_blocks ({})",
                self.record_retention_blocks, self.inference_timeout_blocks
            ));
        }
        if self.dispute_blocks == 0 || self.invalid_streak == 0 {
            return Err(
                "inference.params: dispute_blocks and invalid_streak must be at least 1".into(),
            );
        }
        if self.max_request_tokens == 0 || self.max_request_tokens > 1 << 24 {
            return Err(format!(
                "inference.params.max_request_tokens must be in 1..=16777216, got {}",
                self.max_request_tokens
            ));
        }
        Ok(())
    }
}
