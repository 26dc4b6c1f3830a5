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
    /// Recomputation tolerance on `|d − d_q|`, in millionths (voters apply it).
    pub sprint_tolerance_micro: u64,
    /// How far above `r_target` a recomputed distance may lie and the leaf
    /// still count as a share, in millionths: bounded by the measured
    /// cross-device distance error, never the (larger) vote tolerance, so
    /// near-miss nonces cannot be claimed as shares.
    pub share_slack_micro: u64,
}

impl Default for SprintParams {
    fn default() -> Self {
        SprintParams {
            preset: "mainnet".into(),
            sprint_samples: 200,
            sprint_committee: 8,
            r_target_micro: 1_391_480,
            sprint_tolerance_micro: kiln_sprint_protocol::verdict::TOLERANCE_MICRO_DEFAULT,
            share_slack_micro: kiln_sprint_protocol::verdict::SHARE_SLACK_MICRO_DEFAULT,
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
        if self.share_slack_micro > self.sprint_tolerance_micro {
            return Err(format!(
                "sprint.params.share_slack_micro ({}) must not exceed sprint_tolerance_micro ({}): the slack is bounded by the cross-device error, not the vote tolerance",
                self.share_slack_micro, self.sprint_tolerance_micro
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_slack_above_the_tolerance_is_refused() {
        assert!(SprintParams::default().validate().is_ok());
        assert!(SprintParams::devnet().validate().is_ok());
        let p = SprintParams {
            share_slack_micro: 2_001,
            ..SprintParams::devnet()
        };
        let e = p.validate().unwrap_err();
        assert!(e.contains("share_slack_micro"), "{e}");
    }
}
