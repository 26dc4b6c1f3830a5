//! Staking parameters: the power cap of SPEC §4 and the collateral of §7.

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
    /// Share of a host's raw weight it keeps without collateral (SPEC
    /// `free_share`), basis points.
    #[serde(default = "default_free_share")]
    pub free_share_bps: u32,
    /// ukiln of backing (self-bond + delegations) per unit of weight above
    /// the free share.
    #[serde(
        default = "default_collateral_per_weight",
        with = "kiln_framework::serde_u128"
    )]
    pub collateral_per_weight: u128,
    /// Epochs (from genesis) during which collateral is not required.
    #[serde(default = "default_grace_epochs")]
    pub grace_epochs: u64,
    /// ukiln a host with delegators must keep bonded itself.
    #[serde(default, with = "kiln_framework::serde_u128")]
    pub min_self_bond: u128,
    /// Settles an unbonding waits (still slashable) before it is paid.
    #[serde(default = "default_unbonding_epochs")]
    pub unbonding_epochs: u64,
    /// Largest commission change per epoch, basis points.
    #[serde(default = "default_max_commission_change")]
    pub max_commission_change_bps: u32,
}

fn default_free_share() -> u32 {
    2_000
}

fn default_collateral_per_weight() -> u128 {
    1_000_000
}

fn default_grace_epochs() -> u64 {
    180
}

fn default_unbonding_epochs() -> u64 {
    1
}

fn default_max_commission_change() -> u32 {
    100
}

impl Default for StakingParams {
    fn default() -> Self {
        StakingParams {
            min_hosts_for_cap: 5,
            max_power_share_bps: 2_500,
            free_share_bps: default_free_share(),
            collateral_per_weight: default_collateral_per_weight(),
            grace_epochs: default_grace_epochs(),
            min_self_bond: 0,
            unbonding_epochs: default_unbonding_epochs(),
            max_commission_change_bps: default_max_commission_change(),
        }
    }
}

impl StakingParams {
    pub fn validate(&self) -> Result<(), String> {
        if self.free_share_bps > 10_000 || self.max_commission_change_bps > 10_000 {
            return Err(
                "staking.params: free_share_bps and max_commission_change_bps must be at most 10000"
                    .into(),
            );
        }
        if self.max_power_share_bps == 0 || self.max_power_share_bps > 10_000 {
            return Err("staking.params.max_power_share_bps must be in 1..=10000".into());
        }
        if u64::from(self.max_power_share_bps) * u64::from(self.min_hosts_for_cap.max(1)) < 10_000 {
            return Err("staking.params: min_hosts_for_cap × max_power_share must reach 100%, or the cap cannot be met".into());
        }
        Ok(())
    }
}
