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
    /// Base committee size `c0` (at least 1; genesis validation refuses 0).
    /// Each opening's committee has `c0 + ⌈log₃ h⌉` members for `h` opened
    /// hosts (see [`committee_size`]), so the chance that any fabricated
    /// claim of the epoch meets an all-coalition committee stays ≤ (1/3)^c0
    /// however many claims a coalition with ≤ 1/3 of the weight makes
    /// (README, "Sybil lottery"); when fewer hosts are eligible, every
    /// eligible host votes.
    pub sprint_committee: u32,
    /// Share threshold on the distance, in millionths.
    pub r_target_micro: u64,
    /// Recomputation tolerance on `|d − d_q|`, in millionths (voters apply it).
    pub sprint_tolerance_micro: u64,
    /// Bond (ukiln) locked from the host's account by its first commitment of
    /// an epoch; returned at settle when accepted, burned when rejected or
    /// unopened.
    pub commit_bond: u64,
    /// A host's raw weight is at most `previous × max_weight_growth_bps /
    /// 10 000 + new_host_weight_cap` (20 000 = 2×).
    pub max_weight_growth_bps: u64,
    /// The additive term of the growth cap: all a host without weight can
    /// gain in one epoch.
    pub new_host_weight_cap: u64,
    /// How far above `r_target` a recomputed distance may lie and the leaf
    /// still count as a share, in millionths: bounded by the measured
    /// cross-device distance error, never the (larger) vote tolerance, so
    /// near-miss nonces cannot be claimed as shares.
    pub share_slack_micro: u64,
    /// Most hosts that may commit in one epoch. Hosts with weight in force
    /// are always admitted; a host without weight is refused once the
    /// epoch's new hosts would take the total past this. Every host that
    /// commits costs the tally a bounded amount of work (committee draw,
    /// settle), so this bounds that work per block; incumbents never exceed
    /// it (they were last epoch's admitted hosts), so neither does the total.
    #[serde(default = "default_max_hosts_per_epoch")]
    pub max_hosts_per_epoch: u32,
}

/// The default `max_hosts_per_epoch`: at ~6.5 µs of settle per host
/// (README, "Settle cost") the settle block stays under ~0.1 s.
pub const DEFAULT_MAX_HOSTS_PER_EPOCH: u32 = 10_000;
/// Largest accepted `max_hosts_per_epoch`.
pub const MAX_HOSTS_PER_EPOCH: u32 = 1_000_000;

fn default_max_hosts_per_epoch() -> u32 {
    DEFAULT_MAX_HOSTS_PER_EPOCH
}

impl Default for SprintParams {
    fn default() -> Self {
        SprintParams {
            preset: "mainnet".into(),
            sprint_samples: 200,
            sprint_committee: 9,
            r_target_micro: 1_391_480,
            sprint_tolerance_micro: kiln_sprint_protocol::verdict::TOLERANCE_MICRO_DEFAULT,
            share_slack_micro: kiln_sprint_protocol::verdict::SHARE_SLACK_MICRO_DEFAULT,
            commit_bond: 10_000_000,
            max_weight_growth_bps: 20_000,
            new_host_weight_cap: 1_000,
            max_hosts_per_epoch: DEFAULT_MAX_HOSTS_PER_EPOCH,
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
            commit_bond: 1_000_000,
            // Devnet hosts start from genesis weights of ~100 and a CPU
            // sprint finds a few hundred to a few thousand shares: the cap
            // must let the first settle take them in (it still bounds a
            // jump to 2× + 100 000).
            new_host_weight_cap: 100_000,
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
        if self.new_host_weight_cap == 0 {
            return Err("sprint.params.new_host_weight_cap must be positive (or no host could ever gain weight)".into());
        }
        if !(1..=MAX_HOSTS_PER_EPOCH).contains(&self.max_hosts_per_epoch) {
            return Err(format!(
                "sprint.params.max_hosts_per_epoch must be in 1..={MAX_HOSTS_PER_EPOCH}, got {}",
                self.max_hosts_per_epoch
            ));
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

/// Members of each committee in an epoch with `opened` opened hosts: `base +
/// ⌈log₃ opened⌉` (0 stays 0: everyone). A coalition with weight q ≤ 1/3 gets
/// an all-coalition committee with probability ≤ q^size per claim, and makes
/// at most `opened` claims, so its chance per epoch is ≤ opened · 3^−size ≤
/// 3^−base.
pub fn committee_size(base: u32, opened: u64) -> u32 {
    if base == 0 {
        return 0;
    }
    let mut extra = 0u32;
    let mut reach: u64 = 1;
    while reach < opened {
        reach = reach.saturating_mul(3);
        extra += 1;
    }
    base.saturating_add(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committee_grows_by_one_member_per_tripling_of_opened_hosts() {
        assert_eq!(committee_size(0, 1_000), 0);
        assert_eq!(committee_size(9, 0), 9);
        assert_eq!(committee_size(9, 1), 9);
        assert_eq!(committee_size(9, 3), 10);
        assert_eq!(committee_size(9, 4), 11);
        assert_eq!(committee_size(9, 1_000), 16);
        assert_eq!(committee_size(9, 10_000), 18);
    }

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
