//! The validator's side of paid inference (SPEC §5 "Validation"), on a
//! worker that serves a model on chain:
//!
//! - **Payload serving** ([`serve_payload`]): an executor hands a kept
//!   payload only to a host of the model's serving set, authenticated by a
//!   signature of that host's ML key (or account key) over `(chain, id,
//!   timestamp, host)`; the key must hold the host's grant for
//!   `MsgValidation`.
//! - **Seeds** ([`SeedBook`]): for every serving period the worker draws
//!   a secret seed, keeps it on disk (restart-safe), commits to it on chain
//!   before the period starts (`MsgCommitValidationSeed`) and reveals it
//!   once the period is over (`MsgRevealValidationSeed`); the chain then
//!   recomputes its duties and records the ones it skipped.
//! - **Duty loop** ([`spawn`]): the worker follows each block's
//!   `EventInferenceFinished` for its model and decides its duty exactly as
//!   the chain will ([`kiln_inference::duties`]: `SHA256(seed ‖ id)` below
//!   its weight's share of the rate `validation_rate_micro` the chain fixed
//!   at the finish), fetches the payload from the executor, checks it against the
//!   settled hashes, replays prompt + response on its own model (one
//!   prefill, teacher forcing) and posts `MsgValidation` with the score. A
//!   payload that cannot be had, or does not match its hashes, scores 0.
//!   It also replays every inference of its model that another host
//!   disputes and votes (`MsgDisputeVote`, invalid when its own score is
//!   below the model's threshold).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use axum::http::HeaderMap;
use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use kiln_client::rpc::RpcClient;
use kiln_framework::Address;
use kiln_inference::duties;
use kiln_inference::msgs::MsgValidation;
use serde_json::Value;

use crate::market::{Market, NodeTarget, Payload, RouteChoice};
use crate::serve::http::ServeApp;
use crate::serve::openai::ApiError;
use kiln_inference::state::ServingSet;

pub const HEADER_VALIDATOR: &str = "x-kiln-validator";
pub const HEADER_VALIDATOR_PUBKEY: &str = "x-kiln-validator-pubkey";
/// The requester's headers of the same names carry the payload request's
/// timestamp and signature.
use kiln_inference::request::{HEADER_SIGNATURE, HEADER_TIMESTAMP};

const VALIDATION_TYPE_URL: &str =
    <kiln_inference::msgs::Validation as kiln_framework::MsgKind>::TYPE_URL;

/// The bytes a host's key signs for a request about inference `id`
/// (`domain` keeps one kind of request from passing for another).
fn request_sign_bytes(
    domain: &[u8],
    chain_id: &str,
    id: &[u8; 32],
    timestamp: i64,
    host: &Address,
) -> Vec<u8> {
    let mut out = domain.to_vec();
    out.extend_from_slice(&(chain_id.len() as u32).to_be_bytes());
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(host.as_bytes());
    out
}

/// What a validator signs to fetch a payload.
pub fn payload_sign_bytes(
    chain_id: &str,
    id: &[u8; 32],
    timestamp: i64,
    host: &Address,
) -> Vec<u8> {
    request_sign_bytes(b"kiln/payload-request/v1", chain_id, id, timestamp, host)
}

/// What the host's own worker signs to have one of its ML nodes replay an
/// inference (a prefix of its own, so a payload request's signature cannot
/// be reused as one).
pub fn replay_sign_bytes(chain_id: &str, id: &[u8; 32], timestamp: i64, host: &Address) -> Vec<u8> {
    request_sign_bytes(b"kiln/replay-request/v1", chain_id, id, timestamp, host)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError {
        status: 403,
        kind: "permission_error",
        message: message.into(),
        param: None,
        code: Some("not_a_validator"),
        retry_after_secs: None,
    }
}

/// Whether `key` may fetch payloads for `host`: the host's own key, or a
/// key the host granted `MsgValidation`.
fn key_acts_for(rpc: &RpcClient, host: &Address, key: &Address) -> Result<bool> {
    if host == key {
        return Ok(true);
    }
    let grants = kiln_client::query::granter_grants(rpc, &host.to_bech32(), 0)?;
    Ok(grants.iter().any(|g| {
        g.grantee == key.to_bech32() && g.authorization.as_ref().is_some_and(|a| {
            <cosmrs::proto::cosmos::authz::v1beta1::GenericAuthorization as prost::Message>::decode(
                a.value.as_slice(),
            )
            .is_ok_and(|ga| ga.msg == VALIDATION_TYPE_URL)
        })
    }))
}

/// `GET /kiln/payload/{id}`: the payload, to an authenticated host of the
/// model's serving set.
pub async fn serve_payload(
    app: Arc<ServeApp>,
    headers: HeaderMap,
    id_hex: String,
) -> Result<Value, ApiError> {
    let market = app
        .market
        .get()
        .cloned()
        .ok_or_else(|| ApiError::not_found_route("GET", "/kiln/payload"))?;
    let id: [u8; 32] = hex::decode(&id_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::invalid(None, "the id must be 64 hex digits"))?;
    let chain_id = market.chain_id.clone();
    let (host, pubkey) = verify_signed_headers(&headers, |ts, host| {
        payload_sign_bytes(&chain_id, &id, ts, host)
    })?;
    let payload = market.payload(&id).ok_or_else(|| {
        ApiError::invalid(None, format!("no payload kept for {id_hex}")).with_code("not_found")
    })?;
    let model = app.model_name.clone();
    let signer = Address::from_pubkey(&pubkey);
    let rpc = RpcClient::new(market.node_url());
    let allowed = tokio::task::spawn_blocking(move || -> Result<bool> {
        let in_set = crate::market::serving_set(&rpc, &model, 0)?
            .entries
            .iter()
            .any(|e| e.host == host && e.weight > 0);
        Ok(in_set && key_acts_for(&rpc, &host, &signer)?)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::unavailable(format!("cannot check the validator on chain: {e:#}")))?;
    if !allowed {
        return Err(forbidden(format!(
            "{host} is not a host of {} holding a MsgValidation grant for this key",
            app.model_name
        )));
    }
    Ok(payload)
}

/// The signed headers of a payload or replay request: (host, signer's
/// public key) once the signature over `sign_bytes(timestamp, host)`
/// verifies and the timestamp is fresh.
fn verify_signed_headers(
    headers: &HeaderMap,
    sign_bytes: impl FnOnce(i64, &Address) -> Vec<u8>,
) -> Result<(Address, Vec<u8>), ApiError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(host), Some(pubkey), Some(ts), Some(sig)) = (
        get(HEADER_VALIDATOR),
        get(HEADER_VALIDATOR_PUBKEY),
        get(HEADER_TIMESTAMP),
        get(HEADER_SIGNATURE),
    ) else {
        return Err(forbidden(format!(
            "sign the request with {HEADER_VALIDATOR}, {HEADER_VALIDATOR_PUBKEY}, {HEADER_TIMESTAMP}, {HEADER_SIGNATURE}"
        )));
    };
    let host = Address::parse(host).map_err(|e| forbidden(format!("{HEADER_VALIDATOR}: {e}")))?;
    let pubkey = hex::decode(pubkey).map_err(|_| forbidden("bad public key"))?;
    let timestamp: i64 = ts.parse().map_err(|_| forbidden("bad timestamp"))?;
    if !kiln_inference::request::timestamp_is_fresh(timestamp, unix_now()) {
        return Err(forbidden("the request is older than 60 s"));
    }
    let key = VerifyingKey::from_sec1_bytes(&pubkey).map_err(|_| forbidden("bad public key"))?;
    let signature = hex::decode(sig)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| forbidden("bad signature"))?;
    key.verify(&sign_bytes(timestamp, &host), &signature)
        .map_err(|_| forbidden("the signature does not verify"))?;
    Ok((host, pubkey))
}

/// What one of the host's ML nodes answered a replay request.
enum NodeReplay {
    Scored(u64),
    /// The node could not have or check the payload.
    NoPayload(String),
}

/// What a replay request asks.
#[derive(serde::Deserialize, serde::Serialize)]
struct ReplayRequest {
    /// The inference id, 64 hex digits.
    id: String,
    /// Its executor (bech32): where the payload is fetched.
    executor: String,
}

/// The error code of a replay whose payload could not be had or checked:
/// the executor's failure, not the node's (the host's worker does not try
/// another node for it).
const NO_PAYLOAD: &str = "payload_unavailable";

/// `POST /kiln/replay` on one of a host's ML nodes: replays an inference
/// for the host's validation duty and answers `{"score_micro": n}`. Only
/// the host's own keys holding its `MsgValidation` grant may ask; the
/// host's own worker keeps the duty itself (seed, choice, `MsgValidation`).
pub async fn serve_replay(
    app: Arc<ServeApp>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Value, ApiError> {
    let replayer = app
        .replayer
        .get()
        .cloned()
        .ok_or_else(|| ApiError::not_found_route("POST", "/kiln/replay"))?;
    let request: ReplayRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            None,
            format!("the body must be {{\"id\": hex, \"executor\": address}}: {e}"),
        )
    })?;
    let id: [u8; 32] = hex::decode(&request.id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::invalid(Some("id"), "the id must be 64 hex digits"))?;
    let executor = Address::parse(&request.executor)
        .map_err(|e| ApiError::invalid(Some("executor"), format!("executor: {e}")))?;
    let chain_id = replayer.market.chain_id.clone();
    let (host, pubkey) = verify_signed_headers(&headers, |ts, host| {
        replay_sign_bytes(&chain_id, &id, ts, host)
    })?;
    if host != replayer.market.host {
        return Err(forbidden(format!(
            "this worker replays for its host {} only",
            replayer.market.host
        )));
    }
    let signer = Address::from_pubkey(&pubkey);
    let worker = replayer.clone();
    let allowed = tokio::task::spawn_blocking(move || key_acts_for(&worker.rpc, &host, &signer))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::unavailable(format!("cannot check the key on chain: {e:#}")))?;
    if !allowed {
        return Err(forbidden(format!(
            "the key is not {host}'s and holds no MsgValidation grant from it"
        )));
    }
    let score = tokio::task::spawn_blocking(move || replayer.fetch_and_replay(&id, &executor))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            ApiError {
                status: 422,
                ..ApiError::invalid(None, format!("{e:#}"))
            }
            .with_code(NO_PAYLOAD)
        })?;
    tracing::info!(
        "replayed inference {} for the host's validation duty: score {score}",
        request.id
    );
    Ok(serde_json::json!({ "id": request.id, "score_micro": score }))
}

/// The value of attribute `key` of an event in a `block_results` answer.
fn event_attribute(event: &Value, key: &str) -> Option<String> {
    event["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"].as_str())
        .map(str::to_string)
}

/// An event's inference id and executor.
fn parse_event_ids(id: &str, executor: &str) -> Result<([u8; 32], Address)> {
    let executor = Address::parse(executor).map_err(|e| anyhow!("event executor: {e}"))?;
    let id: [u8; 32] = hex::decode(id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("event id is not 32 bytes of hex"))?;
    Ok((id, executor))
}

/// Blocks to wait for a queued seed message to show on chain before
/// sending it again.
const SEED_RESEND_BLOCKS: u64 = 10;

/// This worker's validation seeds by serving period, kept in a JSON file
/// (written before a commitment is sent, so a restart reveals the seed it
/// committed to).
pub struct SeedBook {
    path: PathBuf,
    seeds: BTreeMap<u64, [u8; 32]>,
    /// (period, reveal) → height it was last queued at.
    queued: BTreeMap<(u64, bool), u64>,
}

impl SeedBook {
    pub fn open(path: PathBuf) -> Result<Self> {
        let seeds = match std::fs::read(&path) {
            Ok(bytes) => {
                let hex_seeds: BTreeMap<u64, String> = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a seed file", path.display()))?;
                let mut seeds = BTreeMap::new();
                for (period, h) in hex_seeds {
                    let seed: [u8; 32] = hex::decode(&h)
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| {
                            anyhow!(
                                "{}: period {period}'s seed is not 32 bytes of hex",
                                path.display()
                            )
                        })?;
                    seeds.insert(period, seed);
                }
                seeds
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(SeedBook {
            path,
            seeds,
            queued: BTreeMap::new(),
        })
    }

    pub fn seed(&self, period: u64) -> Option<[u8; 32]> {
        self.seeds.get(&period).copied()
    }

    /// The period's seed, drawn and saved first when there is none.
    pub fn seed_or_new(&mut self, period: u64) -> Result<[u8; 32]> {
        if let Some(seed) = self.seed(period) {
            return Ok(seed);
        }
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        self.seeds.insert(period, seed);
        self.save()?;
        Ok(seed)
    }

    /// Whether a commitment (or reveal) for `period` should be queued now,
    /// and if so notes it as queued at `height`.
    fn due(&mut self, period: u64, reveal: bool, height: u64) -> bool {
        match self.queued.get(&(period, reveal)) {
            Some(at) if height < at.saturating_add(SEED_RESEND_BLOCKS) => false,
            _ => {
                self.queued.insert((period, reveal), height);
                true
            }
        }
    }

    fn forget_before(&mut self, period: u64) -> Result<()> {
        let before = self.seeds.len();
        self.seeds.retain(|p, _| *p >= period);
        self.queued.retain(|(p, _), _| *p >= period);
        if self.seeds.len() != before {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let hex_seeds: BTreeMap<u64, String> = self
            .seeds
            .iter()
            .map(|(p, s)| (*p, hex::encode(s)))
            .collect();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&hex_seeds)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

/// Progress of the duty loop, for `/status`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ValidatorStatus {
    /// The chain's serving period (its validation seeds' period).
    pub serving_period: u64,
    pub followed_height: u64,
    pub finished_seen: u64,
    pub duties: u64,
    pub validated: u64,
    pub flagged: u64,
    /// Replays run on this worker, and on each of the host's ML nodes.
    pub replayed_here: u64,
    pub replayed_on_nodes: BTreeMap<String, u64>,
    /// Replays running now.
    pub replaying: usize,
    pub last_error: Option<String>,
}

/// Starts the duty loop on its own thread; its progress shows in the
/// worker's `/status` (`inference_validation`).
pub fn spawn(
    replayer: Arc<Replayer>,
    status: crate::worker::SharedStatus,
    seeds_path: PathBuf,
) -> Result<()> {
    let seeds = SeedBook::open(seeds_path)?;
    std::thread::Builder::new()
        .name("validator".into())
        .spawn(move || {
            let mut duty = DutyLoop {
                rpc: RpcClient::new(replayer.market.node_url()),
                replayer,
                seeds,
                status,
                next_height: 0,
                pending: BTreeMap::new(),
                replays: ReplaysInFlight::default(),
            };
            loop {
                if let Err(e) = duty.step() {
                    tracing::debug!(error = %format!("{e:#}"), "validator step");
                    duty.set(|s| s.last_error = Some(format!("{e:#}")));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })?;
    Ok(())
}

/// An inference owed a validation (or a dispute vote), and when its
/// payload was first asked for.
struct Owed {
    executor: Address,
    since: Instant,
    /// A vote on an open dispute rather than a validation.
    vote: bool,
}

struct DutyLoop {
    rpc: RpcClient,
    /// The host's market and model, and the replays.
    replayer: Arc<Replayer>,
    seeds: SeedBook,
    status: crate::worker::SharedStatus,
    next_height: u64,
    pending: BTreeMap<[u8; 32], Owed>,
    replays: ReplaysInFlight,
}

/// Replays the duty loop runs at once at most (one per place to run them).
const MAX_PARALLEL_REPLAYS: usize = 8;

/// How long an executor has to hand over a payload before it scores 0.
const PAYLOAD_PATIENCE: Duration = Duration::from_secs(30);

impl DutyLoop {
    fn market(&self) -> &Market {
        &self.replayer.market
    }

    fn app(&self) -> &ServeApp {
        &self.replayer.app
    }

    fn set(&self, f: impl FnOnce(&mut ValidatorStatus)) {
        set_status(&self.status, f);
    }

    fn step(&mut self) -> Result<()> {
        let status = self.rpc.status()?;
        let latest = kiln_client::rpc::json_u64(&status["sync_info"]["latest_block_height"])
            .ok_or_else(|| anyhow!("the node's status has no height"))?;
        if self.next_height == 0 {
            self.next_height = latest; // follow from now on
        }
        if latest >= self.next_height {
            self.keep_seeds(latest)?;
        }
        while self.next_height <= latest {
            self.scan_block(self.next_height)?;
            self.set(|s| s.followed_height = self.next_height);
            self.next_height += 1;
        }
        // Replays that ended since the last step: their validations (or
        // votes) are queued, or they wait to be tried again.
        let ended = self.replays.ended();
        if self.pending.is_empty() && ended.is_empty() {
            return Ok(());
        }
        let threshold = self.threshold()?;
        for (id, score) in ended {
            self.record_replay(id, score, threshold);
        }
        // As many replays at once as there are places to run them (this
        // worker and each enabled node serving the model): each picks the
        // least loaded, so they spread instead of queueing one by one. Each
        // runs on its own thread, so a slow or hung ML node holds up only
        // its own replay, never this loop (seeds, other validations, votes).
        let nodes = Arc::new(
            self.market()
                .serving_nodes(&self.app().model_name)
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %format!("{e:#}"), "cannot read the host's ML nodes; replaying here");
                    Vec::new()
                }),
        );
        let width = (nodes.len() + 1).min(MAX_PARALLEL_REPLAYS);
        // Dispute votes first: they have a deadline (`dispute_blocks`),
        // owed validations do not; under heavy traffic a vote queued behind
        // a long backlog of validations missed it and let a caught
        // substitute keep its pay.
        let mut waiting: Vec<(&[u8; 32], &Owed)> = self
            .pending
            .iter()
            .filter(|(id, _)| !self.replays.is_running(id))
            .collect();
        waiting.sort_by_key(|(_, owed)| !owed.vote);
        let to_start: Vec<([u8; 32], Address)> = waiting
            .into_iter()
            .take(width.saturating_sub(self.replays.running()))
            .map(|(id, o)| (*id, o.executor))
            .collect();
        for (id, executor) in to_start {
            let (replayer, status, nodes) =
                (self.replayer.clone(), self.status.clone(), nodes.clone());
            self.replays.start(id, move || {
                replay_owed(&replayer, &status, &id, &executor, &nodes)
            })?;
        }
        let running = self.replays.running();
        self.set(|s| s.replaying = running);
        Ok(())
    }

    /// Finished inferences of our model in block `height` that we owe.
    fn scan_block(&mut self, height: u64) -> Result<()> {
        let results = self
            .rpc
            .call_uri("block_results", &[("height", &height.to_string())])?;
        let mut finished = Vec::new();
        let mut disputes = Vec::new();
        for tx in results["txs_results"].as_array().into_iter().flatten() {
            for event in tx["events"].as_array().into_iter().flatten() {
                let attr = |k: &str| event_attribute(event, k);
                if event["type"] == "kiln.inference.v1.EventDisputeOpened" {
                    if let (Some(id), Some(executor), Some(validator)) =
                        (attr("id"), attr("executor"), attr("validator"))
                    {
                        disputes.push((id, executor, validator));
                    }
                    continue;
                }
                if event["type"] != "kiln.inference.v1.EventInferenceFinished" {
                    continue;
                }
                if let (Some(id), Some(executor), Some(model), Some(period), Some(rate)) = (
                    attr("id"),
                    attr("executor"),
                    attr("model"),
                    attr("period").and_then(|p| p.parse::<u64>().ok()),
                    attr("validation_rate_micro").and_then(|r| r.parse::<u64>().ok()),
                ) {
                    finished.push((id, executor, model, period, rate));
                }
            }
        }
        finished.retain(|(_, _, model, _, _)| *model == self.app().model_name);
        // The serving period's weights, read once for all the block's
        // inferences: as of the block before (a settle at the end of this
        // block already holds the next period's set).
        let serving = if finished.is_empty() {
            ServingSet::default()
        } else {
            crate::market::serving_set(&self.rpc, &self.app().model_name, height.saturating_sub(1))?
        };
        for (id, executor, _, period, rate) in finished {
            let (id, executor) = parse_event_ids(&id, &executor)?;
            self.set(|s| s.finished_seen += 1);
            if !self.owes(&id, &executor, &serving, period, rate) {
                continue;
            }
            self.set(|s| s.duties += 1);
            self.pending.insert(
                id,
                Owed {
                    executor,
                    since: Instant::now(),
                    vote: false,
                },
            );
        }
        // Disputes over our model's inferences: every other host of the
        // model replays and votes (the opener's low score is its vote).
        let me = self.market().host.to_bech32();
        for (id, executor, validator) in disputes {
            if executor == me || validator == me {
                continue;
            }
            let (id, executor) = parse_event_ids(&id, &executor)?;
            let serves = kiln_client::query::inference(&self.rpc, &hex::encode(id), 0)?
                .is_some_and(|r| r["model"] == self.app().model_name);
            // A validation we owe already stays one: on chain, its low
            // score is our vote, and it discharges the duty.
            if serves {
                self.pending.entry(id).or_insert(Owed {
                    executor,
                    since: Instant::now(),
                    vote: true,
                });
            }
        }
        Ok(())
    }

    /// Our duty for `id`, as the chain will recompute it: `SHA256(seed ‖
    /// id)` below our weight's share of the rate the chain fixed.
    fn owes(
        &self,
        id: &[u8; 32],
        executor: &Address,
        serving: &ServingSet,
        period: u64,
        rate_micro: u64,
    ) -> bool {
        let Some(seed) = self.seeds.seed(period) else {
            return false; // no seed of ours covers that period
        };
        let p = duties::probability_in(serving, executor, &self.market().host, rate_micro);
        duties::is_assigned(&seed, id, p)
    }

    /// Commits seeds for the serving period in force and the next one, and
    /// reveals last period's, each once per [`SEED_RESEND_BLOCKS`] until the
    /// chain shows it.
    fn keep_seeds(&mut self, height: u64) -> Result<()> {
        let host = self.market().host;
        let on_chain = kiln_client::query::validation_seeds(&self.rpc, &host.to_bech32(), 0)?;
        let period = kiln_client::rpc::json_u64(&on_chain["period"])
            .ok_or_else(|| anyhow!("the validation-seeds answer has no period"))?;
        let chain_seed = |p: u64| {
            on_chain["seeds"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| kiln_client::rpc::json_u64(&s["period"]) == Some(p))
                .map(|s| s["revealed"].as_bool().unwrap_or(false))
        };
        for p in [period, period + 1] {
            if chain_seed(p).is_some() || !self.seeds.due(p, false, height) {
                continue;
            }
            let seed = self.seeds.seed_or_new(p)?;
            let commitment = duties::seed_commitment(&self.market().chain_id, p, &host, &seed);
            tracing::info!(period = p, "committing a validation seed");
            let msg = kiln_inference::msgs::MsgCommitValidationSeed {
                host: host.to_bech32(),
                period: p,
                commitment: commitment.to_vec(),
            };
            self.market()
                .queue_seed(p, false, crate::worker::any_of(&msg));
        }
        if let Some(last) = period.checked_sub(1) {
            if chain_seed(last) == Some(false) && self.seeds.due(last, true, height) {
                if let Some(seed) = self.seeds.seed(last) {
                    tracing::info!(period = last, "revealing a validation seed");
                    let msg = kiln_inference::msgs::MsgRevealValidationSeed {
                        host: host.to_bech32(),
                        period: last,
                        seed: seed.to_vec(),
                    };
                    self.market()
                        .queue_seed(last, true, crate::worker::any_of(&msg));
                }
            }
        }
        self.seeds.forget_before(period.saturating_sub(1))?;
        self.set(|s| s.serving_period = period);
        Ok(())
    }

    /// Acts on the replay of owed `id`: queues the validation (or dispute
    /// vote) with its score; a replay that failed is tried again later,
    /// and scores 0 once the executor has had [`PAYLOAD_PATIENCE`].
    fn record_replay(&mut self, id: [u8; 32], replayed: Result<u64>, threshold: u64) {
        let Some(owed) = self.pending.get(&id) else {
            return;
        };
        let score = match replayed {
            Ok(score) => score,
            Err(e) if owed.since.elapsed() < PAYLOAD_PATIENCE => {
                tracing::debug!(error = %format!("{e:#}"), id = %hex::encode(id), "payload not validated yet");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), id = %hex::encode(id), "no valid payload from the executor: scoring 0");
                0
            }
        };
        let vote = owed.vote;
        self.pending.remove(&id);
        if vote {
            let invalid = score < threshold;
            tracing::info!(id = %hex::encode(id), score_micro = score, invalid, "dispute vote queued");
            let msg = kiln_inference::msgs::MsgDisputeVote {
                voter: self.market().host.to_bech32(),
                id: id.to_vec(),
                invalid,
            };
            self.market()
                .queue_validation(&id, crate::worker::any_of(&msg));
            return;
        }
        self.set(|s| {
            s.validated += 1;
            if score < threshold {
                s.flagged += 1;
            }
        });
        tracing::info!(id = %hex::encode(id), score_micro = score, threshold, "validation queued");
        let msg = MsgValidation {
            validator: self.market().host.to_bech32(),
            id: id.to_vec(),
            score_micro: score,
        };
        self.market()
            .queue_validation(&id, crate::worker::any_of(&msg));
    }

    fn threshold(&self) -> Result<u64> {
        let models = kiln_client::query::models(&self.rpc, 0)?;
        models
            .iter()
            .find(|m| m["id"] == self.app().model_name)
            .and_then(|m| m["validation_threshold_micro"].as_u64())
            .ok_or_else(|| anyhow!("model {} is not registered", self.app().model_name))
    }
}

fn set_status(status: &crate::worker::SharedStatus, f: impl FnOnce(&mut ValidatorStatus)) {
    if let Ok(mut s) = status.lock() {
        f(s.inference_validation.get_or_insert_with(Default::default));
    }
}

/// The duty loop's replays in flight, each on its own thread, by inference.
#[derive(Default)]
struct ReplaysInFlight {
    threads: BTreeMap<[u8; 32], std::thread::JoinHandle<Result<u64>>>,
}

impl ReplaysInFlight {
    fn running(&self) -> usize {
        self.threads.len()
    }

    fn is_running(&self, id: &[u8; 32]) -> bool {
        self.threads.contains_key(id)
    }

    fn start(
        &mut self,
        id: [u8; 32],
        replay: impl FnOnce() -> Result<u64> + Send + 'static,
    ) -> Result<()> {
        let thread = std::thread::Builder::new()
            .name("replay".into())
            .spawn(replay)
            .context("starting a replay thread")?;
        self.threads.insert(id, thread);
        Ok(())
    }

    /// The replays that have ended since the last call, with their scores.
    fn ended(&mut self) -> Vec<([u8; 32], Result<u64>)> {
        let done: Vec<[u8; 32]> = self
            .threads
            .iter()
            .filter(|(_, t)| t.is_finished())
            .map(|(id, _)| *id)
            .collect();
        done.into_iter()
            .filter_map(|id| {
                let thread = self.threads.remove(&id)?;
                let score = thread
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("the replay thread panicked")));
                Some((id, score))
            })
            .collect()
    }
}

/// The score of `id`'s replay, run on the least loaded of this worker
/// and the host's ML nodes enabled in force that serve the model (ties
/// take turns), the way the host's inference requests are routed
/// ([`crate::market`]); never on a disabled node. A node that does not
/// answer with a score (down, overloaded, failing) is set aside for a
/// while and the next one tried; when none is left the replay runs here.
/// `Err`: the payload could not be had or checked (the executor's
/// failure, wherever the replay ran).
fn replay_owed(
    replayer: &Replayer,
    status: &crate::worker::SharedStatus,
    id: &[u8; 32],
    executor: &Address,
    nodes: &[NodeTarget],
) -> Result<u64> {
    let id_hex = hex::encode(id);
    let mut tried: Vec<String> = Vec::new();
    loop {
        let choice = if nodes.is_empty() {
            RouteChoice::Local
        } else {
            replayer
                .market
                .pick(replayer.app.engine.load(), nodes, &tried)
        };
        let node = match choice {
            RouteChoice::Local => {
                let score = replayer.fetch_and_replay(id, executor)?;
                tracing::info!("replayed inference {id_hex} here: score {score}");
                set_status(status, |s| s.replayed_here += 1);
                return Ok(score);
            }
            RouteChoice::Node(node) => node,
        };
        tried.push(node.id.clone());
        match replayer.replay_on_node(&node.url, id, executor) {
            Ok(NodeReplay::Scored(score)) => {
                replayer.market.finished_at(&node.id, true);
                tracing::info!(
                    "replayed inference {id_hex} on ML node {}: score {score}",
                    node.id
                );
                set_status(status, |s| {
                    *s.replayed_on_nodes.entry(node.id.clone()).or_default() += 1
                });
                return Ok(score);
            }
            Ok(NodeReplay::NoPayload(why)) => {
                replayer.market.finished_at(&node.id, true);
                bail!("ML node {}: {why}", node.id);
            }
            Err(e) => {
                replayer.market.finished_at(&node.id, false);
                tracing::warn!(ml_node = %node.id, url = %node.url, error = %format!("{e:#}"), "the ML node did not replay the inference; trying another");
            }
        }
    }
}

/// Replays inferences for the host's validation duty (SPEC §5): fetches
/// the payload where it was served, checks it against the settled hashes
/// and scores a teacher-forced replay on this worker's model. The host's
/// own worker has one for its duty loop; each of its ML nodes has one to
/// serve [`serve_replay`], so the host's replays spread over its nodes as
/// its inference requests do.
pub struct Replayer {
    rpc: RpcClient,
    market: Arc<Market>,
    app: Arc<ServeApp>,
    /// This worker's ML key: signs payload requests on behalf of the host
    /// (it holds the host's `MsgValidation` grant).
    key: SigningKey,
}

impl Replayer {
    pub fn new(market: Arc<Market>, app: Arc<ServeApp>, key: SigningKey) -> Self {
        Replayer {
            rpc: RpcClient::new(market.node_url()),
            market,
            app,
            key,
        }
    }

    /// `request` with the host's signed headers: this worker's key over
    /// `sign_bytes(now)`.
    fn signed(
        &self,
        request: ureq::Request,
        sign_bytes: impl FnOnce(i64) -> Vec<u8>,
    ) -> ureq::Request {
        let timestamp = unix_now();
        let signature: Signature = self.key.sign(&sign_bytes(timestamp));
        let pubkey = kiln_client::keyring::compressed_pubkey(&self.key);
        request
            .set(HEADER_VALIDATOR, &self.market.host.to_bech32())
            .set(HEADER_VALIDATOR_PUBKEY, &hex::encode(pubkey))
            .set(HEADER_TIMESTAMP, &timestamp.to_string())
            .set(HEADER_SIGNATURE, &hex::encode(signature.to_bytes()))
    }

    /// Asks the ML node at `url` (one of the host's) to replay `id`.
    fn replay_on_node(&self, url: &str, id: &[u8; 32], executor: &Address) -> Result<NodeReplay> {
        let body = ReplayRequest {
            id: hex::encode(id),
            executor: executor.to_bech32(),
        };
        // A replay waits its turn behind the node's own requests.
        let answer = self
            .signed(ureq::post(&format!("{url}/kiln/replay")), |ts| {
                replay_sign_bytes(&self.market.chain_id, id, ts, &self.market.host)
            })
            .timeout(Duration::from_secs(120))
            .send_json(&body);
        match answer {
            Ok(r) => {
                let v: Value = r.into_json().context("the replay answer is not JSON")?;
                let score = v["score_micro"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("the replay answer has no score_micro: {v}"))?;
                Ok(NodeReplay::Scored(score.min(1_000_000)))
            }
            Err(ureq::Error::Status(status, r)) => {
                let v: Value = r.into_json().unwrap_or(Value::Null);
                let message = v["error"]["message"].as_str().unwrap_or("").to_string();
                if status == 422 && v["error"]["code"] == NO_PAYLOAD {
                    Ok(NodeReplay::NoPayload(message))
                } else {
                    bail!("answered {status}: {message}")
                }
            }
            Err(e) => Err(anyhow!("{e}")),
        }
    }

    /// The payload of `id` from the worker at `url`, with this validator's
    /// signed request.
    fn fetch_payload(&self, url: &str, id: &[u8; 32]) -> Result<Payload> {
        self.signed(
            ureq::get(&format!("{url}/kiln/payload/{}", hex::encode(id))),
            |ts| payload_sign_bytes(&self.market.chain_id, id, ts, &self.market.host),
        )
        .timeout(Duration::from_secs(20))
        .call()
        .with_context(|| format!("fetching the payload from {url}"))?
        .into_json()
        .context("the payload is not a Kiln payload")
    }

    /// The payload from the executor (its own worker or the ML node that
    /// served it), checked against the settled hashes, and the replay's
    /// score in millionths.
    pub fn fetch_and_replay(&self, id: &[u8; 32], executor: &Address) -> Result<u64> {
        let record = kiln_client::query::inference(&self.rpc, &hex::encode(id), 0)?
            .ok_or_else(|| anyhow!("the chain has no record of {}", hex::encode(id)))?;
        let host = kiln_client::query::host(&self.rpc, &executor.to_bech32(), 0)?
            .ok_or_else(|| anyhow!("executor {executor} is not registered"))?;
        let url = host["worker_url"]
            .as_str()
            .ok_or_else(|| anyhow!("executor {executor} has no worker URL"))?
            .trim_end_matches('/')
            .to_string();
        // The executor's own worker, then its ML nodes (a node disabled
        // since may still hold what it served): the one that served the
        // request keeps the payload.
        let mut urls = vec![url];
        urls.extend(
            host["ml_nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["worker_url"].as_str())
                .map(|u| u.trim_end_matches('/').to_string()),
        );
        let mut failures = Vec::new();
        let mut fetched = None;
        for url in &urls {
            match self.fetch_payload(url, id) {
                Ok(p) => {
                    fetched = Some(p);
                    break;
                }
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        let payload = fetched.ok_or_else(|| {
            anyhow!(
                "no worker of {executor} gave the payload: {}",
                failures.join("; ")
            )
        })?;
        if hex::encode(payload.response_hash()) != record["response_hash"]
            || hex::encode(payload.top_logprobs_hash()) != record["top_logprobs_hash"]
        {
            // The executor serves something else than what it settled.
            return Ok(0);
        }
        if payload.positions.is_empty() {
            bail!("the payload has no positions");
        }
        let record_positions: Vec<_> = payload
            .positions
            .iter()
            .map(|p| p.executor_position())
            .collect();
        let response: Vec<u32> = payload.positions.iter().map(|p| p.token).collect();
        let replay = self.app.engine.replay(
            payload.prompt_token_ids.clone(),
            response,
            kiln_llm::validation::PAYLOAD_TOP_K,
        )?;
        let distance = match kiln_llm::validation::replay_distance(&record_positions, &replay) {
            Ok(d) => d,
            // Tokens that do not line up with the replay: not this model's work.
            Err(_) => return Ok(0),
        };
        let score = ((1.0 - distance) * 1e6).round().clamp(0.0, 1e6) as u64;
        Ok(score)
    }
}

#[cfg(test)]
mod sign_bytes_tests {
    use super::*;

    #[test]
    fn payload_and_replay_requests_sign_different_bytes_over_the_same_fields() {
        let host = Address::from_pubkey(&[2; 33]);
        let id = [7u8; 32];
        let payload = payload_sign_bytes("kiln-test", &id, 1_700_000_000, &host);
        let replay = replay_sign_bytes("kiln-test", &id, 1_700_000_000, &host);
        // domain ‖ u32 BE chain length ‖ chain ‖ id ‖ i64 BE timestamp ‖ host
        let tail = |domain: &[u8]| {
            let mut v = domain.to_vec();
            v.extend_from_slice(&9u32.to_be_bytes());
            v.extend_from_slice(b"kiln-test");
            v.extend_from_slice(&id);
            v.extend_from_slice(&1_700_000_000i64.to_be_bytes());
            v.extend_from_slice(host.as_bytes());
            v
        };
        assert_eq!(payload, tail(b"kiln/payload-request/v1"));
        assert_eq!(replay, tail(b"kiln/replay-request/v1"));
        assert_ne!(
            payload, replay,
            "a payload signature must not pass as a replay's"
        );
    }
}

#[cfg(test)]
mod replays_in_flight_tests {
    use super::*;

    /// A replay stuck on a hung ML node holds its own slot only: the
    /// others end and are collected without waiting for it.
    #[test]
    fn a_stuck_replay_does_not_hold_up_the_others() {
        let mut replays = ReplaysInFlight::default();
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        replays
            .start([1; 32], move || {
                stuck.recv().map_err(|_| anyhow!("released"))?;
                Ok(7)
            })
            .unwrap();
        replays.start([2; 32], || Ok(990_000)).unwrap();
        replays
            .start([3; 32], || Err(anyhow!("payload unavailable")))
            .unwrap();
        assert!(replays.is_running(&[1; 32]));
        let mut ended = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ended.len() < 2 && std::time::Instant::now() < deadline {
            ended.extend(replays.ended());
            std::thread::sleep(Duration::from_millis(5));
        }
        // Collected over several calls: in the order they ended.
        let mut ended: Vec<([u8; 32], std::result::Result<u64, String>)> = ended
            .into_iter()
            .map(|(id, r)| (id, r.map_err(|e| e.to_string())))
            .collect();
        ended.sort_by_key(|(id, _)| *id);
        assert_eq!(
            ended,
            vec![
                ([2; 32], Ok(990_000)),
                ([3; 32], Err("payload unavailable".to_string()))
            ]
        );
        assert_eq!(replays.running(), 1);
        assert!(replays.is_running(&[1; 32]) && !replays.is_running(&[2; 32]));
        release.send(()).unwrap();
        let mut last = Vec::new();
        while last.is_empty() && std::time::Instant::now() < deadline {
            last = replays.ended();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].0, [1; 32]);
        assert_eq!(last[0].1.as_ref().unwrap(), &7);
        assert_eq!(replays.running(), 0);
    }
}
