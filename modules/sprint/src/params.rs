//! Sprint parameters (SPEC §4), mainnet-like defaults and devnet values.

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
pub struct SprintParams {
    /// Model preset workers must run this epoch (`devnet` or `mainnet`).
    pub preset: String,
    /// Leaves each host must open: `k = min(count, sprint_samples)`.
    pub sprint_samples: u32,
    /// Voters per opening; 0 = every host with weight.
    pub sprint_committee: u32,
    /// Share threshold on the distance, in millionths.
    pub r_target_micro: u64,
    /// Recomputation tolerance, in millionths (voters apply it).
    pub sprint_tolerance_micro: u64,
}

impl Default for SprintParams {
    fn default() -> Self {
        SprintParams {
            preset: "mainnet".into(),
            sprint_samples: 200,
            sprint_committee: 8,
            r_target_micro: 1_391_480,
            sprint_tolerance_micro: 2_000,
        }
    }
}

impl SprintParams {
    pub fn devnet() -> Self {
        SprintParams {
            preset: "devnet".into(),
            sprint_samples: 16,
            sprint_committee: 0,
            r_target_micro: 1_346_000,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.sprint_samples == 0 {
            return Err("sprint.params.sprint_samples must be positive".into());
        }
        if self.preset.is_empty() {
            return Err("sprint.params.preset must name a model preset".into());
        }
        Ok(())
    }
}
