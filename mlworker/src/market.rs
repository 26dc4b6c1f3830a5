//! Paid inference on a chain host (SPEC §5 "Request path"): the worker's
//! `/v1` routes as **transfer agent** (TA) and as **executor**.
//!
//! A request signed by a requester (`kiln api-proxy`, `kiln infer`: the
//! headers of [`kiln_inference::request`]) reaches any host's worker, the
//! TA. The TA checks the signature over (chain, this host, timestamp, body
//! hash, model, max_tokens), the 60 s window and that the signature is new,
//! counts the prompt's tokens, checks the requester can pay
//! `(prompt + max_tokens) × price`, and draws the executor exactly as the
//! chain will (the model's serving set and the hash of the latest committed
//! block, seeded with the request signature). It queues `MsgStartInference`
//! and either serves the request itself (when drawn) or forwards it to the
//! executor's worker with the seed height, and relays the answer.
//!
//! The executor re-checks the signature and the draw (it is paid only if the
//! chain agrees it was drawn), serves, keeps the payload (request body,
//! completion, per-position top-5 logprobs) for validators, and queues
//! `MsgFinishInference` with the completion's token count and hashes.
//!
//! **A host with ML nodes (issue 15).** The worker at the host's
//! registered URL — its own worker, the transfer agent and the executor
//! the draw names — routes each request it must execute to one of the
//! host's ML nodes enabled in force that serve the model, or serves it
//! itself: least loaded first (requests it has in flight at each node,
//! against its own engine's queue; ties in turn), never a disabled node.
//! A node that does not answer (down, killed mid-request, overloaded) is
//! set aside for a while and the request goes to the next one, so no
//! request is lost for a dead node; the chain settles one finish per id,
//! so none is charged twice. A routed request carries
//! [`HEADER_ROUTED`]: the node serves it (re-checking signature and draw as
//! any executor) and routes nothing on. Validators find a node-served
//! payload at the node's URL (`crate::validator`).
//!
//! Queued messages are sent by the worker's [`InferenceDuty`], each in its
//! own `MsgExec` from the ML key, so a refused start never holds back others.
//! Every refusal is an OpenAI-shaped error that names the cause, and nothing
//! is queued (so nothing is charged) for a refused request.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cosmrs::Any;
use kiln_client::rpc::RpcClient;
use kiln_framework::Address;
use kiln_inference::msgs::{MsgFinishInference, MsgStartInference};
use kiln_inference::request::{
    request_id, timestamp_is_fresh, RequestHeader, HEADER_PUBKEY, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, MAX_REQUEST_AGE_SECONDS,
};
use kiln_inference::state::ServingSet;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::serve::engine::Event;
use crate::serve::openai::ApiError;
use crate::worker::{ChainTick, Duty, Outbox, Tick};

/// Headers a transfer agent adds when it forwards a request to the executor.
pub const HEADER_TRANSFER_AGENT: &str = "x-kiln-transfer-agent";
pub const HEADER_SEED_HEIGHT: &str = "x-kiln-seed-height";
/// Set (to the node id) on a request the host's worker routed to one of
/// its ML nodes: the node serves it itself.
pub const HEADER_ROUTED: &str = "x-kiln-routed-to";

/// How long the host's ML nodes (from its record on chain) are reused
/// before they are read again.
const NODES_TTL: std::time::Duration = std::time::Duration::from_secs(3);
/// How long a node that did not answer is left out of routing.
const NODE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);
pub use kiln_inference::request::{HEADER_EXECUTOR, HEADER_INFERENCE_ID};

/// Top logprobs the executor keeps per position for validators (SPEC: k = 5).
pub const VALIDATION_TOP_K: usize = 5;

/// Messages (with their log names) waiting for the [`InferenceDuty`].
pub type MarketOutbox = Arc<Mutex<Vec<(String, Any)>>>;

/// What a worker needs to sell inference on a chain.
pub struct Market {
    pub chain_id: String,
    /// The host this worker works for (TA and executor address).
    pub host: Address,
    rpc: RpcClient,
    node_url: String,
    /// Messages for [`InferenceDuty`] to send.
    outbox: MarketOutbox,
    /// Request ids seen (and when, unix seconds): a reused signature is refused.
    seen: Mutex<BTreeMap<[u8; 32], i64>>,
    payload_dir: PathBuf,
    /// How long payloads are kept on disk, seconds.
    payload_retention_seconds: u64,
    /// This worker's ML key (bech32): a node with this key is this worker.
    operator: String,
    routing: Mutex<Routing>,
    /// The journal's copy of every queued message until a block holds it
    /// (`None` in tests that need no restart).
    pending: Option<Arc<crate::pending::PendingMessages>>,
}

/// One of the host's ML nodes a request can be routed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTarget {
    pub id: String,
    pub url: String,
    pub models: Vec<String>,
}

/// The front worker's routing state.
#[derive(Default)]
struct Routing {
    /// The host's enabled ML nodes (not this worker), and when they were read.
    nodes: Option<(std::time::Instant, Vec<NodeTarget>)>,
    /// Requests routed to each node and not finished yet.
    in_flight: BTreeMap<String, usize>,
    /// Nodes left out until then (they did not answer).
    backoff: BTreeMap<String, std::time::Instant>,
    /// Turn counter: ties between equally loaded targets go round.
    turn: usize,
}

/// Where the front worker sends one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteChoice {
    /// Serve it here.
    Local,
    Node(NodeTarget),
}

/// Least loaded first; equally loaded targets take turns (`turn`).
/// `candidates`: each node with its in-flight count; `local`: this
/// worker's own load, or `None` when it must not serve (never today).
pub fn choose_route(
    local: Option<usize>,
    candidates: &[(NodeTarget, usize)],
    turn: usize,
) -> RouteChoice {
    let mut loads: Vec<(usize, RouteChoice)> = Vec::new();
    if let Some(l) = local {
        loads.push((l, RouteChoice::Local));
    }
    for (n, l) in candidates {
        loads.push((*l, RouteChoice::Node(n.clone())));
    }
    let Some(min) = loads.iter().map(|(l, _)| *l).min() else {
        return RouteChoice::Local;
    };
    let least: Vec<RouteChoice> = loads
        .into_iter()
        .filter(|(l, _)| *l == min)
        .map(|(_, c)| c)
        .collect();
    least
        .get(turn % least.len().max(1))
        .cloned()
        .unwrap_or(RouteChoice::Local)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An OpenAI-shaped error with a status and a stable code.
fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status: status.as_u16(),
        kind: match status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => "server_error",
            _ => "invalid_request_error",
        },
        message: message.into(),
        param: None,
        code: Some(code),
        retry_after_secs: None,
    }
}

impl Market {
    /// A market whose messages go to `outbox` (the [`InferenceDuty`]'s),
    /// each journaled in `pending` first.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        chain_id: String,
        host: Address,
        node_url: &str,
        payload_dir: PathBuf,
        payload_retention_seconds: u64,
        outbox: MarketOutbox,
        operator: String,
        pending: Option<Arc<crate::pending::PendingMessages>>,
    ) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&payload_dir)
            .with_context(|| format!("creating {}", payload_dir.display()))?;
        Ok(Arc::new(Market {
            chain_id,
            host,
            rpc: RpcClient::new(node_url),
            node_url: node_url.to_string(),
            outbox,
            seen: Mutex::new(BTreeMap::new()),
            payload_dir,
            payload_retention_seconds,
            operator,
            routing: Mutex::new(Routing::default()),
            pending,
        }))
    }

    /// The host's ML nodes enabled in force that serve `model`, other than
    /// this worker, read from the chain at most every [`NODES_TTL`].
    /// Blocking (RPC).
    pub fn serving_nodes(&self, model: &str) -> Result<Vec<NodeTarget>> {
        let cached = self.routing.lock().ok().and_then(|r| {
            r.nodes
                .as_ref()
                .filter(|(at, _)| at.elapsed() < NODES_TTL)
                .map(|(_, n)| n.clone())
        });
        let nodes = match cached {
            Some(n) => n,
            None => {
                let record = query_json(
                    &self.rpc,
                    kiln_hosts::query::HOST_PATH,
                    self.host.to_bech32().as_bytes(),
                    0,
                )?;
                let nodes: Vec<NodeTarget> = record["ml_nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|n| n["enabled"].as_bool() == Some(true))
                    .filter(|n| n["ml_key"].as_str() != Some(self.operator.as_str()))
                    .filter_map(|n| {
                        Some(NodeTarget {
                            id: n["id"].as_str()?.to_string(),
                            url: n["worker_url"].as_str()?.trim_end_matches('/').to_string(),
                            models: n["models"]
                                .as_array()?
                                .iter()
                                .filter_map(|m| m.as_str().map(str::to_string))
                                .collect(),
                        })
                    })
                    .collect();
                if let Ok(mut r) = self.routing.lock() {
                    r.nodes = Some((std::time::Instant::now(), nodes.clone()));
                }
                nodes
            }
        };
        Ok(nodes
            .into_iter()
            .filter(|n| n.models.iter().any(|m| m == model))
            .collect())
    }

    /// Whether this worker's key is one of the host's declared ML nodes
    /// (blocking: RPC). Such a worker executes what the host's own worker
    /// routes to it, inference and validation replays alike; the host's
    /// validation duty itself (seed commitments, which inferences to
    /// validate, `MsgValidation`) stays with the host's own worker, so two
    /// workers never commit the host's seed for one period.
    pub fn is_ml_node(&self) -> Result<bool> {
        let record = query_json(
            &self.rpc,
            kiln_hosts::query::HOST_PATH,
            self.host.to_bech32().as_bytes(),
            0,
        )?;
        Ok(record["ml_nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["ml_key"].as_str() == Some(self.operator.as_str())))
    }

    /// Picks where one request (or replay) runs among this worker (load
    /// `local`) and `nodes` (skipping those set aside and those `tried`),
    /// and counts it in flight there until [`Self::finished_at`].
    pub(crate) fn pick(&self, local: usize, nodes: &[NodeTarget], tried: &[String]) -> RouteChoice {
        let Ok(mut r) = self.routing.lock() else {
            return RouteChoice::Local;
        };
        let now = std::time::Instant::now();
        r.backoff.retain(|_, until| *until > now);
        let candidates: Vec<(NodeTarget, usize)> = nodes
            .iter()
            .filter(|n| !r.backoff.contains_key(&n.id) && !tried.contains(&n.id))
            .map(|n| (n.clone(), r.in_flight.get(&n.id).copied().unwrap_or(0)))
            .collect();
        r.turn = r.turn.wrapping_add(1);
        let choice = choose_route(Some(local), &candidates, r.turn);
        if let RouteChoice::Node(n) = &choice {
            *r.in_flight.entry(n.id.clone()).or_default() += 1;
        }
        choice
    }

    /// Ends a [`Self::pick`] of `node`; one that did not `answer` is set
    /// aside for a while.
    pub(crate) fn finished_at(&self, node: &str, answered: bool) {
        if let Ok(mut r) = self.routing.lock() {
            if let Some(c) = r.in_flight.get_mut(node) {
                *c = c.saturating_sub(1);
            }
            if !answered {
                r.backoff
                    .insert(node.to_string(), std::time::Instant::now() + NODE_BACKOFF);
            }
        }
    }

    /// The node's RPC address.
    pub fn node_url(&self) -> &str {
        &self.node_url
    }

    /// Queues a validator's `MsgValidation` (or dispute vote) for `id`.
    pub fn queue_validation(&self, id: &[u8; 32], msg: Any) {
        self.queue(
            format!("inference-validation-{}", &hex::encode(id)[..8]),
            msg,
        );
    }

    /// Queues a validation-seed commitment or reveal for `period`.
    pub fn queue_seed(&self, period: u64, reveal: bool, msg: Any) {
        let what = if reveal { "reveal" } else { "commit" };
        self.queue(format!("validation-seed-{what}-{period}"), msg);
    }

    /// Queues `msg` for the [`InferenceDuty`], first writing it to the
    /// journal so a restart sends it again.
    fn queue(&self, kind: String, msg: Any) {
        if let Some(pending) = &self.pending {
            if let Err(e) = pending.add(&kind, &msg) {
                tracing::warn!(error = %format!("{e:#}"), %kind, "cannot journal the message; it is lost if the worker stops before sending it");
            }
        }
        if let Ok(mut q) = self.outbox.lock() {
            q.push((kind, msg));
        }
    }

    /// Records `id` as used; false when it was seen within the window.
    fn first_use(&self, id: [u8; 32], now: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        seen.retain(|_, at| now - *at <= 2 * MAX_REQUEST_AGE_SECONDS);
        seen.insert(id, now).is_none()
    }

    fn payload_path(&self, id: &[u8; 32]) -> PathBuf {
        self.payload_dir.join(format!("{}.json", hex::encode(id)))
    }

    /// A kept payload (request body, completion, top logprobs), if any.
    pub fn payload(&self, id: &[u8; 32]) -> Option<Value> {
        let text = std::fs::read_to_string(self.payload_path(id)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn keep_payload(&self, id: &[u8; 32], payload: &Value) -> Result<()> {
        let path = self.payload_path(id);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(payload)?)?;
        std::fs::rename(&tmp, &path)?;
        // Drop payloads past their retention.
        let horizon = std::time::Duration::from_secs(self.payload_retention_seconds);
        if let Ok(dir) = std::fs::read_dir(&self.payload_dir) {
            for entry in dir.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > horizon);
                if old {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }
}

/// The requester's signed headers.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    pub pubkey: Vec<u8>,
    pub timestamp: i64,
    pub signature: Vec<u8>,
    /// Set when a transfer agent forwarded the request to this executor.
    pub forwarded: Option<(Address, u64)>,
}

impl SignedHeaders {
    /// `None` when the request carries no signature at all.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(pubkey), Some(timestamp), Some(signature)) = (
            get(HEADER_PUBKEY),
            get(HEADER_TIMESTAMP),
            get(HEADER_SIGNATURE),
        ) else {
            if get(HEADER_SIGNATURE).is_some() || get(HEADER_PUBKEY).is_some() {
                return Err(unsigned(format!(
                    "a signed request needs all of {HEADER_PUBKEY}, {HEADER_TIMESTAMP} and {HEADER_SIGNATURE}"
                )));
            }
            return Ok(None);
        };
        let bad = |what: &str| unsigned(format!("{what} is not valid hex of the right length"));
        let pubkey = hex::decode(pubkey)
            .ok()
            .filter(|k| k.len() == 33)
            .ok_or_else(|| bad(HEADER_PUBKEY))?;
        let signature = hex::decode(signature)
            .ok()
            .filter(|s| s.len() == 64)
            .ok_or_else(|| bad(HEADER_SIGNATURE))?;
        let timestamp: i64 = timestamp
            .parse()
            .map_err(|_| unsigned(format!("{HEADER_TIMESTAMP} must be unix seconds")))?;
        let forwarded = match (get(HEADER_TRANSFER_AGENT), get(HEADER_SEED_HEIGHT)) {
            (Some(ta), Some(h)) => Some((
                Address::parse(ta)
                    .map_err(|e| unsigned(format!("{HEADER_TRANSFER_AGENT}: {e}")))?,
                h.parse()
                    .map_err(|_| unsigned(format!("{HEADER_SEED_HEIGHT} must be a height")))?,
            )),
            (None, None) => None,
            _ => {
                return Err(unsigned(format!(
                "a forwarded request needs both {HEADER_TRANSFER_AGENT} and {HEADER_SEED_HEIGHT}"
            )))
            }
        };
        Ok(Some(SignedHeaders {
            pubkey,
            timestamp,
            signature,
            forwarded,
        }))
    }
}

fn unsigned(message: impl Into<String>) -> ApiError {
    refuse(StatusCode::UNAUTHORIZED, "invalid_signature", message)
}

/// What the chain says about a request at one height.
struct Draw {
    seed_height: u64,
    executor: Address,
    price_pkiln: u64,
}

/// The hash of block `height` (CometBFT's block id).
fn block_hash(rpc: &RpcClient, height: u64) -> Result<Vec<u8>> {
    let block = rpc.call_uri("block", &[("height", &height.to_string())])?;
    let hash = block["block_id"]["hash"]
        .as_str()
        .ok_or_else(|| anyhow!("the node's block {height} has no hash"))?;
    hex::decode(hash).context("the node's block hash is not hex")
}

fn query_json(rpc: &RpcClient, path: &str, data: &[u8], height: u64) -> Result<Value> {
    let r = rpc.abci_query(path, data, height)?;
    if r.code != 0 {
        return Err(anyhow!("query {path} failed (code {}): {}", r.code, r.log));
    }
    serde_json::from_slice(&r.value).with_context(|| format!("query {path}: not JSON"))
}

/// The model's serving set (the draw's candidates) at `height`.
pub fn serving_set(rpc: &RpcClient, model: &str, height: u64) -> Result<ServingSet> {
    let v = query_json(
        rpc,
        kiln_inference::query::EXECUTORS_PATH,
        model.as_bytes(),
        height,
    )?;
    serde_json::from_value(v).context("the node's serving set is not one")
}

/// The executor the chain's draw picks for `signature` seeded at `height`.
fn draw_at(rpc: &RpcClient, model: &str, signature: &[u8], height: u64) -> Result<Draw> {
    let hash = block_hash(rpc, height)?;
    let candidates = serving_set(rpc, model, height)?.candidates_at(height);
    let seed = kiln_inference::draw::draw_seed(&hash, signature);
    let executor = kiln_inference::draw::draw_executor(&candidates, &seed)
        .ok_or_else(|| anyhow!("no live host with weight serves {model}"))?;
    let prices = query_json(rpc, kiln_inference::query::PRICES_PATH, b"", height)?;
    let price_pkiln = prices
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["model"] == model)
        .and_then(|p| p["price_pkiln"].as_u64())
        .ok_or_else(|| anyhow!("model {model} has no price on chain"))?;
    Ok(Draw {
        seed_height: height,
        executor,
        price_pkiln,
    })
}

/// The checks and the draw of a signed request; what the caller then does.
pub enum Route {
    /// Serve here; queue the start too when this worker is the TA.
    Serve { start: Option<MsgStartInference> },
    /// Forward to the executor's worker at `url`; the start is queued.
    Forward {
        url: String,
        seed_height: u64,
        executor: Address,
    },
}

/// A request the market accepted.
pub struct Accepted {
    pub id: [u8; 32],
    pub executor: Address,
    pub route: Route,
}

/// Checks a signed request (signature, window, reuse, funds, draw) and
/// decides where it is served. `prompt_tokens` is the TA's count.
pub async fn accept(
    market: Arc<Market>,
    signed: SignedHeaders,
    body: &Bytes,
    model: &str,
    max_tokens: u64,
    prompt_tokens: u64,
) -> Result<Accepted, ApiError> {
    let now = unix_now();
    let requester = Address::from_pubkey(&signed.pubkey);
    let transfer_agent = signed.forwarded.map_or(market.host, |(ta, _)| ta);
    let header = RequestHeader {
        chain_id: market.chain_id.clone(),
        transfer_agent,
        timestamp: signed.timestamp,
        body_sha256: Sha256::digest(body).into(),
        model: model.to_string(),
        max_tokens,
    };
    header
        .verify(&requester, &signed.pubkey, &signed.signature)
        .map_err(unsigned)?;
    if !timestamp_is_fresh(signed.timestamp, now) {
        return Err(unsigned(format!(
            "the request was signed at {} and it is now {now}: signatures are valid for {MAX_REQUEST_AGE_SECONDS} s (check the clock)",
            signed.timestamp
        )));
    }
    let id = request_id(&signed.signature);
    if !market.first_use(id, now) {
        return Err(refuse(
            StatusCode::CONFLICT,
            "reused_signature",
            "this request signature was already used: sign each request anew",
        ));
    }
    let rpc_market = market.clone();
    let (model_owned, signature) = (model.to_string(), signed.signature.clone());
    let forwarded = signed.forwarded;
    let decided = tokio::task::spawn_blocking(move || -> Result<Result<Accepted, ApiError>> {
        let rpc = &rpc_market.rpc;
        match forwarded {
            // Executor: the draw at the TA's seed height must pick us.
            Some((_, seed_height)) => {
                let draw = draw_at(rpc, &model_owned, &signature, seed_height)?;
                if draw.executor != rpc_market.host {
                    return Ok(Err(refuse(
                        StatusCode::MISDIRECTED_REQUEST,
                        "not_the_executor",
                        format!(
                            "the draw at height {seed_height} picks {}, not this host",
                            draw.executor
                        ),
                    )));
                }
                Ok(Ok(Accepted {
                    id,
                    executor: draw.executor,
                    route: Route::Serve { start: None },
                }))
            }
            // Transfer agent: funds, the draw at the latest block, the start.
            None => {
                let status = rpc.status()?;
                let height = kiln_client::rpc::json_u64(&status["sync_info"]["latest_block_height"])
                    .ok_or_else(|| anyhow!("the node's status has no height"))?;
                let draw = draw_at(rpc, &model_owned, &signature, height)?;
                let escrow = kiln_inference::state::charge(
                    prompt_tokens.saturating_add(max_tokens),
                    draw.price_pkiln,
                )
                .unwrap_or(u128::MAX);
                let balance = kiln_client::query::balance(
                    rpc,
                    &requester.to_bech32(),
                    kiln_framework::BASE_DENOM,
                    height,
                )?;
                let have: u128 = balance.amount.parse().unwrap_or(0);
                if have < escrow {
                    return Ok(Err(refuse(
                        StatusCode::PAYMENT_REQUIRED,
                        "insufficient_funds",
                        format!(
                            "requester {requester} holds {have}ukiln but this request escrows {escrow}ukiln ({prompt_tokens} prompt + {max_tokens} max tokens at {} pkiln per token)",
                            draw.price_pkiln
                        ),
                    )));
                }
                let start = MsgStartInference {
                    transfer_agent: rpc_market.host.to_bech32(),
                    id: id.to_vec(),
                    requester: requester.to_bech32(),
                    requester_pubkey: signed.pubkey.clone(),
                    model: model_owned.clone(),
                    prompt_hash: header.body_sha256.to_vec(),
                    prompt_tokens,
                    max_tokens,
                    executor: draw.executor.to_bech32(),
                    seed_height: draw.seed_height,
                    request_timestamp: signed.timestamp,
                    request_signature: signature.clone(),
                };
                if draw.executor == rpc_market.host {
                    return Ok(Ok(Accepted {
                        id,
                        executor: draw.executor,
                        route: Route::Serve { start: Some(start) },
                    }));
                }
                let host = query_json(
                    rpc,
                    kiln_hosts::query::HOST_PATH,
                    draw.executor.to_bech32().as_bytes(),
                    height,
                )?;
                let url = host["worker_url"]
                    .as_str()
                    .ok_or_else(|| anyhow!("executor {} has no worker URL", draw.executor))?
                    .trim_end_matches('/')
                    .to_string();
                rpc_market.queue(
                    format!("inference-start-{}", &hex::encode(id)[..8]),
                    crate::worker::any_of(&start),
                );
                Ok(Ok(Accepted {
                    id,
                    executor: draw.executor,
                    route: Route::Forward {
                        url,
                        seed_height: draw.seed_height,
                        executor: draw.executor,
                    },
                }))
            }
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("the chain check stopped: {e}")))?;
    decided.map_err(|e| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "chain_unavailable",
            format!("cannot check the request against the chain: {e:#}"),
        )
    })?
}

/// Queues the start of a request this worker serves itself.
pub fn queue_start(market: &Market, start: &MsgStartInference) {
    market.queue(
        format!("inference-start-{}", &hex::encode(&start.id)[..8]),
        crate::worker::any_of(start),
    );
}

/// What the executor saw of its generation: the validators' record.
#[derive(Default)]
struct Tapped {
    text: String,
    positions: Vec<PayloadPosition>,
    completion_tokens: u64,
}

/// One generated position as the executor keeps it for validators: the
/// token, its logprob and the model's top-5 alternatives (ids, logprobs).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PayloadPosition {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

impl PayloadPosition {
    /// The position in kiln-llm's validation form.
    pub fn executor_position(&self) -> kiln_llm::validation::ExecutorPosition {
        kiln_llm::model::PositionLogprobs {
            token: self.token,
            logprob: self.logprob,
            top: self
                .top
                .iter()
                .map(|(token, logprob)| kiln_llm::model::TokenLogprob {
                    token: *token,
                    logprob: *logprob,
                })
                .collect(),
        }
    }
}

/// What an executor keeps per inference and serves to validators.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Payload {
    pub id: String,
    pub request_body: String,
    pub prompt_token_ids: Vec<u32>,
    pub completion_text: String,
    pub positions: Vec<PayloadPosition>,
}

impl Payload {
    /// `response_hash` as settled: SHA-256 of the completion text.
    pub fn response_hash(&self) -> [u8; 32] {
        Sha256::digest(self.completion_text.as_bytes()).into()
    }

    /// `top_logprobs_hash` as settled: SHA-256 of the positions' JSON.
    pub fn top_logprobs_hash(&self) -> [u8; 32] {
        Sha256::digest(serde_json::to_vec(&self.positions).unwrap_or_default()).into()
    }
}

/// Wraps the engine's events: the caller's response reads the returned
/// receiver as before, and when the generation ends (or the client goes
/// away) the executor keeps the payload and queues its finish.
pub fn tap_events(
    market: Arc<Market>,
    id: [u8; 32],
    body: Bytes,
    prompt: Vec<u32>,
    mut upstream: UnboundedReceiver<Event>,
) -> UnboundedReceiver<Event> {
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        let mut t = Tapped::default();
        while let Some(event) = upstream.recv().await {
            let done = !matches!(event, Event::Token { .. });
            match &event {
                Event::Token { text, logprob, .. } => {
                    t.text.push_str(text);
                    t.completion_tokens += 1;
                    if let Some(lp) = logprob {
                        t.positions.push(PayloadPosition {
                            token: lp.token_id,
                            logprob: lp.logprob,
                            top: lp
                                .top_ids
                                .iter()
                                .zip(&lp.top)
                                .map(|(token, (_, _, logprob))| (*token, *logprob))
                                .collect(),
                        });
                    }
                }
                Event::Done { tail, usage, .. } => {
                    t.text.push_str(tail);
                    t.completion_tokens = usage.completion_tokens as u64;
                }
                Event::Failed(_) => {}
            }
            if matches!(event, Event::Failed(_)) {
                // Nothing served: no finish, the start times out and refunds.
                let _ = tx.send(event);
                return;
            }
            if done {
                // The finish is journaled before the client sees the end of
                // its answer: a worker killed right after answering is
                // still paid (a restart sends the finish).
                keep_and_finish(&market, id, &body, prompt, t);
                let _ = tx.send(event);
                return;
            }
            if tx.send(event).is_err() {
                // The client went away: the engine stops (upstream dropped);
                // the tokens made so far are what is billed.
                break;
            }
        }
        keep_and_finish(&market, id, &body, prompt, t);
    });
    rx
}

/// Keeps the payload of what was generated and queues the finish.
fn keep_and_finish(market: &Market, id: [u8; 32], body: &Bytes, prompt: Vec<u32>, t: Tapped) {
    let payload = Payload {
        id: hex::encode(id),
        request_body: String::from_utf8_lossy(body).into_owned(),
        prompt_token_ids: prompt,
        completion_text: t.text,
        positions: t.positions,
    };
    finish(market, id, &payload, t.completion_tokens);
}

fn finish(market: &Market, id: [u8; 32], payload: &Payload, completion_tokens: u64) {
    let response_hash = payload.response_hash();
    let top_hash = payload.top_logprobs_hash();
    match serde_json::to_value(payload) {
        Ok(v) => {
            if let Err(e) = market.keep_payload(&id, &v) {
                tracing::warn!(error = %format!("{e:#}"), id = %hex::encode(id), "cannot keep the payload");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot encode the payload"),
    }
    let msg = MsgFinishInference {
        executor: market.host.to_bech32(),
        id: id.to_vec(),
        response_hash: response_hash.to_vec(),
        completion_tokens,
        top_logprobs_hash: top_hash.to_vec(),
    };
    tracing::info!(id = %hex::encode(id), completion_tokens, "inference served; finish queued");
    market.queue(
        format!("inference-finish-{}", &hex::encode(id)[..8]),
        crate::worker::any_of(&msg),
    );
}

/// Forwards a signed request to its executor and relays the answer (a
/// stream stays a stream).
pub async fn forward(
    url: String,
    headers: HeaderMap,
    body: Bytes,
    ta: Address,
    seed_height: u64,
    path: &'static str,
) -> Response {
    match forward_once(
        url.clone(),
        headers,
        body,
        ta,
        seed_height,
        path,
        None,
        None,
    )
    .await
    {
        Ok(response) => response,
        Err(e) => crate::serve::http::error_response(&refuse(
            StatusCode::BAD_GATEWAY,
            "executor_unreachable",
            format!("the drawn executor's worker at {url} did not answer: {e}"),
        )),
    }
}

/// Statuses after which a routed request goes to another ML node: the
/// node could not take it (overloaded, model not loaded, failing).
fn retry_elsewhere(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Runs a request this worker's host must execute on one of its ML nodes
/// when one is less loaded than this worker (`local_load`); `None`: serve it
/// here. A node that does not answer, or answers 429/5xx before anything
/// reached the client, is set aside and the next one tried; when none is
/// left the request is served here.
#[allow(clippy::too_many_arguments)]
pub async fn route_to_node(
    market: Arc<Market>,
    headers: &HeaderMap,
    body: &Bytes,
    ta: Address,
    seed_height: u64,
    model: &str,
    path: &'static str,
    local_load: usize,
) -> Option<Response> {
    let (m, model_owned) = (market.clone(), model.to_string());
    let nodes = match tokio::task::spawn_blocking(move || m.serving_nodes(&model_owned)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot read the host's ML nodes; serving here");
            return None;
        }
        Err(_) => return None,
    };
    if nodes.is_empty() {
        return None;
    }
    let mut tried: Vec<String> = Vec::new();
    loop {
        let node = match market.pick(local_load, &nodes, &tried) {
            RouteChoice::Local => return None,
            RouteChoice::Node(n) => n,
        };
        tried.push(node.id.clone());
        let done = {
            let (m, id) = (market.clone(), node.id.clone());
            move |answered: bool| m.finished_at(&id, answered)
        };
        match forward_once(
            node.url.clone(),
            headers.clone(),
            body.clone(),
            ta,
            seed_height,
            path,
            Some(node.id.clone()),
            Some(Box::new(done)),
        )
        .await
        {
            Ok(response) => {
                tracing::info!(ml_node = %node.id, "request routed to the host's ML node");
                return Some(response);
            }
            Err(e) => {
                tracing::warn!(ml_node = %node.id, url = %node.url, error = %e, "the ML node did not take the request; trying another");
            }
        }
    }
}

/// Called once when a forwarded request ends: `true` when the target answered.
type OnDone = Box<dyn FnOnce(bool) + Send>;

/// Sends a signed request on (to the drawn executor, or to one of the
/// host's ML nodes when `routed_to` names it) and relays the answer. `Err`
/// when nothing came back, or — for a routed request — a status worth
/// retrying elsewhere, before any byte reached the client. `on_done` runs
/// when the relay ends.
#[allow(clippy::too_many_arguments)]
async fn forward_once(
    url: String,
    headers: HeaderMap,
    body: Bytes,
    ta: Address,
    seed_height: u64,
    path: &'static str,
    routed_to: Option<String>,
    on_done: Option<OnDone>,
) -> Result<Response, String> {
    let (tx, rx) = unbounded_channel::<Result<Bytes, std::io::Error>>();
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<Result<(u16, String), String>>();
    let target = format!("{url}{path}");
    let routed = routed_to.is_some();
    tokio::task::spawn_blocking(move || {
        // Runs `on_done` however the relay ends.
        struct Done(Option<OnDone>, bool);
        impl Drop for Done {
            fn drop(&mut self) {
                if let Some(f) = self.0.take() {
                    f(self.1);
                }
            }
        }
        let mut done = Done(on_done, false);
        let mut request = ureq::post(&target).set("content-type", "application/json");
        for name in [HEADER_PUBKEY, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                request = request.set(name, v);
            }
        }
        request = request
            .set(HEADER_TRANSFER_AGENT, &ta.to_bech32())
            .set(HEADER_SEED_HEIGHT, &seed_height.to_string());
        if let Some(node) = &routed_to {
            request = request.set(HEADER_ROUTED, node);
        }
        let response = match request.send_bytes(&body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => {
                let _ = head_tx.send(Err(format!("{e}")));
                return;
            }
        };
        let content_type = response
            .header("content-type")
            .unwrap_or("application/json")
            .to_string();
        let status = response.status();
        if routed && retry_elsewhere(status) {
            let _ = head_tx.send(Err(format!("answered {status}")));
            return;
        }
        done.1 = true;
        let _ = head_tx.send(Ok((status, content_type)));
        kiln_client::inference::relay_body(response, |chunk| {
            tx.send(chunk.map(Bytes::from)).is_ok()
        });
    });
    match head_rx.await {
        Ok(Ok((status, content_type))) => {
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Ok(Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the forwarding task stopped".into()),
    }
}

/// Sends the market's queued messages, each in its own `MsgExec`.
pub struct InferenceDuty {
    outbox: MarketOutbox,
    sent: u64,
    refused: u64,
    /// Per queued message (by kind): how many times CheckTx refused it for a
    /// stale account sequence.
    sequence_retries: BTreeMap<String, u32>,
    /// Messages CheckTx accepted whose block has not been seen yet: (kind,
    /// message, tx hash, chain height when it was first looked for — `None`
    /// until then: a tick's height can be blocks behind the node when the
    /// worker was busy —, times sent).
    in_flight: Vec<(String, Any, String, Option<u64>, u32)>,
    /// Kind -> times sent so far, for a message being sent again.
    resends: BTreeMap<String, u32>,
    /// The journal's copy, struck off as blocks take messages.
    pending: Option<Arc<crate::pending::PendingMessages>>,
}

/// Blocks after which an accepted message not found in any block is taken
/// as dropped from the mempool (a recheck can drop it) and sent again.
const RESEND_AFTER_BLOCKS: u64 = 8;
/// Times a message is sent at most (the first send included).
const MAX_SENDS: u32 = 3;

/// A message refused for a stale account sequence (another duty's tx got in
/// first, or a tx left the mempool) is sent again at the next block, this
/// many times at most: dropping it would lose an inference's start — the
/// requester was already answered — or an executor's pay.
const MAX_SEQUENCE_RETRIES: u32 = 5;

impl InferenceDuty {
    pub fn new(outbox: MarketOutbox) -> Self {
        InferenceDuty {
            outbox,
            sent: 0,
            refused: 0,
            sequence_retries: BTreeMap::new(),
            in_flight: Vec::new(),
            resends: BTreeMap::new(),
            pending: None,
        }
    }

    /// Strikes messages off `pending` (the journal the [`Market`] writes)
    /// once a block holds them or the chain refuses them for good.
    pub fn with_journal(mut self, pending: Arc<crate::pending::PendingMessages>) -> Self {
        self.pending = Some(pending);
        self
    }

    fn confirm(&self, msg: &Any) {
        if let Some(p) = &self.pending {
            p.confirm(msg);
        }
    }

    /// Sends again what CheckTx accepted but no block took: an inference's
    /// start or finish left only in a dropped mempool entry would never
    /// settle (the requester answered, the executor unpaid). A message a
    /// block already holds is refused by the chain the second time, which
    /// changes nothing.
    fn requeue_dropped(&mut self, height: u64, out: &mut Outbox<'_>) -> Vec<(String, Any)> {
        let mut again = Vec::new();
        let mut still = Vec::new();
        for (kind, msg, hash, first_looked, sends) in std::mem::take(&mut self.in_flight) {
            let Some(since) = first_looked else {
                still.push((kind, msg, hash, Some(height), sends));
                continue;
            };
            match out.chain().tx_result(&hash) {
                Ok(Some(_)) => self.confirm(&msg),
                Ok(None) if height < since.saturating_add(RESEND_AFTER_BLOCKS) => {
                    still.push((kind, msg, hash, Some(since), sends))
                }
                Ok(None) if sends < MAX_SENDS => {
                    tracing::warn!(%kind, %hash, "no block took this message; sending it again");
                    self.resends.insert(kind.clone(), sends);
                    again.push((kind, msg));
                }
                Ok(None) => {
                    tracing::warn!(%kind, %hash, sends, "no block took this message; giving up");
                    self.refused += 1;
                    self.confirm(&msg);
                }
                // The node is unreachable: ask again next tick.
                Err(_) => still.push((kind, msg, hash, Some(since), sends)),
            }
        }
        self.in_flight = still;
        again
    }
}

pub const INFERENCE_TYPE_URLS: &[&str] = {
    use kiln_framework::MsgKind;
    use kiln_inference::msgs::{
        CommitValidationSeed, DisputeVote, FinishInference, RevealValidationSeed, StartInference,
        Validation,
    };
    &[
        StartInference::TYPE_URL,
        FinishInference::TYPE_URL,
        Validation::TYPE_URL,
        DisputeVote::TYPE_URL,
        CommitValidationSeed::TYPE_URL,
        RevealValidationSeed::TYPE_URL,
    ]
};

impl Duty for InferenceDuty {
    fn name(&self) -> &'static str {
        "inference"
    }

    fn msg_type_urls(&self) -> &'static [&'static str] {
        INFERENCE_TYPE_URLS
    }

    fn on_tick(&mut self, tick: &ChainTick, out: &mut Outbox<'_>) -> Result<Tick> {
        let dropped = self.requeue_dropped(tick.height, out);
        let mut queued = match self.outbox.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => return Err(anyhow!("the inference outbox lock is poisoned")),
        };
        queued.extend(dropped);
        let mut later = Vec::new();
        for (i, (kind, msg)) in queued.iter().enumerate() {
            match out.send(kind, vec![msg.clone()]) {
                Ok(receipt) if receipt.ok() => {
                    self.sent += 1;
                    self.sequence_retries.remove(kind);
                    let sends = self.resends.remove(kind).unwrap_or(0) + 1;
                    self.in_flight.push((
                        kind.clone(),
                        msg.clone(),
                        receipt.hash.clone(),
                        None,
                        sends,
                    ));
                }
                Ok(receipt) if receipt.hash.is_empty() && receipt.code == u32::MAX => {
                    later.push((kind.clone(), msg.clone()))
                }
                Ok(receipt)
                    if receipt.code == kiln_framework::error::codes::WRONG_SEQUENCE
                        && self.sequence_retries.get(kind).copied().unwrap_or(0)
                            < MAX_SEQUENCE_RETRIES =>
                {
                    *self.sequence_retries.entry(kind.clone()).or_insert(0) += 1;
                    later.push((kind.clone(), msg.clone()))
                }
                Ok(_) => {
                    self.refused += 1;
                    self.sequence_retries.remove(kind);
                    self.confirm(msg);
                }
                Err(e) => {
                    // The node is unreachable: keep this and the rest for the next tick.
                    later.extend(queued[i..].iter().cloned());
                    if let Ok(mut q) = self.outbox.lock() {
                        later.append(&mut q);
                        *q = later;
                    }
                    return Err(e);
                }
            }
        }
        if !later.is_empty() {
            if let Ok(mut q) = self.outbox.lock() {
                later.append(&mut q);
                *q = later;
            }
        }
        Ok(Tick::Idle)
    }

    fn status(&self) -> Value {
        json!({"sent": self.sent, "refused": self.refused})
    }
}

#[cfg(test)]
mod routing_tests {
    use super::*;

    fn node(id: &str) -> NodeTarget {
        NodeTarget {
            id: id.into(),
            url: format!("http://{id}.test"),
            models: vec!["m".into()],
        }
    }

    #[test]
    fn the_least_loaded_target_wins_and_ties_take_turns() {
        let (a, b) = (node("a"), node("b"));
        // A busy front worker hands the request to the idle node.
        assert_eq!(
            choose_route(Some(3), &[(a.clone(), 1), (b.clone(), 0)], 0),
            RouteChoice::Node(b.clone())
        );
        // An idle front worker keeps it when every node is busier.
        assert_eq!(
            choose_route(Some(0), &[(a.clone(), 2), (b.clone(), 1)], 7),
            RouteChoice::Local
        );
        // Equal loads go round: local, a, b, local, …
        let turns: Vec<RouteChoice> = (0..4)
            .map(|t| choose_route(Some(0), &[(a.clone(), 0), (b.clone(), 0)], t))
            .collect();
        assert_eq!(
            turns,
            vec![
                RouteChoice::Local,
                RouteChoice::Node(a.clone()),
                RouteChoice::Node(b),
                RouteChoice::Local
            ]
        );
        // No node left (all set aside or tried): served here.
        assert_eq!(choose_route(Some(5), &[], 1), RouteChoice::Local);
    }

    #[test]
    fn overloaded_or_failing_nodes_are_retried_elsewhere_but_refusals_are_not() {
        for s in [429, 500, 502, 503] {
            assert!(retry_elsewhere(s), "{s}");
        }
        for s in [200, 400, 401, 402, 409, 421] {
            assert!(!retry_elsewhere(s), "{s}");
        }
    }
}

#[cfg(test)]
mod inference_duty_tests {
    use super::*;
    use crate::worker::chain::{ChainClient, TxReceipt};
    use crate::worker::with_test_outbox;
    use kiln_framework::error::codes::WRONG_SEQUENCE;

    /// A node whose CheckTx answers each broadcast with the next scripted code.
    struct ScriptedChain {
        codes: Vec<u32>,
        broadcasts: usize,
        /// Whether a block took what CheckTx accepted.
        in_blocks: bool,
    }

    impl ChainClient for ScriptedChain {
        fn chain_id(&mut self) -> Result<String> {
            Ok("test".into())
        }
        fn query_raw(&mut self, path: &str, _data: &[u8]) -> Result<Vec<u8>> {
            Err(anyhow!("no query {path} here"))
        }
        fn tx_result(&mut self, _hash: &str) -> Result<Option<(u32, String)>> {
            Ok(self.in_blocks.then(|| (0, String::new())))
        }
        fn broadcast(&mut self, _msgs: Vec<Any>) -> Result<TxReceipt> {
            let code = self.codes.get(self.broadcasts).copied().unwrap_or(0);
            self.broadcasts += 1;
            Ok(TxReceipt {
                hash: format!("{:064X}", self.broadcasts),
                code,
                codespace: if code == 0 {
                    String::new()
                } else {
                    "sdk".into()
                },
                log: format!("code {code}"),
            })
        }
    }

    fn start_msg() -> Any {
        Any {
            type_url: "/kiln.inference.v1.MsgStartInference".into(),
            value: vec![1, 2, 3],
        }
    }

    /// Ticks the duty once per height while messages stay queued.
    fn tick_until_empty(
        duty: &mut InferenceDuty,
        chain: &mut ScriptedChain,
        outbox: &MarketOutbox,
    ) {
        for height in 10..30 {
            with_test_outbox(chain, height, |tick, out| duty.on_tick(tick, out)).unwrap();
            if outbox.lock().unwrap().is_empty() {
                return;
            }
        }
    }

    #[test]
    fn a_start_refused_for_a_stale_sequence_is_sent_again_at_the_next_block() {
        let outbox = MarketOutbox::default();
        outbox
            .lock()
            .unwrap()
            .push(("inference-start-0badc0de".into(), start_msg()));
        let mut duty = InferenceDuty::new(outbox.clone());
        let mut chain = ScriptedChain {
            codes: vec![WRONG_SEQUENCE, WRONG_SEQUENCE, 0],
            broadcasts: 0,
            in_blocks: true,
        };
        tick_until_empty(&mut duty, &mut chain, &outbox);
        assert_eq!(chain.broadcasts, 3, "two refusals, then accepted");
        assert_eq!(duty.status()["sent"], 1);
        assert_eq!(duty.status()["refused"], 0);
    }

    #[test]
    fn a_start_refused_for_good_or_stale_too_often_is_dropped() {
        let outbox = MarketOutbox::default();
        outbox
            .lock()
            .unwrap()
            .push(("inference-start-1".into(), start_msg()));
        outbox
            .lock()
            .unwrap()
            .push(("inference-start-2".into(), start_msg()));
        let mut duty = InferenceDuty::new(outbox.clone());
        // The first is refused for good (an unknown model, code 5); the
        // second's sequence stays stale past the retry limit.
        let mut codes = vec![5];
        codes.extend(std::iter::repeat_n(
            WRONG_SEQUENCE,
            1 + MAX_SEQUENCE_RETRIES as usize,
        ));
        let mut chain = ScriptedChain {
            codes,
            broadcasts: 0,
            in_blocks: true,
        };
        tick_until_empty(&mut duty, &mut chain, &outbox);
        assert!(outbox.lock().unwrap().is_empty());
        assert_eq!(chain.broadcasts, 2 + MAX_SEQUENCE_RETRIES as usize);
        assert_eq!(duty.status()["sent"], 0);
        assert_eq!(duty.status()["refused"], 2);
    }

    #[test]
    fn a_message_no_block_took_is_sent_again_a_bounded_number_of_times() {
        for (in_blocks, expected_sends) in [(true, 1), (false, MAX_SENDS as usize)] {
            let outbox = MarketOutbox::default();
            outbox
                .lock()
                .unwrap()
                .push(("inference-start-5ca1ab1e".into(), start_msg()));
            let mut duty = InferenceDuty::new(outbox.clone());
            let mut chain = ScriptedChain {
                codes: vec![],
                broadcasts: 0,
                in_blocks,
            };
            for height in 10..(10 + 4 * RESEND_AFTER_BLOCKS) {
                with_test_outbox(&mut chain, height, |tick, out| duty.on_tick(tick, out)).unwrap();
            }
            assert_eq!(chain.broadcasts, expected_sends, "in a block: {in_blocks}");
            assert!(duty.in_flight.is_empty(), "nothing left waiting");
        }
    }
}
