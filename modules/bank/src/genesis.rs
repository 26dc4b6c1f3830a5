//! Genesis state of auth and bank, as it appears under `app_state.auth` and
//! `app_state.bank` in genesis.json.

use kiln_framework::{Address, Coin, Coins};
use kiln_state::StateWrite;

use crate::params::AuthParams;
use crate::state::{AuthWriteExt, BankExt};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthGenesis {
    #[serde(default)]
    pub params: AuthParams,
    /// Accounts that exist at genesis even without a balance.
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankGenesis {
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    pub address: Address,
    pub coins: Vec<Coin>,
}

impl AuthGenesis {
    pub fn validate(&self) -> Result<(), String> {
        self.params.validate()?;
        let mut seen = std::collections::BTreeSet::new();
        for account in &self.accounts {
            if !seen.insert(account.address) {
                return Err(format!(
                    "auth.accounts: duplicate account {}",
                    account.address
                ));
            }
        }
        Ok(())
    }
}

impl BankGenesis {
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut supply: std::collections::BTreeMap<&str, u128> = std::collections::BTreeMap::new();
        for balance in &self.balances {
            if !seen.insert(balance.address) {
                return Err(format!(
                    "bank.balances: duplicate entry for {}",
                    balance.address
                ));
            }
            for coin in &balance.coins {
                kiln_framework::coin::validate_denom(&coin.denom)
                    .map_err(|e| format!("bank.balances[{}]: {e}", balance.address))?;
                let total = supply.entry(coin.denom.as_str()).or_insert(0);
                *total = total.checked_add(coin.amount).ok_or_else(|| {
                    format!("bank.balances: total supply of {} overflows", coin.denom)
                })?;
            }
        }
        Ok(())
    }
}

/// Writes auth and bank genesis into `state`. Accounts are numbered in the
/// order they appear (explicit accounts first, then balances), so every node
/// assigns the same numbers.
pub fn init_genesis<S: StateWrite>(
    state: &mut S,
    auth: &AuthGenesis,
    bank: &BankGenesis,
) -> Result<(), String> {
    auth.validate()?;
    bank.validate()?;
    state.set_auth_params(&auth.params).map_err(|e| e.log)?;
    for account in &auth.accounts {
        state.ensure_account(&account.address).map_err(|e| e.log)?;
    }
    for balance in &bank.balances {
        let coins = Coins::normalize(balance.coins.clone()).map_err(|e| e.log)?;
        state
            .mint(&balance.address, &coins)
            .map_err(|e| format!("bank.balances[{}]: {}", balance.address, e.log))?;
    }
    state
        .ensure_account(&Address::module(crate::FEE_COLLECTOR))
        .map_err(|e| e.log)?;
    Ok(())
}

/// Auth and bank as one component: genesis only (no block hooks).
pub struct Bank;

/// `app_state.auth` and `app_state.bank`, which the bank component writes together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BankInit {
    pub auth: AuthGenesis,
    pub bank: BankGenesis,
}

impl kiln_framework::Component for Bank {
    const NAME: &'static str = "bank";
    type Genesis = BankInit;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &BankInit,
        _ctx: &kiln_framework::GenesisCtx,
    ) -> kiln_framework::TxResult<()> {
        init_genesis(state, &genesis.auth, &genesis.bank)
            .map_err(kiln_framework::TxError::invalid_request)
    }
}
