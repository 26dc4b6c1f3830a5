//! JSON queries of the registry: `/kiln.sprint.v1.Query/Hosts` (every host)
//! and `/kiln.sprint.v1.Query/Host` (data: bech32 address; with its ML
//! nodes and their states). The paths keep
//! their pre-split `kiln.sprint.v1` names so existing clients keep working.

use kiln_framework::query::{address_arg, json};
use kiln_framework::{TxError, TxResult};
use kiln_state::StateRead;

use crate::state::HostsExt;

pub const HOSTS_PATH: &str = "/kiln.sprint.v1.Query/Hosts";
pub const HOST_PATH: &str = "/kiln.sprint.v1.Query/Host";

fn ml_node_json(n: &crate::mlnodes::MlNode) -> serde_json::Value {
    serde_json::json!({
        "id": n.id,
        "state": n.state_name(),
        "enabled": n.enabled,
        "pending": n.pending,
        "lane": n.lane,
        "first_nonce": n.first_nonce().to_string(),
        "worker_url": n.worker_url,
        "models": n.models,
        "hardware": n.hardware,
        "ml_key": n.ml_key,
        "added_height": n.added_height,
    })
}

pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        HOSTS_PATH => state.hosts().and_then(|h| json(&h)),
        HOST_PATH => address_arg(data)
            .and_then(|a| state.host(&a))
            .and_then(|h| match h {
                Some(h) => {
                    let mut value =
                        serde_json::to_value(&h).map_err(|e| TxError::internal(e.to_string()))?;
                    if let Some(map) = value.as_object_mut() {
                        map.insert(
                            "ml_nodes".into(),
                            crate::mlnodes::ml_nodes(state, &h.owner)?
                                .iter()
                                .map(ml_node_json)
                                .collect(),
                        );
                    }
                    json(&value)
                }
                None => Err(TxError::key_not_found("no such host")),
            }),
        _ => return None,
    };
    Some(result)
}
