//! `abci_query` routing. Paths:
//! * gRPC-style service paths, request/response as Cosmos SDK protobuf
//!   (`/cosmos.auth.v1beta1.Query/Account`, `/cosmos.bank.v1beta1.Query/…`,
//!   `/cosmos.authz.v1beta1.Query/…`, `/cosmos.tx.v1beta1.Service/Simulate`);
//! * `/store/kiln/key` (data = raw key): the raw value, with a JMT proof
//!   against the app hash of that height when `prove=true`.
//!
//! `height = 0` means the latest committed height; older heights are served
//! while they are retained (see the store's pruning setting).

use cosmos_sdk_proto::cosmos::base::abci::v1beta1::{GasInfo, Result as AbciResult};
use cosmos_sdk_proto::cosmos::tx::v1beta1::{SimulateRequest, SimulateResponse};
use kiln_framework::{TxError, TxResult};
use prost::Message;
use tendermint_proto::v0_38::abci::{RequestQuery, ResponseQuery};
use tendermint_proto::v0_38::crypto::{ProofOp, ProofOps};

use crate::app::KilnApp;

/// Proof type name in `ProofOps` for a JMT (SHA-256) proof.
pub const PROOF_OP_TYPE: &str = "kiln:jmt:v1";

pub fn handle_query(app: &KilnApp, request: RequestQuery) -> ResponseQuery {
    let storage = app.storage();
    let latest = storage.latest_version().unwrap_or(0);
    let height = if request.height <= 0 {
        latest
    } else {
        u64::try_from(request.height).unwrap_or(0)
    };
    let error = |e: TxError, height: u64| ResponseQuery {
        code: e.code,
        log: e.log,
        codespace: e.codespace.to_string(),
        height: i64::try_from(height).unwrap_or(0),
        ..Default::default()
    };
    if height > latest {
        return error(
            TxError::invalid_request(format!(
                "height {height} is in the future; the latest height is {latest}"
            )),
            latest,
        );
    }
    let path = request.path.as_str();
    if path == "/cosmos.tx.v1beta1.Service/Simulate" {
        return match simulate(app, &request.data) {
            Ok(value) => ResponseQuery {
                value: value.into(),
                height: i64::try_from(latest).unwrap_or(0),
                ..Default::default()
            },
            Err(e) => error(e, latest),
        };
    }
    if latest == 0 {
        return error(
            TxError::invalid_request("no block has been committed yet"),
            0,
        );
    }
    let snapshot = match storage.snapshot(height) {
        Ok(s) => s,
        Err(e) => {
            return error(
                TxError::invalid_request(format!("height {height} is not available: {e}")),
                height,
            )
        }
    };
    if path == "/store/kiln/key" || path == "/store/key" {
        let key = request.data.to_vec();
        if request.prove {
            return match storage.get_with_proof(&key, height) {
                Ok((value, proof)) => ResponseQuery {
                    key: key.clone().into(),
                    value: value.unwrap_or_default().into(),
                    proof_ops: Some(ProofOps {
                        ops: vec![ProofOp {
                            r#type: PROOF_OP_TYPE.to_string(),
                            key,
                            data: proof,
                        }],
                    }),
                    height: i64::try_from(height).unwrap_or(0),
                    ..Default::default()
                },
                Err(e) => error(TxError::internal(e.to_string()), height),
            };
        }
        return match kiln_store::StateRead::get_raw(&snapshot, &key) {
            Ok(value) => ResponseQuery {
                key: key.into(),
                value: value.unwrap_or_default().into(),
                height: i64::try_from(height).unwrap_or(0),
                ..Default::default()
            },
            Err(e) => error(TxError::internal(e.to_string()), height),
        };
    }
    if path == "/kiln.epochs.v1.Query/Epoch" {
        // JSON response: the schedule position of the queried height, the
        // params (so a worker can compute every later boundary itself) and
        // the epoch's seed and challenge block hashes once they exist.
        let info = epoch_json(&snapshot, height);
        return match info
            .and_then(|i| serde_json::to_vec(&i).map_err(|e| TxError::internal(e.to_string())))
        {
            Ok(value) => ResponseQuery {
                value: value.into(),
                height: i64::try_from(height).unwrap_or(0),
                ..Default::default()
            },
            Err(e) => error(e, height),
        };
    }
    if path == LEADERBOARD_PATH {
        return match leaderboard(&snapshot, &request.data, height) {
            Ok(value) => ResponseQuery {
                value: value.into(),
                height: i64::try_from(height).unwrap_or(0),
                ..Default::default()
            },
            Err(e) => error(e, height),
        };
    }
    let special = match path {
        kiln_gov::PROPOSALS_PATH | kiln_gov::PROPOSAL_PATH => {
            Some(gov_proposals(&snapshot, path, &request.data))
        }
        MODULE_PARAMS_PATH => Some(module_params(&snapshot, &request.data)),
        _ => None,
    };
    let routed = special
        .or_else(|| kiln_bank::query::route(&snapshot, path, &request.data))
        .or_else(|| kiln_authz::query::route(&snapshot, path, &request.data))
        .or_else(|| kiln_hosts::query::route(&snapshot, path, &request.data))
        .or_else(|| kiln_inference::query::route(&snapshot, path, &request.data))
        .or_else(|| kiln_staking::query::route(&snapshot, path, &request.data, height))
        .or_else(|| kiln_sprint::query::route(&snapshot, path, &request.data))
        .or_else(|| kiln_reputation::route(&snapshot, path, &request.data))
        .or_else(|| kiln_rewards::route(&snapshot, path, &request.data))
        .or_else(|| kiln_slashing::route(&snapshot, path, &request.data))
        .or_else(|| kiln_gov::route(&snapshot, path, &request.data));
    match routed {
        Some(Ok(value)) => ResponseQuery {
            value: value.into(),
            height: i64::try_from(height).unwrap_or(0),
            ..Default::default()
        },
        Some(Err(e)) => error(e, height),
        None => error(
            TxError::unknown_request(format!("unknown query path {path:?}")),
            height,
        ),
    }
}

/// `/kiln.app.v1.Query/Params` (data: a module name as in genesis.json):
/// the module's params in force and those a passed proposal scheduled for
/// the next epoch start — the object a `MsgUpdateParams` carries.
pub const MODULE_PARAMS_PATH: &str = "/kiln.app.v1.Query/Params";

fn module_params<S: kiln_store::StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    use kiln_framework::params::{pending, GovernedParams};
    use kiln_framework::StateReadExt;
    fn answer<P: GovernedParams + Default, S: kiln_store::StateRead + ?Sized>(
        state: &S,
    ) -> TxResult<Vec<u8>> {
        let current: P = state.get_value(P::KEY)?.unwrap_or_default();
        kiln_framework::query::json(&serde_json::json!({
            "module": P::MODULE,
            "msg_type_url": P::TYPE_URL,
            "params": current,
            "pending": pending::<P, S>(state)?,
        }))
    }
    let module = std::str::from_utf8(data)
        .map_err(|_| TxError::invalid_request("the module name must be UTF-8 text"))?
        .trim();
    match module {
        "auth" => answer::<kiln_bank::AuthParams, S>(state),
        "authz" => answer::<kiln_authz::AuthzParams, S>(state),
        "epochs" => answer::<kiln_epochs::EpochParams, S>(state),
        "staking" => answer::<kiln_staking::StakingParams, S>(state),
        "sprint" => answer::<kiln_sprint::SprintParams, S>(state),
        "reputation" => answer::<kiln_reputation::ReputationParams, S>(state),
        "inference" => answer::<kiln_inference::InferenceParams, S>(state),
        "rewards" => answer::<kiln_rewards::RewardsParams, S>(state),
        "slashing" => answer::<kiln_slashing::SlashingParams, S>(state),
        "gov" => answer::<kiln_gov::GovParams, S>(state),
        other => Err(TxError::invalid_request(format!(
            "unknown module {other:?}; one of: {}",
            kiln_messages::UPDATE_PARAMS
                .iter()
                .map(|(m, _)| *m)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A proposal as JSON, each message in its readable form
/// ([`kiln_messages::describe_any`]), with its deposits.
fn proposal_json<S: kiln_store::StateRead + ?Sized>(
    state: &S,
    p: &kiln_gov::Proposal,
) -> TxResult<serde_json::Value> {
    let mut value = serde_json::to_value(p).map_err(|e| TxError::internal(e.to_string()))?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "messages".into(),
            p.messages
                .iter()
                .map(|m| kiln_messages::describe_any(&m.to_any()))
                .collect(),
        );
        map.insert(
            "deposits".into(),
            kiln_gov::deposits(state, p.id)?
                .into_iter()
                .map(|(who, amount)| serde_json::json!({"depositor": who, "amount": amount.to_string()}))
                .collect(),
        );
    }
    Ok(value)
}

fn gov_proposals<S: kiln_store::StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> TxResult<Vec<u8>> {
    if path == kiln_gov::PROPOSAL_PATH {
        let p = kiln_gov::proposal_arg(state, data)?;
        return kiln_framework::query::json(&proposal_json(state, &p)?);
    }
    let status = kiln_gov::status_filter(data)?;
    let list = kiln_gov::proposals(state, status, kiln_gov::QUERY_LIMIT)?
        .iter()
        .map(|p| proposal_json(state, p))
        .collect::<TxResult<Vec<_>>>()?;
    kiln_framework::query::json(&list)
}

fn epoch_json<S: kiln_store::StateRead + ?Sized>(
    state: &S,
    height: u64,
) -> TxResult<serde_json::Value> {
    use kiln_epochs::EpochExt;
    let info = state.epoch_info(height)?;
    let seed = state.seed_block_hash(info.epoch)?.map(hex::encode);
    let challenge = state.challenge_block_hash(info.epoch)?.map(hex::encode);
    let mut value = serde_json::to_value(&info).map_err(|e| TxError::internal(e.to_string()))?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "first_height".into(),
            serde_json::json!(state.first_height()?),
        );
        map.insert(
            "first_epoch".into(),
            serde_json::json!(state.first_epoch()?),
        );
        map.insert("seed_hash".into(), serde_json::json!(seed));
        map.insert("challenge_hash".into(), serde_json::json!(challenge));
        map.insert(
            "params".into(),
            serde_json::to_value(state.epoch_params()?)
                .map_err(|e| TxError::internal(e.to_string()))?,
        );
    }
    Ok(value)
}

fn simulate(app: &KilnApp, data: &[u8]) -> TxResult<Vec<u8>> {
    let request = SimulateRequest::decode(data)
        .map_err(|e| TxError::tx_decode(format!("SimulateRequest: {e}")))?;
    if request.tx_bytes.is_empty() {
        return Err(TxError::invalid_request(
            "SimulateRequest.tx_bytes is empty (the deprecated `tx` field is not supported)",
        ));
    }
    let outcome = app.simulate(&request.tx_bytes)?;
    let events = crate::app::to_abci_events(&outcome.events);
    #[allow(deprecated)]
    let response = SimulateResponse {
        gas_info: Some(GasInfo {
            gas_wanted: outcome.gas_wanted,
            gas_used: outcome.gas_used,
        }),
        result: Some(AbciResult {
            data: Vec::new(),
            log: outcome.log,
            events,
            msg_responses: Vec::new(),
        }),
    };
    Ok(response.encode_to_vec())
}

/// `/kiln.app.v1.Query/Leaderboard`: one row per registered host for one
/// settled epoch (data: the epoch as decimal text; empty: the last settled
/// one) — the board hosts watch. Weight, acceptance and reward are the
/// epoch's; consensus power, reputation and jail are as of the queried
/// height. Sorted by effective weight, then reward, then address.
pub const LEADERBOARD_PATH: &str = "/kiln.app.v1.Query/Leaderboard";

#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaderboardRow {
    pub host: kiln_framework::Address,
    pub accepted: bool,
    pub raw_weight: u64,
    pub effective_weight: u64,
    pub consensus_power: u64,
    /// ukiln, decimal.
    pub reward: String,
    pub lifetime_rewards: String,
    pub inferences_served: u64,
    pub lifetime_inferences: u64,
    pub reputation: u64,
    pub jailed: bool,
}

pub fn leaderboard<S: kiln_store::StateRead + ?Sized>(
    state: &S,
    data: &[u8],
    height: u64,
) -> TxResult<Vec<u8>> {
    use kiln_inference::state::SettlementExt;
    use kiln_staking::pools::PoolsExt;
    use kiln_staking::StakingExt;
    let text = std::str::from_utf8(data)
        .map_err(|_| TxError::invalid_request("the epoch must be decimal text"))?
        .trim();
    let settled = state.settled_epoch()?;
    let epoch = if text.is_empty() {
        settled
    } else {
        text.parse::<u64>()
            .map_err(|_| TxError::invalid_request(format!("epoch {text:?} is not a number")))?
    };
    if epoch > settled {
        return Err(TxError::invalid_request(format!(
            "epoch {epoch} has not been settled yet (last settled: {settled})"
        )));
    }
    let powers = state.consensus_powers(height)?;
    let mut rows = Vec::new();
    for host in kiln_hosts::HostsExt::hosts(state)? {
        let addr = host.owner;
        let result = kiln_sprint::state::result(state, epoch, &addr)?;
        let stats = state.host_stats(&addr)?;
        rows.push(LeaderboardRow {
            host: addr,
            accepted: result.as_ref().is_some_and(|r| r.accepted),
            raw_weight: result.as_ref().map_or(0, |r| r.raw_weight),
            effective_weight: result.as_ref().map_or(0, |r| r.effective_weight),
            consensus_power: powers.get(&addr).copied().unwrap_or(0),
            reward: kiln_rewards::epoch_reward(state, epoch, &addr)?.to_string(),
            lifetime_rewards: kiln_rewards::lifetime_reward(state, &addr)?.to_string(),
            inferences_served: kiln_framework::StateReadExt::get_u64(
                state,
                &kiln_inference::keys::served(epoch, &addr),
            )?
            .unwrap_or(0),
            lifetime_inferences: stats.total_completed,
            reputation: kiln_reputation::reputation(state, &addr)?,
            jailed: kiln_staking::jail::JailExt::is_jailed(state, &addr)?,
        });
    }
    rows.sort_by(|a, b| {
        b.effective_weight
            .cmp(&a.effective_weight)
            .then_with(|| {
                b.reward
                    .parse::<u128>()
                    .unwrap_or(0)
                    .cmp(&a.reward.parse::<u128>().unwrap_or(0))
            })
            .then_with(|| a.host.cmp(&b.host))
    });
    serde_json::to_vec(&serde_json::json!({"epoch": epoch, "hosts": rows}))
        .map_err(|e| TxError::internal(e.to_string()))
}
