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
}

impl Default for InferenceParams {
    fn default() -> Self {
        InferenceParams {
            inference_timeout_blocks: 20,
            block_token_capacity: 1_000_000,
            utilisation_low_bps: 4_000,
            utilisation_high_bps: 6_000,
            max_price_step_bps: 200,
        }
    }
}

impl InferenceParams {
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
        Ok(())
    }
}
