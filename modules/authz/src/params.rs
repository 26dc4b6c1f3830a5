//! Authz parameters (`app_state.authz.params`, stored as JSON at `authz/params`).

/// The ML-ops fee allowance of SPEC §2: transactions the ML operational key
/// sends through its grant are fee-exempt up to this many per epoch per host.
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
pub struct AuthzParams {
    /// Fee-exempt ML-ops transactions per host per epoch; 0 disables the allowance.
    pub ml_ops_free_txs_per_epoch: u64,
}

impl Default for AuthzParams {
    /// Mainnet-like default.
    fn default() -> Self {
        AuthzParams {
            ml_ops_free_txs_per_epoch: 2_000,
        }
    }
}

impl AuthzParams {
    pub fn devnet() -> Self {
        AuthzParams {
            ml_ops_free_txs_per_epoch: 500,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
