//! `app_state.sprint`: params, genesis hosts and their epoch-1 weights.

use kiln_framework::{Address, StateWriteExt};
use kiln_state::StateWrite;

use crate::keys;
use crate::params::SprintParams;
use crate::state::Host;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SprintGenesis {
    #[serde(default)]
    pub params: SprintParams,
    #[serde(default)]
    pub hosts: Vec<GenesisHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisHost {
    pub owner: Address,
    pub worker_url: String,
    /// Hex of the 32-byte ed25519 consensus key.
    pub consensus_pubkey: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub hardware: String,
    /// Weight used in epoch 1 (before any sprint settles).
    pub weight: u64,
}

impl SprintGenesis {
    pub fn validate(&self) -> Result<(), String> {
        self.params.validate()?;
        let mut owners = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let key = hex::decode(&h.consensus_pubkey)
                .map_err(|_| format!("sprint.hosts[{i}].consensus_pubkey is not hex"))?;
            crate::msgs::validate_host_fields(&h.worker_url, &key, &h.models, &h.hardware, true)
                .map_err(|e| format!("sprint.hosts[{i}]: {}", e.log))?;
            if !owners.insert(h.owner) || !keys.insert(key) {
                return Err(format!(
                    "sprint.hosts[{i}]: duplicate owner or consensus key"
                ));
            }
        }
        Ok(())
    }
}

pub fn init_genesis<S: StateWrite>(state: &mut S, genesis: &SprintGenesis) -> Result<(), String> {
    genesis.validate()?;
    state
        .put_json(keys::PARAMS.to_vec(), &genesis.params)
        .map_err(|e| e.log)?;
    for h in &genesis.hosts {
        let host = Host {
            owner: h.owner,
            worker_url: h.worker_url.clone(),
            consensus_pubkey: h.consensus_pubkey.to_lowercase(),
            models: h.models.clone(),
            hardware: h.hardware.clone(),
            registered_height: 0,
        };
        state
            .put_json(keys::host(&h.owner), &host)
            .map_err(|e| e.log)?;
        state.put_raw(
            keys::by_consensus(&host.consensus_key_bytes()),
            h.owner.as_bytes().to_vec(),
        );
        if h.weight > 0 {
            state.put_u64(keys::weight(&h.owner), h.weight);
        }
    }
    Ok(())
}
