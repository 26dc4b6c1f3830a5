//! The epoch vocabulary every component shares: the [`Stage`] a block is in
//! and its [`EpochInfo`] (SPEC §3). The `kiln-epochs` module owns the schedule
//! that computes them; components only read them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Sprint,
    CommitGrace,
    /// Hosts reveal the secrets behind their commitments' secret hashes.
    SecretReveal,
    Challenge,
    Open,
    VoteCommit,
    VoteReveal,
    /// Escalated hosts (a revealed `invalid` vote) are judged by every host
    /// with weight in force: commit-then-reveal, like the committee votes.
    EscalationCommit,
    EscalationReveal,
    Settle,
    Inference,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Sprint => "sprint",
            Stage::CommitGrace => "commit_grace",
            Stage::SecretReveal => "secret_reveal",
            Stage::Challenge => "challenge",
            Stage::Open => "open",
            Stage::VoteCommit => "vote_commit",
            Stage::VoteReveal => "vote_reveal",
            Stage::EscalationCommit => "escalation_commit",
            Stage::EscalationReveal => "escalation_reveal",
            Stage::Settle => "settle",
            Stage::Inference => "inference",
        }
    }

    /// True while `MsgSprintCommit` is accepted (up to and including the deadline).
    pub fn accepts_commits(self) -> bool {
        matches!(self, Stage::Sprint | Stage::CommitGrace)
    }
}

/// Where a height sits in the epoch schedule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EpochInfo {
    pub height: u64,
    pub epoch: u64,
    /// Height where this epoch started (its seed block).
    pub start_height: u64,
    pub stage: Stage,
    /// Height where the current stage began.
    pub stage_start: u64,
    /// Height where the next stage begins.
    pub next_stage_height: u64,
    pub blocks_to_next_stage: u64,
}
