//! The OpenAI-compatible routes: `GET /v1/models`, `GET /v1/models/{id}`,
//! `POST /v1/chat/completions`, `POST /v1/completions` (streamed as
//! server-sent events or not), plus `/health` and `/metrics`. Every error is
//! in OpenAI's shape; a body over the limit is a 413, a full queue a 429
//! with `Retry-After`.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use kiln_llm::chat::{ChatMessage as TemplateMessage, ChatTemplate};
use kiln_llm::tokenizer::Tokenizer;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::engine::{Event, InferenceEngine, JobSpec};
use super::metrics::ServeMetrics;
use super::openai::{parse_request, ApiError, Endpoint, GenerationRequest, PromptInput};
use super::responses::{self, FinishReason, ResponseMeta, TokenLogprob, Usage};

/// Limits of the API (the engine has its own: batch, queue, context).
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Request bodies above this are refused with 413.
    pub max_body_bytes: usize,
    /// `max_tokens` above this is refused; requests without it get at most this.
    pub max_tokens: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: 1 << 20,
            max_tokens: 4096,
        }
    }
}

/// Everything the handlers share.
pub struct ServeApp {
    /// The name clients put in `model`.
    pub model_name: String,
    /// SHA-256 of the model file (hex).
    pub model_sha256: String,
    pub created_unix: u64,
    pub tokenizer: Arc<Tokenizer>,
    pub chat: Option<ChatTemplate>,
    pub engine: InferenceEngine,
    pub metrics: Arc<ServeMetrics>,
    pub limits: ApiLimits,
    /// Set on a chain host (`kiln-mlworker run`): requests must be signed
    /// and are paid on chain ([`crate::market`]). Unset for `serve`.
    pub market: std::sync::OnceLock<Arc<crate::market::Market>>,
    /// Set with `market`: replays inferences for the host's validation
    /// duty, here or (on an ML node) for the host's own worker.
    pub replayer: std::sync::OnceLock<Arc<crate::validator::Replayer>>,
}

type Shared = Arc<ServeApp>;

/// The whole server of `kiln-mlworker serve`: the API, `/health`,
/// `/metrics`, and OpenAI-shaped 404s for other paths.
pub fn router(app: Arc<ServeApp>) -> Router {
    api_routes(app.clone()).merge(
        Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .fallback(unknown_route)
            .with_state(app),
    )
}

/// The `/v1` routes alone, to merge into another server (the worker's
/// `run`, which has its own `/health` and `/metrics`).
pub fn api_routes(app: Arc<ServeApp>) -> Router {
    let body_limit = app.limits.max_body_bytes;
    v1_routes::<Arc<ServeApp>>(body_limit).with_state(app)
}

/// A model that is still loading: the `/v1` routes answer 503 (with
/// `Retry-After`) until the loader sets it, so a worker can follow the chain
/// while its model loads.
pub type LoadingApp = Arc<std::sync::OnceLock<Arc<ServeApp>>>;

/// [`api_routes`] over a model that may still be loading.
pub fn api_routes_loading(app: LoadingApp, max_body_bytes: usize) -> Router {
    v1_routes::<LoadingApp>(max_body_bytes).with_state(app)
}

/// Where the handlers find the served model.
pub trait AppSource: Clone + Send + Sync + 'static {
    fn app(&self) -> Result<Arc<ServeApp>, ApiError>;
}

impl AppSource for Arc<ServeApp> {
    fn app(&self) -> Result<Arc<ServeApp>, ApiError> {
        Ok(self.clone())
    }
}

impl AppSource for LoadingApp {
    fn app(&self) -> Result<Arc<ServeApp>, ApiError> {
        self.get()
            .cloned()
            .ok_or_else(|| ApiError::unavailable("the model is still loading; retry in a moment"))
    }
}

fn v1_routes<S: AppSource>(body_limit: usize) -> Router<S> {
    Router::new()
        .route("/v1/models", get(list_models::<S>))
        .route("/v1/models/{id}", get(get_model::<S>))
        .route("/v1/chat/completions", post(chat_completions::<S>))
        .route("/v1/completions", post(completions::<S>))
        .route("/kiln/payload/{id}", get(payload::<S>))
        .route("/kiln/replay", post(replay::<S>))
        .layer(DefaultBodyLimit::max(body_limit))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, axum::Json(e.body())).into_response();
    if let Some(secs) = e.retry_after_secs {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    error_response(&ApiError::not_found_route(method.as_str(), uri.path()))
}

fn model_json(app: &ServeApp) -> Value {
    json!({
        "id": app.model_name,
        "object": "model",
        "created": app.created_unix,
        "owned_by": "kiln",
        "kiln_sha256": app.model_sha256,
        "context_length": app.engine.config().context_length,
    })
}

async fn list_models<S: AppSource>(State(source): State<S>) -> Response {
    let app = match source.app() {
        Ok(app) => app,
        Err(e) => return error_response(&e),
    };
    axum::Json(json!({"object": "list", "data": [model_json(&app)]})).into_response()
}

async fn get_model<S: AppSource>(State(source): State<S>, Path(id): Path<String>) -> Response {
    let app = match source.app() {
        Ok(app) => app,
        Err(e) => return error_response(&e),
    };
    if id == app.model_name {
        axum::Json(model_json(&app)).into_response()
    } else {
        error_response(&ApiError::model_not_found(
            &id,
            std::slice::from_ref(&app.model_name),
        ))
    }
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(app): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(Instant::now()),
    )
        .into_response()
}

async fn chat_completions<S: AppSource>(
    State(source): State<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match source.app() {
        Ok(app) => generate(app, Endpoint::Chat, headers, body).await,
        Err(e) => error_response(&e),
    }
}

/// An executor's kept payload, to an authenticated validator
/// ([`crate::validator::serve_payload`]); 404 on a worker that is not on chain.
async fn payload<S: AppSource>(
    State(source): State<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let app = match source.app() {
        Ok(app) => app,
        Err(e) => return error_response(&e),
    };
    match crate::validator::serve_payload(app, headers, id).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn replay<S: AppSource>(
    State(source): State<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let app = match source.app() {
        Ok(app) => app,
        Err(e) => return error_response(&e),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::invalid(None, e.body_text())),
    };
    match crate::validator::serve_replay(app, headers, body).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn completions<S: AppSource>(
    State(source): State<S>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match source.app() {
        Ok(app) => generate(app, Endpoint::Completions, headers, body).await,
        Err(e) => error_response(&e),
    }
}

/// The prompt's token ids and its text (for `echo`).
fn prompt_tokens(app: &ServeApp, prompt: &PromptInput) -> Result<(Vec<u32>, String), ApiError> {
    match prompt {
        PromptInput::Messages(messages) => {
            let template = app.chat.as_ref().ok_or_else(|| {
                ApiError::invalid(
                    Some("messages"),
                    "this model has no chat template: use /v1/completions",
                )
            })?;
            let messages: Vec<TemplateMessage> = messages
                .iter()
                .map(|m| TemplateMessage::new(m.role.clone(), m.content.clone()))
                .collect();
            let text = template.render(&messages, true).map_err(|e| {
                ApiError::invalid(
                    Some("messages"),
                    format!("the chat template refused these messages: {e}"),
                )
            })?;
            let ids = app
                .tokenizer
                .encode(&text, false)
                .map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
            Ok((ids, text))
        }
        PromptInput::Text(text) => {
            let ids = app
                .tokenizer
                .encode(text, false)
                .map_err(|e| ApiError::invalid(Some("prompt"), e.to_string()))?;
            Ok((ids, text.clone()))
        }
        PromptInput::Tokens(ids) => {
            let vocab = app.tokenizer.vocab_size();
            if let Some(bad) = ids.iter().find(|id| **id as usize >= vocab) {
                return Err(ApiError::invalid(
                    Some("prompt"),
                    format!("token id {bad} is outside the vocabulary (0..{vocab})"),
                ));
            }
            Ok((ids.clone(), app.tokenizer.decode(ids, false)))
        }
    }
}

/// Checks the request against the model and the limits; the engine's job.
fn plan(app: &ServeApp, req: &GenerationRequest) -> Result<(JobSpec, String), ApiError> {
    if req.model != app.model_name {
        return Err(ApiError::model_not_found(
            &req.model,
            std::slice::from_ref(&app.model_name),
        ));
    }
    let (prompt, prompt_text) = prompt_tokens(app, &req.prompt)?;
    if prompt.is_empty() {
        return Err(ApiError::invalid(Some("prompt"), "the prompt is empty"));
    }
    let context = app.engine.config().context_length;
    if let Some(max) = req.sampling.max_tokens {
        if max as usize > app.limits.max_tokens {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                format!(
                    "max_tokens is {max}; this worker generates at most {} per request",
                    app.limits.max_tokens
                ),
            )
            .with_code("out_of_range"));
        }
    }
    let wanted = req.sampling.max_tokens.map_or(1, |m| m as usize);
    if prompt.len() + wanted > context {
        return Err(ApiError::invalid(
            Some("messages"),
            format!(
                "This model's maximum context length is {context} tokens. However, you requested {} tokens ({} in the prompt, {wanted} for the completion). Please reduce the prompt or max_tokens.",
                prompt.len() + wanted,
                prompt.len()
            ),
        )
        .with_code("context_length_exceeded"));
    }
    let max_new_tokens = req
        .sampling
        .max_tokens
        .map_or(app.limits.max_tokens.min(context - prompt.len()), |m| {
            m as usize
        });
    Ok((
        JobSpec {
            prompt,
            sampling: req.sampling.clone(),
            max_new_tokens,
            logprobs: req.logprobs,
            top_logprobs: req.top_logprobs as usize,
        },
        prompt_text,
    ))
}

async fn generate(
    app: Shared,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(&ApiError::body_too_large(app.limits.max_body_bytes))
        }
        Err(rejection) => return error_response(&ApiError::invalid(None, rejection.body_text())),
    };
    let req = match parse_request(endpoint, &body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let (mut spec, prompt_text) = match plan(&app, &req) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let prompt_len = spec.prompt.len();
    let prompt_ids = if app.market.get().is_some() {
        spec.prompt.clone()
    } else {
        Vec::new()
    };
    // On a chain host the request is paid: check it, draw its executor,
    // and serve here or forward.
    let mut paid: Option<(Arc<crate::market::Market>, [u8; 32], String)> = None;
    if let Some(market) = app.market.get() {
        let signed = match crate::market::SignedHeaders::from_headers(&headers) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return error_response(&ApiError {
                    status: 401,
                    kind: "authentication_error",
                    message: "this host sells inference on chain: sign each request with your account key (`kiln api-proxy --from KEY`, or `kiln infer`)".into(),
                    param: None,
                    code: Some("missing_signature"),
                    retry_after_secs: None,
                })
            }
            Err(e) => return error_response(&e),
        };
        let Some(max_tokens) = req.sampling.max_tokens else {
            return error_response(
                &ApiError::invalid(
                    Some("max_tokens"),
                    "a paid request must state max_tokens (the escrow is prompt + max_tokens tokens)",
                )
                .with_code("missing_max_tokens"),
            );
        };
        let forwarded = signed.forwarded;
        let accepted = match crate::market::accept(
            market.clone(),
            signed,
            &body,
            &req.model,
            u64::from(max_tokens),
            prompt_len as u64,
        )
        .await
        {
            Ok(a) => a,
            Err(e) => return error_response(&e),
        };
        let id_hex = hex::encode(accepted.id);
        let executor = accepted.executor.to_bech32();
        match accepted.route {
            crate::market::Route::Forward {
                url, seed_height, ..
            } => {
                let path = match endpoint {
                    Endpoint::Chat => "/v1/chat/completions",
                    Endpoint::Completions => "/v1/completions",
                };
                let mut response =
                    crate::market::forward(url, headers, body, market.host, seed_height, path)
                        .await;
                add_paid_headers(&mut response, &id_hex, &executor);
                return response;
            }
            crate::market::Route::Serve { start } => {
                // The transfer agent and seed height the draw was made
                // with: this worker's, or the forwarding TA's.
                let (ta, seed_height) = match (&start, forwarded) {
                    (Some(start), _) => (market.host, start.seed_height),
                    (None, Some(f)) => f,
                    (None, None) => (market.host, 0),
                };
                if let Some(start) = start {
                    crate::market::queue_start(market, &start);
                }
                // The host's own worker runs it on the least loaded of
                // itself and its ML nodes; a node serves what it is routed.
                if !headers.contains_key(crate::market::HEADER_ROUTED) && seed_height > 0 {
                    let path = match endpoint {
                        Endpoint::Chat => "/v1/chat/completions",
                        Endpoint::Completions => "/v1/completions",
                    };
                    if let Some(mut response) = crate::market::route_to_node(
                        market.clone(),
                        &headers,
                        &body,
                        ta,
                        seed_height,
                        &req.model,
                        path,
                        app.engine.load(),
                    )
                    .await
                    {
                        add_paid_headers(&mut response, &id_hex, &executor);
                        return response;
                    }
                }
                // Validators replay against the top logprobs: keep them
                // whether or not the client asked for logprobs.
                spec.logprobs = true;
                spec.top_logprobs = spec.top_logprobs.max(crate::market::VALIDATION_TOP_K);
                paid = Some((market.clone(), accepted.id, executor));
            }
        }
    }
    let events = match app.engine.submit(spec) {
        Ok(rx) => rx,
        Err(e) => return error_response(&e),
    };
    let events = match &paid {
        Some((market, id, _)) => crate::market::tap_events(
            market.clone(),
            *id,
            body.clone(),
            prompt_ids.clone(),
            events,
        ),
        None => events,
    };
    let meta = ResponseMeta {
        id: format!(
            "{}-{:016x}",
            if endpoint == Endpoint::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            },
            rand_id()
        ),
        created: unix_now(),
        model: app.model_name.clone(),
        system_fingerprint: format!("fp_{}", &app.model_sha256[..app.model_sha256.len().min(12)]),
    };
    let echo = if req.echo { prompt_text } else { String::new() };
    let mut response = if req.stream {
        stream_response(meta, req, events, echo)
    } else {
        whole_response(meta, req, events, echo, prompt_len).await
    };
    if let Some((_, id, executor)) = &paid {
        add_paid_headers(&mut response, &hex::encode(id), executor);
    }
    response
}

/// The inference id and executor on a paid answer, so a client can find
/// its settlement (`kiln query inference ID`).
fn add_paid_headers(response: &mut Response, id_hex: &str, executor: &str) {
    for (name, value) in [
        (crate::market::HEADER_INFERENCE_ID, id_hex),
        (crate::market::HEADER_EXECUTOR, executor),
    ] {
        if let Ok(v) = axum::http::HeaderValue::from_str(value) {
            response.headers_mut().insert(name, v);
        }
    }
}

fn rand_id() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut bytes);
    u64::from_le_bytes(bytes)
}

/// Collects every event, then answers once. Dropping this future (the
/// client went away) drops the receiver, which cancels the request.
async fn whole_response(
    meta: ResponseMeta,
    req: GenerationRequest,
    mut events: UnboundedReceiver<Event>,
    echo: String,
    prompt_len: usize,
) -> Response {
    let mut text = echo.clone();
    let mut tokens: Vec<TokenLogprob> = Vec::new();
    loop {
        match events.recv().await {
            Some(Event::Token {
                text: piece,
                logprob,
                ..
            }) => {
                text.push_str(&piece);
                tokens.extend(logprob);
            }
            Some(Event::Done {
                tail,
                finish,
                usage,
            }) => {
                text.push_str(&tail);
                let body = match req.endpoint {
                    Endpoint::Chat => responses::chat_completion(
                        &meta,
                        &text,
                        finish,
                        req.logprobs.then_some(&tokens[..]),
                        usage,
                    ),
                    Endpoint::Completions => responses::text_completion(
                        &meta,
                        &text,
                        finish,
                        req.logprobs.then_some((&tokens[..], echo.len())),
                        usage,
                    ),
                };
                return axum::Json(body).into_response();
            }
            Some(Event::Failed(e)) => return error_response(&e),
            None => {
                return error_response(&ApiError::internal(format!(
                    "the engine dropped the request ({prompt_len} prompt tokens)"
                )))
            }
        }
    }
}

/// Server-sent events: a chunk per token (its text and logprobs), then the
/// finish reason, the usage chunk when asked for, and `data: [DONE]`.
fn stream_response(
    meta: ResponseMeta,
    req: GenerationRequest,
    events: UnboundedReceiver<Event>,
    echo: String,
) -> Response {
    struct StreamState {
        events: UnboundedReceiver<Event>,
        meta: ResponseMeta,
        req: GenerationRequest,
        first: bool,
        offset: usize,
        finished: bool,
        pending_echo: String,
    }
    let state = StreamState {
        events,
        offset: echo.len(),
        pending_echo: echo,
        meta,
        req,
        first: true,
        finished: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        if s.finished {
            return None;
        }
        let mut out = String::new();
        if s.first && s.req.endpoint == Endpoint::Chat {
            out.push_str(&responses::sse_event(&responses::chat_chunk(
                &s.meta,
                true,
                Some(""),
                None,
                None,
                s.req.include_usage,
            )));
        }
        if s.first && !s.pending_echo.is_empty() {
            let echo = std::mem::take(&mut s.pending_echo);
            out.push_str(&responses::sse_event(&responses::text_chunk(
                &s.meta,
                &echo,
                None,
                None,
                s.req.include_usage,
            )));
        }
        s.first = false;
        let chunk = |s: &mut StreamState,
                     text: &str,
                     lps: Option<Vec<TokenLogprob>>,
                     finish: Option<FinishReason>| {
            let value = match s.req.endpoint {
                Endpoint::Chat => responses::chat_chunk(
                    &s.meta,
                    false,
                    (!text.is_empty() || finish.is_none()).then_some(text),
                    lps.as_deref(),
                    finish,
                    s.req.include_usage,
                ),
                Endpoint::Completions => {
                    let v = responses::text_chunk(
                        &s.meta,
                        text,
                        lps.as_deref().map(|t| (t, s.offset)),
                        finish,
                        s.req.include_usage,
                    );
                    s.offset += text.len();
                    v
                }
            };
            responses::sse_event(&value)
        };
        match s.events.recv().await {
            Some(Event::Token { text, logprob, .. }) => {
                let lps = if s.req.logprobs {
                    logprob.map(|l| vec![l])
                } else {
                    None
                };
                if !text.is_empty() || lps.is_some() {
                    out.push_str(&chunk(&mut s, &text, lps, None));
                }
            }
            Some(Event::Done {
                tail,
                finish,
                usage,
            }) => {
                if !tail.is_empty() {
                    out.push_str(&chunk(&mut s, &tail, None, None));
                }
                out.push_str(&chunk(&mut s, "", None, Some(finish)));
                if s.req.include_usage {
                    let u: Usage = usage;
                    let v = match s.req.endpoint {
                        Endpoint::Chat => responses::chat_usage_chunk(&s.meta, u),
                        Endpoint::Completions => responses::text_usage_chunk(&s.meta, u),
                    };
                    out.push_str(&responses::sse_event(&v));
                }
                out.push_str(responses::SSE_DONE);
                s.finished = true;
            }
            Some(Event::Failed(e)) => {
                out.push_str(&responses::sse_event(&e.body()));
                out.push_str(responses::SSE_DONE);
                s.finished = true;
            }
            None => {
                out.push_str(&responses::sse_event(
                    &ApiError::internal("the engine dropped the request").body(),
                ));
                s.finished = true;
            }
        }
        Some((Ok::<Bytes, std::convert::Infallible>(Bytes::from(out)), s))
    })
    .boxed();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error_response(&ApiError::internal("cannot build the stream")))
}
