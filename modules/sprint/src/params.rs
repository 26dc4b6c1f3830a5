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
    /// Voters per opening (at least 1); when fewer hosts are eligible,
    /// every eligible host votes.
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

/// Largest accepted `sprint_samples` (openings per host; each costs a vote's recomputation).
pub const MAX_SPRINT_SAMPLES: u32 = 10_000;
/// Largest accepted `r_target_micro`: 2.0, the largest distance between unit vectors.
pub const MAX_R_TARGET_MICRO: u64 = 2_000_000;
/// Largest accepted `sprint_tolerance_micro`: 0.1.
pub const MAX_TOLERANCE_MICRO: u64 = 100_000;

impl SprintParams {
    pub fn devnet() -> Self {
        SprintParams {
            preset: "devnet".into(),
            sprint_samples: 16,
            // Every host votes on a devnet of up to 9 hosts (the committee
            // never includes the host itself).
            sprint_committee: 8,
            r_target_micro: 1_346_000,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_SPRINT_SAMPLES).contains(&self.sprint_samples) {
            return Err(format!(
                "sprint.params.sprint_samples must be in 1..={MAX_SPRINT_SAMPLES}, got {}",
                self.sprint_samples
            ));
        }
        if self.sprint_committee == 0 {
            return Err("sprint.params.sprint_committee must be at least 1 (voters per opening; every eligible host votes when fewer are eligible)".into());
        }
        if !(1..=MAX_R_TARGET_MICRO).contains(&self.r_target_micro) {
            return Err(format!(
                "sprint.params.r_target_micro must be in 1..={MAX_R_TARGET_MICRO} (a distance between unit vectors is at most 2), got {}",
                self.r_target_micro
            ));
        }
        if self.sprint_tolerance_micro > MAX_TOLERANCE_MICRO
            || self.sprint_tolerance_micro >= self.r_target_micro
        {
            return Err(format!(
                "sprint.params.sprint_tolerance_micro must be at most {MAX_TOLERANCE_MICRO} and below r_target_micro, got {}",
                self.sprint_tolerance_micro
            ));
        }
        if self.preset.is_empty() {
            return Err("sprint.params.preset must name a model preset".into());
        }
        Ok(())
    }
}
