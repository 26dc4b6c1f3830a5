//! The stage machine and its typed state access.

use kiln_framework::{Event, StateReadExt, StateWriteExt, TxResult};
use kiln_state::{StateRead, StateWrite};

use crate::keys;
use crate::params::EpochParams;

pub use kiln_framework::epoch::{EpochInfo, Stage};

impl EpochParams {
    /// Stage boundaries as offsets from the epoch start, in order; each entry
    /// is (stage, first offset). Saturating arithmetic: params are validated.
    fn boundaries(&self) -> [(Stage, u64); 11] {
        let commit_grace = self.sprint_blocks;
        let secret_reveal = self
            .sprint_blocks
            .saturating_add(self.commit_grace)
            .saturating_add(1);
        let challenge = secret_reveal.saturating_add(self.secret_reveal_blocks);
        let open = challenge.saturating_add(1);
        let vote_commit = open.saturating_add(self.open_blocks);
        let vote_reveal =
            vote_commit.saturating_add(self.validation_blocks.saturating_sub(self.reveal_blocks()));
        let escalation_commit = vote_commit.saturating_add(self.validation_blocks);
        let escalation_reveal = escalation_commit.saturating_add(
            self.escalation_blocks
                .saturating_sub(self.escalation_reveal_blocks()),
        );
        let settle = escalation_commit.saturating_add(self.escalation_blocks);
        let inference = settle.saturating_add(1);
        [
            (Stage::Sprint, 0),
            (Stage::CommitGrace, commit_grace),
            (Stage::SecretReveal, secret_reveal),
            (Stage::Challenge, challenge),
            (Stage::Open, open),
            (Stage::VoteCommit, vote_commit),
            (Stage::VoteReveal, vote_reveal),
            (Stage::EscalationCommit, escalation_commit),
            (Stage::EscalationReveal, escalation_reveal),
            (Stage::Settle, settle),
            (Stage::Inference, inference),
        ]
    }

    /// The height (within epoch `epoch`) at which `stage` begins, for a
    /// schedule whose epoch 1 starts at `first_height`.
    pub fn stage_height(&self, first_height: u64, epoch: u64, stage: Stage) -> u64 {
        self.stage_height_from(first_height, 1, epoch, stage)
    }

    /// [`Self::stage_height`] for a schedule anchored at `(first_height,
    /// first_epoch)`: epoch `first_epoch` starts at `first_height` (a
    /// governance change of the epoch params re-anchors the schedule at the
    /// epoch it takes effect in). Epochs before the anchor count as the anchor's.
    pub fn stage_height_from(
        &self,
        first_height: u64,
        first_epoch: u64,
        epoch: u64,
        stage: Stage,
    ) -> u64 {
        let start = first_height.saturating_add(
            epoch
                .saturating_sub(first_epoch.max(1))
                .saturating_mul(self.epoch_length),
        );
        let offset = self
            .boundaries()
            .iter()
            .find(|(s, _)| *s == stage)
            .map_or(0, |(_, o)| *o);
        start.saturating_add(offset)
    }

    /// The schedule position of `height` (heights below `first_height` count as epoch 1's start).
    pub fn info(&self, first_height: u64, height: u64) -> EpochInfo {
        self.info_from(first_height, 1, height)
    }

    /// [`Self::info`] for a schedule anchored at `(first_height,
    /// first_epoch)` (see [`Self::stage_height_from`]).
    pub fn info_from(&self, first_height: u64, first_epoch: u64, height: u64) -> EpochInfo {
        let length = self.epoch_length.max(1);
        let since = height.saturating_sub(first_height);
        let epochs_since = since / length;
        let epoch = first_epoch.max(1).saturating_add(epochs_since);
        let start_height = first_height.saturating_add(epochs_since.saturating_mul(length));
        let offset = since % length;
        let bounds = self.boundaries();
        let mut index = 0;
        for (i, (_, first)) in bounds.iter().enumerate() {
            if offset >= *first {
                index = i;
            }
        }
        let (stage, stage_offset) = bounds[index];
        let next_offset = bounds.get(index + 1).map_or(length, |(_, o)| *o);
        let next_stage_height = start_height.saturating_add(next_offset);
        EpochInfo {
            height,
            epoch,
            start_height,
            stage,
            stage_start: start_height.saturating_add(stage_offset),
            next_stage_height,
            blocks_to_next_stage: next_stage_height.saturating_sub(height),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochGenesis {
    #[serde(default)]
    pub params: EpochParams,
}

impl EpochGenesis {
    pub fn validate(&self) -> Result<(), String> {
        self.params.validate()
    }
}

pub trait EpochExt: StateRead {
    fn epoch_params(&self) -> TxResult<EpochParams> {
        Ok(self.get_value(keys::PARAMS)?.unwrap_or_default())
    }

    fn first_height(&self) -> TxResult<u64> {
        Ok(self.get_u64(keys::FIRST_HEIGHT)?.unwrap_or(1))
    }

    /// The epoch that starts at [`Self::first_height`] (1 unless a
    /// governance change of the epoch params re-anchored the schedule).
    fn first_epoch(&self) -> TxResult<u64> {
        Ok(self.get_u64(keys::FIRST_EPOCH)?.unwrap_or(1))
    }

    fn epoch_info(&self, height: u64) -> TxResult<EpochInfo> {
        Ok(self
            .epoch_params()?
            .info_from(self.first_height()?, self.first_epoch()?, height))
    }

    /// Hash of epoch `epoch`'s start block, once that block has executed.
    fn seed_block_hash(&self, epoch: u64) -> TxResult<Option<Vec<u8>>> {
        Ok(self.get_raw(&keys::seed_hash(epoch))?)
    }

    fn challenge_block_hash(&self, epoch: u64) -> TxResult<Option<Vec<u8>>> {
        Ok(self.get_raw(&keys::challenge_hash(epoch))?)
    }
}

impl<T: StateRead + ?Sized> EpochExt for T {}

pub fn init_genesis<S: StateWrite>(
    state: &mut S,
    genesis: &EpochGenesis,
    first_height: u64,
) -> Result<(), String> {
    genesis.validate()?;
    state
        .put_value(keys::PARAMS.to_vec(), &genesis.params)
        .map_err(|e| e.log)?;
    state.put_u64(keys::FIRST_HEIGHT.to_vec(), first_height);
    Ok(())
}

/// The epochs module as a component. It runs first: its [`begin_block`]
/// computes the block's [`EpochInfo`] every other component receives.
pub struct Epochs;

impl kiln_framework::Component for Epochs {
    const NAME: &'static str = "epochs";
    type Genesis = EpochGenesis;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &EpochGenesis,
        ctx: &kiln_framework::GenesisCtx,
    ) -> TxResult<()> {
        init_genesis(state, genesis, ctx.initial_height)
            .map_err(kiln_framework::TxError::invalid_request)
    }
}

/// Puts new epoch params in force at `height`, which must be the first
/// block of an epoch under the old params: the schedule is re-anchored so
/// that this epoch keeps its number and starts here under the new lengths
/// (heights before it keep the epochs they had).
pub fn apply_params<S: StateWrite>(
    state: &mut S,
    height: u64,
    params: &EpochParams,
) -> TxResult<()> {
    params
        .validate()
        .map_err(kiln_framework::TxError::invalid_request)?;
    let info = state.epoch_info(height)?;
    if info.start_height != height {
        return Err(kiln_framework::TxError::internal(format!(
            "epoch params may change only at an epoch start; {height} is inside epoch {}",
            info.epoch
        )));
    }
    state.put_value(keys::PARAMS.to_vec(), params)?;
    state.put_u64(keys::FIRST_HEIGHT.to_vec(), height);
    state.put_u64(keys::FIRST_EPOCH.to_vec(), info.epoch);
    Ok(())
}

/// Begin-block hook: records the seed and challenge block hashes and returns
/// the block's schedule position plus a `stage_changed` event when a stage begins.
pub fn begin_block<S: StateWrite>(
    state: &mut S,
    height: u64,
    block_hash: &[u8],
) -> TxResult<(EpochInfo, Option<Event>)> {
    let info = state.epoch_info(height)?;
    if info.stage_start == height {
        match info.stage {
            Stage::Sprint => state.put_raw(keys::seed_hash(info.epoch), block_hash.to_vec()),
            Stage::Challenge => {
                state.put_raw(keys::challenge_hash(info.epoch), block_hash.to_vec())
            }
            _ => {}
        }
        let event = Event::new("kiln.epochs.v1.EventStageChanged")
            .attr("epoch", info.epoch)
            .attr("stage", info.stage.as_str())
            .attr("height", height)
            .attr("next_stage_height", info.next_stage_height);
        return Ok((info, Some(event)));
    }
    Ok((info, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_schedule_matches_the_spec_table() {
        let p = EpochParams::devnet();
        p.validate().unwrap();
        let stage = |h| p.info(1, h).stage;
        assert_eq!(stage(1), Stage::Sprint);
        assert_eq!(stage(10), Stage::Sprint);
        assert_eq!(stage(11), Stage::CommitGrace);
        assert_eq!(stage(13), Stage::CommitGrace); // deadline = S + 10 + 2
        assert_eq!(
            (stage(14), stage(15)),
            (Stage::SecretReveal, Stage::SecretReveal)
        );
        assert_eq!(stage(16), Stage::Challenge);
        assert_eq!((stage(17), stage(19)), (Stage::Open, Stage::Open));
        assert_eq!(
            (stage(20), stage(22)),
            (Stage::VoteCommit, Stage::VoteCommit)
        );
        assert_eq!(
            (stage(23), stage(24)),
            (Stage::VoteReveal, Stage::VoteReveal)
        );
        assert_eq!(
            (stage(25), stage(26)),
            (Stage::EscalationCommit, Stage::EscalationCommit)
        );
        assert_eq!(
            (stage(27), stage(28)),
            (Stage::EscalationReveal, Stage::EscalationReveal)
        );
        assert_eq!(stage(29), Stage::Settle);
        assert_eq!((stage(30), stage(60)), (Stage::Inference, Stage::Inference));
        let next = p.info(1, 61);
        assert_eq!(
            (next.epoch, next.stage, next.start_height),
            (2, Stage::Sprint, 61)
        );
        let i = p.info(1, 5);
        assert_eq!((i.next_stage_height, i.blocks_to_next_stage), (11, 6));
        assert_eq!(p.stage_height(1, 2, Stage::Challenge), 76);
    }

    #[test]
    fn invalid_params_are_refused() {
        let mut p = EpochParams::devnet();
        p.epoch_length = 20;
        assert!(p.validate().is_err());
        p = EpochParams::devnet();
        p.validation_blocks = 1;
        assert!(p.validate().is_err());
        p = EpochParams::devnet();
        p.escalation_blocks = 1;
        assert!(p.validate().is_err());
        p = EpochParams::devnet();
        p.secret_reveal_blocks = 0;
        assert!(p.validate().is_err());
    }

    proptest::proptest! {
        #[test]
        fn stages_are_monotone_within_an_epoch(len in 30u64..200, first in 1u64..100, h in 0u64..2000) {
            let p = EpochParams { epoch_length: len, ..EpochParams::devnet() };
            let a = p.info(first, first + h);
            let b = p.info(first, first + h + 1);
            proptest::prop_assert!(b.epoch > a.epoch || (b.epoch == a.epoch && b.stage >= a.stage));
            proptest::prop_assert!(a.blocks_to_next_stage >= 1);
            proptest::prop_assert_eq!(a.start_height, p.stage_height(first, a.epoch, Stage::Sprint));
        }
    }
}
