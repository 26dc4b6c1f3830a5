//! `app_state.hosts`: the genesis hosts. Each carries the weight it holds in
//! epoch 1 (before any sprint settles); the app hands those weights to the
//! staking module, which owns weights in force.

use kiln_framework::{Address, Component, GenesisCtx, TxResult};
use kiln_state::StateWrite;

use crate::state::{put_host, Host};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsGenesis {
    #[serde(default)]
    pub hosts: Vec<GenesisHost>,
    /// ML nodes the genesis hosts start with (a network launched with its
    /// machines declared), in force from the first block: lanes from 1 in
    /// list order per host.
    #[serde(default)]
    pub ml_nodes: Vec<GenesisMlNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisMlNode {
    /// The genesis host it works for.
    pub host: Address,
    pub id: String,
    pub worker_url: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub hardware: String,
    /// Its ML operational key (grant it the ML-ops messages in genesis too).
    pub ml_key: Address,
    /// Enabled from the first block (default), or declared disabled.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
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

impl HostsGenesis {
    pub fn validate(&self) -> Result<(), String> {
        let mut owners = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let key = hex::decode(&h.consensus_pubkey)
                .map_err(|_| format!("hosts.hosts[{i}].consensus_pubkey is not hex"))?;
            crate::msgs::validate_host_fields(&h.worker_url, &key, &h.models, &h.hardware, true)
                .map_err(|e| format!("hosts.hosts[{i}]: {}", e.log))?;
            if !owners.insert(h.owner) || !keys.insert(key) {
                return Err(format!(
                    "hosts.hosts[{i}]: duplicate owner or consensus key"
                ));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut ml_keys = std::collections::BTreeSet::new();
        let mut per_host: std::collections::BTreeMap<Address, usize> = Default::default();
        for (i, n) in self.ml_nodes.iter().enumerate() {
            let at = |e: String| format!("hosts.ml_nodes[{i}]: {e}");
            if !owners.contains(&n.host) {
                return Err(at(format!("{} is not a genesis host", n.host)));
            }
            crate::mlnodes::check_id(&n.id).map_err(|e| at(e.log))?;
            crate::msgs::validate_host_fields(&n.worker_url, &[], &n.models, &n.hardware, false)
                .map_err(|e| at(e.log))?;
            if n.ml_key == n.host {
                return Err(at("ml_key must not be the host's account key".into()));
            }
            if !ids.insert((n.host, n.id.clone())) || !ml_keys.insert((n.host, n.ml_key)) {
                return Err(at(format!(
                    "the host already has an ML node {:?} or one with key {}",
                    n.id, n.ml_key
                )));
            }
            let count = per_host.entry(n.host).or_default();
            *count += 1;
            if *count > crate::mlnodes::MAX_ML_NODES {
                return Err(at(format!(
                    "more than {} ML nodes for {}",
                    crate::mlnodes::MAX_ML_NODES,
                    n.host
                )));
            }
        }
        Ok(())
    }

    /// The epoch-1 weight of each genesis host that has one, in list order.
    pub fn initial_weights(&self) -> Vec<(Address, u64)> {
        self.hosts
            .iter()
            .filter(|h| h.weight > 0)
            .map(|h| (h.owner, h.weight))
            .collect()
    }
}

/// The host registry as a component: genesis, and at each epoch start the
/// ML nodes' scheduled switches ([`crate::mlnodes::apply_pending`]).
pub struct Hosts;

impl Component for Hosts {
    const NAME: &'static str = "hosts";
    type Genesis = HostsGenesis;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &HostsGenesis,
        _ctx: &GenesisCtx,
    ) -> TxResult<()> {
        genesis
            .validate()
            .map_err(kiln_framework::TxError::invalid_request)?;
        for h in &genesis.hosts {
            let host = Host {
                owner: h.owner,
                worker_url: h.worker_url.clone(),
                consensus_pubkey: h.consensus_pubkey.to_lowercase(),
                models: h.models.clone(),
                hardware: h.hardware.clone(),
                registered_height: 0,
            };
            put_host(state, &host)?;
        }
        for n in &genesis.ml_nodes {
            crate::mlnodes::put_genesis_node(state, n)?;
        }
        Ok(())
    }

    fn on_stage_start<S: StateWrite>(
        state: &mut S,
        block: &kiln_framework::BlockInfo,
        epoch: &kiln_framework::EpochInfo,
    ) -> TxResult<Vec<kiln_framework::Event>> {
        if epoch.stage != kiln_framework::Stage::Sprint {
            return Ok(Vec::new());
        }
        crate::mlnodes::apply_pending(state, block.height)
    }
}
