//! Staking parameters: the power cap of SPEC §4 (collateral arrives later).

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
pub struct StakingParams {
    /// The power cap applies once this many hosts have weight.
    pub min_hosts_for_cap: u32,
    /// Largest share of total weight one host may hold, in basis points.
    pub max_power_share_bps: u32,
}

impl Default for StakingParams {
    fn default() -> Self {
        StakingParams {
            min_hosts_for_cap: 5,
            max_power_share_bps: 2_500,
        }
    }
}

impl StakingParams {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_power_share_bps == 0 || self.max_power_share_bps > 10_000 {
            return Err("staking.params.max_power_share_bps must be in 1..=10000".into());
        }
        if u64::from(self.max_power_share_bps) * u64::from(self.min_hosts_for_cap.max(1)) < 10_000 {
            return Err("staking.params: min_hosts_for_cap × max_power_share must reach 100%, or the cap cannot be met".into());
        }
        Ok(())
    }
}
