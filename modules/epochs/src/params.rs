//! Epoch parameters (SPEC §3): mainnet-like defaults, devnet values via [`EpochParams::devnet`].

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
pub struct EpochParams {
    pub epoch_length: u64,
    pub sprint_blocks: u64,
    pub commit_grace: u64,
    /// Blocks after the commit deadline in which hosts reveal their secrets
    /// (the challenge block follows them).
    pub secret_reveal_blocks: u64,
    pub open_blocks: u64,
    pub validation_blocks: u64,
    /// Blocks of the escalation stages (commit, then reveal: split in half
    /// like validation) between the vote reveal and the settle.
    pub escalation_blocks: u64,
}

impl Default for EpochParams {
    fn default() -> Self {
        EpochParams {
            epoch_length: 17_280,
            sprint_blocks: 60,
            commit_grace: 5,
            secret_reveal_blocks: 5,
            open_blocks: 10,
            validation_blocks: 20,
            escalation_blocks: 10,
        }
    }
}

impl EpochParams {
    pub fn devnet() -> Self {
        EpochParams {
            epoch_length: 60,
            sprint_blocks: 10,
            commit_grace: 2,
            secret_reveal_blocks: 2,
            open_blocks: 3,
            validation_blocks: 5,
            escalation_blocks: 4,
        }
    }

    /// Blocks used by the sprint-to-settle stages; the rest is inference.
    pub fn busy_blocks(&self) -> Option<u64> {
        self.sprint_blocks
            .checked_add(self.commit_grace)?
            .checked_add(self.secret_reveal_blocks)?
            .checked_add(1)? // challenge
            .checked_add(self.open_blocks)?
            .checked_add(self.validation_blocks)?
            .checked_add(self.escalation_blocks)?
            .checked_add(1) // settle
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.sprint_blocks == 0 || self.open_blocks == 0 || self.secret_reveal_blocks == 0 {
            return Err(
                "epochs.params: sprint_blocks, secret_reveal_blocks and open_blocks must be positive"
                    .into(),
            );
        }
        if self.validation_blocks < 2 {
            return Err(
                "epochs.params: validation_blocks must be at least 2 (vote commit, then reveal)"
                    .into(),
            );
        }
        if self.escalation_blocks < 2 {
            return Err(
                "epochs.params: escalation_blocks must be at least 2 (escalation commit, then reveal)"
                    .into(),
            );
        }
        match self.busy_blocks() {
            Some(busy) if busy <= self.epoch_length => Ok(()),
            _ => Err(format!("epochs.params: epoch_length {} is shorter than the sprint, open, validation, escalation and settle stages", self.epoch_length)),
        }
    }

    pub fn reveal_blocks(&self) -> u64 {
        self.validation_blocks / 2
    }

    pub fn escalation_reveal_blocks(&self) -> u64 {
        self.escalation_blocks / 2
    }
}
