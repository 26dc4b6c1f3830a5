//! JSON queries: `/kiln.sprint.v1.Query/Hosts`, `/Host` (data: bech32 address),
//! `/Weights`, `/Result` (data: `{"epoch":N,"host":"kiln1…"}`), `/Duties`
//! (data: `{"epoch":N,"address":"kiln1…"}`: everything a worker needs to
//! resume an epoch from chain state alone), and
//! `/kiln.reputation.v1.Query/Reputation` (data: bech32 address).

use kiln_framework::{Address, TxError, TxResult};
use kiln_state::StateRead;

use crate::state;

#[derive(serde::Serialize)]
pub struct WeightRow {
    pub host: Address,
    pub weight: u64,
    /// Share of total weight in basis points.
    pub share_bps: u64,
    /// CometBFT voting power at the queried height: the effective weight,
    /// except in the two blocks after a settle (CometBFT applies validator
    /// updates at `H + 2`), when the previous power still signs.
    pub consensus_power: u64,
}

fn json<T: serde::Serialize>(value: &T) -> TxResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| TxError::internal(e.to_string()))
}

fn addr_arg(data: &[u8]) -> TxResult<Address> {
    let text =
        std::str::from_utf8(data).map_err(|_| TxError::invalid_request("address must be UTF-8"))?;
    Address::parse(text.trim()).map_err(|e| TxError::invalid_address(e.to_string()))
}

/// `height` is the height of `state` (consensus power depends on it).
pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
    height: u64,
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        "/kiln.sprint.v1.Query/Hosts" => state::hosts(state).and_then(|h| json(&h)),
        "/kiln.sprint.v1.Query/Host" => addr_arg(data)
            .and_then(|a| state::host(state, &a))
            .and_then(|h| match h {
                Some(h) => json(&h),
                None => Err(TxError::key_not_found("no such host")),
            }),
        "/kiln.sprint.v1.Query/Weights" => weights(state, height),
        "/kiln.sprint.v1.Query/Params" => state::sprint_params(state).and_then(|p| json(&p)),
        "/kiln.sprint.v1.Query/Result" => result(state, data),
        "/kiln.sprint.v1.Query/Duties" => duties(state, data),
        "/kiln.reputation.v1.Query/Reputation" => addr_arg(data).and_then(|a| {
            let good = kiln_reputation::good_epochs(state, &a)?;
            let score = kiln_reputation::reputation(state, &a)?;
            json(&serde_json::json!({"address": a, "good_epochs": good, "reputation": score}))
        }),
        _ => return None,
    };
    Some(result)
}

fn weights<S: StateRead + ?Sized>(state: &S, height: u64) -> TxResult<Vec<u8>> {
    let w = state::weights(state)?;
    let powers = state::consensus_powers(state, height)?;
    let total: u128 = w.values().map(|v| u128::from(*v)).sum();
    // Hosts with weight, and hosts that still sign with their old power.
    let mut hosts: std::collections::BTreeSet<Address> = w.keys().copied().collect();
    hosts.extend(powers.keys().copied());
    let rows: Vec<WeightRow> = hosts
        .into_iter()
        .map(|a| {
            let v = w.get(&a).copied().unwrap_or(0);
            WeightRow {
                host: a,
                weight: v,
                share_bps: (u128::from(v) * 10_000)
                    .checked_div(total)
                    .and_then(|b| u64::try_from(b).ok())
                    .unwrap_or(0),
                consensus_power: powers.get(&a).copied().unwrap_or(0),
            }
        })
        .collect();
    json(&rows)
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
    let value: Option<state::EpochResult> =
        kiln_framework::StateReadExt::get_json(state, &crate::keys::result(req.epoch, &req.host))?;
    match value {
        Some(v) => json(&v),
        None => Err(TxError::key_not_found(format!(
            "no settled result for {} in epoch {}",
            req.host, req.epoch
        ))),
    }
}

/// One opening a validator must vote on.
#[derive(serde::Serialize)]
pub struct Duty {
    pub host: Address,
    pub leaves: Vec<state::Opened>,
    pub vote_committed: bool,
    pub vote_revealed: bool,
}

/// A host's own progress in an epoch and the openings it must validate.
#[derive(serde::Serialize)]
pub struct Duties {
    pub epoch: u64,
    pub address: Address,
    pub commitment: Option<state::Commitment>,
    pub opened: bool,
    pub duties: Vec<Duty>,
    pub result: Option<state::EpochResult>,
}

fn duties<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Req {
        epoch: u64,
        address: Address,
    }
    let req: Req = serde_json::from_slice(data).map_err(|e| {
        TxError::invalid_request(format!(
            "expected {{\"epoch\":N,\"address\":\"kiln1…\"}}: {e}"
        ))
    })?;
    let mut duties = Vec::new();
    for host in state::committed_hosts(state, req.epoch)? {
        let Some(leaves) = state::opened(state, req.epoch, &host)? else {
            continue;
        };
        if !crate::handler::committee_of(state, req.epoch, &host)?.contains(&req.address) {
            continue;
        }
        duties.push(Duty {
            host,
            leaves,
            vote_committed: state
                .get_raw(&crate::keys::vote_commit(req.epoch, &host, &req.address))?
                .is_some(),
            vote_revealed: state
                .get_raw(&crate::keys::vote_reveal(req.epoch, &host, &req.address))?
                .is_some(),
        });
    }
    let value = Duties {
        epoch: req.epoch,
        address: req.address,
        commitment: state::commitment(state, req.epoch, &req.address)?,
        opened: state::opened(state, req.epoch, &req.address)?.is_some(),
        duties,
        result: kiln_framework::StateReadExt::get_json(
            state,
            &crate::keys::result(req.epoch, &req.address),
        )?,
    };
    json(&value)
}
