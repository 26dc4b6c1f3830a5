//! Authz parameters (`app_state.authz.params`, stored as JSON at `authz/params`).

/// The ML-ops fee allowance of SPEC §2: transactions the ML operational key
/// sends through its grant are fee-exempt, per host, up to a count and a gas
/// budget per epoch and a gas budget per block; each such transaction's gas
/// limit is capped. Only hosts with weight in force or a self-bond of at
/// least staking's `min_self_bond` (and above zero) get the allowance.
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
    /// Fee-exempt gas (the sum of gas limits) per host per epoch.
    #[serde(default = "default_free_gas_per_epoch")]
    pub ml_ops_free_gas_per_epoch: u64,
    /// Fee-exempt gas per host per block: its share of a block is at most
    /// this over the block's `max_gas`.
    #[serde(default = "default_free_gas_per_block")]
    pub ml_ops_free_gas_per_block: u64,
    /// The largest gas limit a fee-exempt transaction may ask for.
    #[serde(default = "default_max_free_gas_per_tx")]
    pub ml_ops_max_free_gas_per_tx: u64,
}

fn default_free_gas_per_epoch() -> u64 {
    400_000_000
}

fn default_free_gas_per_block() -> u64 {
    10_000_000
}

fn default_max_free_gas_per_tx() -> u64 {
    10_000_000
}

impl Default for AuthzParams {
    /// Mainnet-like default.
    fn default() -> Self {
        AuthzParams {
            ml_ops_free_txs_per_epoch: 2_000,
            ml_ops_free_gas_per_epoch: default_free_gas_per_epoch(),
            ml_ops_free_gas_per_block: default_free_gas_per_block(),
            ml_ops_max_free_gas_per_tx: default_max_free_gas_per_tx(),
        }
    }
}

impl AuthzParams {
    pub fn devnet() -> Self {
        AuthzParams {
            ml_ops_free_txs_per_epoch: 500,
            ml_ops_free_gas_per_epoch: 200_000_000,
            ml_ops_free_gas_per_block: default_free_gas_per_block(),
            ml_ops_max_free_gas_per_tx: default_max_free_gas_per_tx(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.ml_ops_max_free_gas_per_tx > self.ml_ops_free_gas_per_block {
            return Err("authz.params.ml_ops_max_free_gas_per_tx must not exceed ml_ops_free_gas_per_block (such a tx could never be fee-free)".into());
        }
        Ok(())
    }
}
