//! JSON queries of the sprint: `/kiln.sprint.v1.Query/Params`, `/Result`
//! (data: `{"epoch":N,"host":"kiln1…"}`) and `/Duties` (data:
//! `{"epoch":N,"address":"kiln1…"[,"ml_node":"id"]}`: everything a worker needs to resume an
//! epoch from chain state alone). The answer types derive `Deserialize` so
//! clients read them typed. (Hosts and weights are answered by `kiln-hosts`
//! and `kiln-staking` under their historical `kiln.sprint.v1` paths.)

use kiln_framework::query::json;
use kiln_framework::{Address, TxError, TxResult};
use kiln_state::StateRead;

use kiln_staking::StakingExt;

use crate::{keys, state};

pub const PARAMS_PATH: &str = "/kiln.sprint.v1.Query/Params";
pub const RESULT_PATH: &str = "/kiln.sprint.v1.Query/Result";
pub const DUTIES_PATH: &str = "/kiln.sprint.v1.Query/Duties";

pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        PARAMS_PATH => state::sprint_params(state).and_then(|p| json(&p)),
        RESULT_PATH => result(state, data),
        DUTIES_PATH => duties(state, data),
        _ => return None,
    };
    Some(result)
}

fn result<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Req {
        epoch: u64,
        host: Address,
    }
    let req: Req = serde_json::from_slice(data).map_err(|e| {
        TxError::invalid_request(format!("expected {{\"epoch\":N,\"host\":\"kiln1…\"}}: {e}"))
    })?;
    match state::result(state, req.epoch, &req.host)? {
        Some(v) => json(&v),
        None => Err(TxError::key_not_found(format!(
            "no settled result for {} in epoch {}",
            req.host, req.epoch
        ))),
    }
}

/// One opening a voter must vote on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Duty {
    pub host: Address,
    pub leaves: Vec<state::Opened>,
    pub vote_committed: bool,
    pub vote_revealed: bool,
}

/// A sprint unit's own progress in an epoch (the host's own worker, or the
/// ML node the request names) and the openings its host must validate (the
/// leaves of all of that host's units, in nonce order).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Duties {
    pub epoch: u64,
    pub address: Address,
    pub commitment: Option<state::Commitment>,
    /// The host revealed the secret behind its commitment's `secret_hash`.
    #[serde(default)]
    pub secret_revealed: bool,
    /// Hex of the epoch's beacon, once the challenge block has executed; the
    /// host's challenge is `SHA256(beacon ‖ addr)`.
    #[serde(default)]
    pub beacon: Option<String>,
    pub opened: bool,
    /// Openings whose committee this address sits on (assigned when the vote
    /// stages begin; empty before).
    pub duties: Vec<Duty>,
    /// Escalated openings this address must judge in the escalation stages
    /// (every host with weight in force, except the escalated host).
    #[serde(default)]
    pub escalations: Vec<Duty>,
    pub result: Option<state::EpochResult>,
}

fn duties<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Req {
        epoch: u64,
        address: Address,
        /// The sprint unit whose own progress to answer: an ML node of the
        /// host, or (absent/empty) the host's own worker.
        #[serde(default)]
        ml_node: String,
    }
    let req: Req = serde_json::from_slice(data).map_err(|e| {
        TxError::invalid_request(format!(
            "expected {{\"epoch\":N,\"address\":\"kiln1…\"[,\"ml_node\":\"id\"]}}: {e}"
        ))
    })?;
    let node = req.ml_node.as_str();
    // Read from the stored assignment: O(duties), never a weight scan.
    let mut duties = Vec::new();
    for host in state::duties_of(state, req.epoch, &req.address)? {
        let Some(leaves) = state::host_opened_leaves(state, req.epoch, &host)? else {
            continue;
        };
        duties.push(Duty {
            host,
            leaves,
            vote_committed: state
                .get_raw(&keys::vote_commit(req.epoch, &host, &req.address))?
                .is_some(),
            vote_revealed: state
                .get_raw(&keys::vote_reveal(req.epoch, &host, &req.address))?
                .is_some(),
        });
    }
    let mut escalations = Vec::new();
    if state.weight_in_force(&req.address)? > 0 {
        for host in state::escalated_hosts(state, req.epoch)? {
            if host == req.address {
                continue;
            }
            let Some(leaves) = state::host_opened_leaves(state, req.epoch, &host)? else {
                continue;
            };
            escalations.push(Duty {
                host,
                leaves,
                vote_committed: state
                    .get_raw(&keys::escalation_commit(req.epoch, &host, &req.address))?
                    .is_some(),
                vote_revealed: state
                    .get_raw(&keys::escalation_reveal(req.epoch, &host, &req.address))?
                    .is_some(),
            });
        }
    }
    let value = Duties {
        epoch: req.epoch,
        address: req.address,
        commitment: state::unit_commitment(state, req.epoch, &req.address, node)?,
        secret_revealed: crate::beacon::revealed_secret(state, req.epoch, &req.address, node)?
            .is_some(),
        beacon: crate::beacon::beacon(state, req.epoch)?.map(hex::encode),
        opened: state::unit_opened(state, req.epoch, &req.address, node)?.is_some(),
        duties,
        escalations,
        result: state::result(state, req.epoch, &req.address)?,
    };
    json(&value)
}
