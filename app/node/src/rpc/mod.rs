//! CometBFT 0.38-compatible JSON-RPC server.
//!
//! - `POST /` — JSON-RPC 2.0 (single request or batch array);
//! - `GET /<method>?arg=value` — URI style (`"quoted"` strings, `0x` hex bytes);
//! - `GET /websocket` — JSON-RPC over websocket with `subscribe`;
//! - `GET /metrics` — Prometheus text.
//!
//! Everything here is generic over [`ChainView`] (what the server reads from
//! and asks of a node, [`view`]); the JSON is built by the pure functions in
//! [`render`]. The devnet [`Node`](crate::devnet::Node) is one `ChainView`.

mod methods;
pub mod render;
pub mod view;
mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State, WebSocketUpgrade};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};

pub use methods::dispatch;
pub use view::{ChainView, RpcLimits};

/// A JSON-RPC error with CometBFT's codes and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i32,
    pub message: &'static str,
    pub data: String,
}

impl RpcError {
    pub fn parse(data: impl Into<String>) -> Self {
        Self {
            code: -32700,
            message: "Parse error. Invalid JSON",
            data: data.into(),
        }
    }
    pub fn invalid_request(data: impl Into<String>) -> Self {
        Self {
            code: -32600,
            message: "Invalid Request",
            data: data.into(),
        }
    }
    pub fn method_not_found(m: &str) -> Self {
        Self {
            code: -32601,
            message: "Method not found",
            data: format!("method {m:?} not found"),
        }
    }
    pub fn invalid_params(data: impl Into<String>) -> Self {
        Self {
            code: -32602,
            message: "Invalid params",
            data: data.into(),
        }
    }
    pub fn internal(data: impl Into<String>) -> Self {
        Self {
            code: -32603,
            message: "Internal error",
            data: data.into(),
        }
    }
    pub fn to_json(&self) -> Value {
        json!({"code": self.code, "message": self.message, "data": self.data})
    }
}

impl From<anyhow::Error> for RpcError {
    fn from(e: anyhow::Error) -> Self {
        RpcError::internal(format!("{e:#}"))
    }
}

pub type RpcResult = Result<Value, RpcError>;

/// Request parameters, from a JSON object / array or from a URI query.
#[derive(Debug, Clone)]
pub enum Params {
    Json(Map<String, Value>),
    Uri(HashMap<String, String>),
}

fn unquote(s: &str) -> Option<&str> {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        Some(&s[1..s.len() - 1])
    } else {
        None
    }
}

impl Params {
    /// Build from JSON-RPC `params` (object, positional array or absent).
    pub fn from_json(v: Option<Value>, names: &[&str]) -> Result<Self, RpcError> {
        match v {
            None | Some(Value::Null) => Ok(Params::Json(Map::new())),
            Some(Value::Object(m)) => Ok(Params::Json(m)),
            Some(Value::Array(a)) => {
                if a.len() > names.len() {
                    return Err(RpcError::invalid_params(format!(
                        "error converting json params to arguments: expected {} parameters ({:?}), got {}",
                        names.len(),
                        names,
                        a.len()
                    )));
                }
                Ok(Params::Json(names.iter().map(|n| n.to_string()).zip(a).collect()))
            }
            Some(other) => Err(RpcError::invalid_params(format!(
                "error converting json params to arguments: params must be an object or array, got {other}"
            ))),
        }
    }

    fn raw(&self, name: &str) -> Option<RawParam<'_>> {
        match self {
            Params::Json(m) => match m.get(name) {
                None | Some(Value::Null) => None,
                Some(v) => Some(RawParam::Json(v)),
            },
            Params::Uri(m) => match m.get(name) {
                None => None,
                Some(s) if s.is_empty() => None,
                Some(s) => Some(RawParam::Uri(s)),
            },
        }
    }

    fn err(name: &str, what: &str) -> RpcError {
        RpcError::invalid_params(format!(
            "error converting json params to arguments: {name}: {what}"
        ))
    }

    pub fn i64(&self, name: &str) -> Result<Option<i64>, RpcError> {
        match self.raw(name) {
            None => Ok(None),
            Some(RawParam::Json(Value::Number(n))) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| Self::err(name, "expected an integer")),
            Some(RawParam::Json(Value::String(s))) => {
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse()
                    .map(Some)
                    .map_err(|_| Self::err(name, &format!("invalid integer {s:?}")))
            }
            Some(RawParam::Json(_)) => Err(Self::err(name, "expected an integer")),
            Some(RawParam::Uri(s)) => {
                let s = unquote(s).unwrap_or(s);
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse()
                    .map(Some)
                    .map_err(|_| Self::err(name, &format!("invalid integer {s:?}")))
            }
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, RpcError> {
        match self.raw(name) {
            None => Ok(None),
            Some(RawParam::Json(Value::String(s))) => Ok(Some(s.clone())),
            Some(RawParam::Json(_)) => Err(Self::err(name, "expected a string")),
            Some(RawParam::Uri(s)) => Ok(Some(unquote(s).unwrap_or(s).to_string())),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, RpcError> {
        match self.raw(name) {
            None => Ok(None),
            Some(RawParam::Json(Value::Bool(b))) => Ok(Some(*b)),
            Some(RawParam::Json(Value::String(s))) | Some(RawParam::Uri(s)) => {
                match unquote(s).unwrap_or(s) {
                    "true" => Ok(Some(true)),
                    "false" | "" => Ok(Some(false)),
                    _ => Err(Self::err(name, "expected true or false")),
                }
            }
            Some(RawParam::Json(_)) => Err(Self::err(name, "expected a boolean")),
        }
    }

    /// `[]byte` argument: base64 in JSON; `0x..` hex or `"string"` in a URI.
    pub fn bytes_b64(&self, name: &str) -> Result<Option<Vec<u8>>, RpcError> {
        match self.raw(name) {
            None => Ok(None),
            Some(RawParam::Json(Value::String(s))) => B64
                .decode(s)
                .map(Some)
                .map_err(|e| Self::err(name, &format!("invalid base64: {e}"))),
            Some(RawParam::Json(_)) => Err(Self::err(name, "expected a base64 string")),
            Some(RawParam::Uri(s)) => uri_bytes(name, s).map(Some),
        }
    }

    /// `HexBytes` argument: hex in JSON; `0x..` hex or `"string"` in a URI.
    pub fn bytes_hex(&self, name: &str) -> Result<Option<Vec<u8>>, RpcError> {
        match self.raw(name) {
            None => Ok(None),
            Some(RawParam::Json(Value::String(s))) => {
                let s = s.strip_prefix("0x").unwrap_or(s);
                hex::decode(s)
                    .map(Some)
                    .map_err(|e| Self::err(name, &format!("invalid hex: {e}")))
            }
            Some(RawParam::Json(_)) => Err(Self::err(name, "expected a hex string")),
            Some(RawParam::Uri(s)) => uri_bytes(name, s).map(Some),
        }
    }

    /// A 32-byte hash: base64 or hex in JSON; `0x` hex in a URI.
    pub fn hash(&self, name: &str) -> Result<Option<[u8; 32]>, RpcError> {
        let bytes = match self.raw(name) {
            None => return Ok(None),
            Some(RawParam::Json(Value::String(s))) => {
                if s.len() == 64 {
                    hex::decode(s).map_err(|e| Self::err(name, &format!("invalid hex: {e}")))?
                } else {
                    B64.decode(s)
                        .map_err(|e| Self::err(name, &format!("invalid base64: {e}")))?
                }
            }
            Some(RawParam::Json(_)) => return Err(Self::err(name, "expected a string")),
            Some(RawParam::Uri(s)) => uri_bytes(name, s)?,
        };
        bytes
            .try_into()
            .map(Some)
            .map_err(|b: Vec<u8>| Self::err(name, &format!("expected 32 bytes, got {}", b.len())))
    }
}

enum RawParam<'a> {
    Json(&'a Value),
    Uri(&'a String),
}

fn uri_bytes(name: &str, s: &str) -> Result<Vec<u8>, RpcError> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return hex::decode(h).map_err(|e| Params::err(name, &format!("invalid hex: {e}")));
    }
    if let Some(q) = unquote(s) {
        return Ok(q.as_bytes().to_vec());
    }
    Err(Params::err(
        name,
        "URI byte arguments must be 0x-prefixed hex or a \"quoted string\"",
    ))
}

/// A JSON-RPC response object.
pub fn response(id: &Value, r: RpcResult) -> Value {
    match r {
        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
    }
}

/// Build the axum router for a node (any [`ChainView`], e.g. an
/// `Arc<Node<A>>` or an `Arc<dyn ChainView>`).
/// The node's [`RpcLimits`](view::RpcLimits) apply to every request.
pub fn router<V: ChainView + ?Sized>(node: Arc<V>) -> Router {
    let limits = node.rpc_limits();
    let server = Server {
        node,
        limits,
        websockets: Arc::new(ws::Counters::default()),
    };
    Router::new()
        .route("/", post(post_handler::<V>).get(index))
        .route("/websocket", get(ws_handler::<V>))
        .route("/metrics", get(metrics_handler::<V>))
        .route("/{method}", get(uri_handler::<V>))
        // Bodies are read (and bounded) by `post_handler` itself, so a
        // too-large body gets a JSON-RPC error rather than axum's text.
        .layer(DefaultBodyLimit::disable())
        .with_state(server)
}

/// What every handler shares: the node, its limits, the websocket counters.
struct Server<V: ?Sized> {
    node: Arc<V>,
    limits: view::RpcLimits,
    websockets: Arc<ws::Counters>,
}

impl<V: ?Sized> Clone for Server<V> {
    fn clone(&self) -> Self {
        Server {
            node: self.node.clone(),
            limits: self.limits,
            websockets: self.websockets.clone(),
        }
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(v).unwrap_or_default(),
    )
        .into_response()
}

async fn index() -> Response {
    let mut s = String::from("Available endpoints:\n");
    for m in methods::METHODS {
        s.push_str(&format!("/{}\n", m.0));
    }
    s.push_str("/websocket\n/metrics\n");
    (StatusCode::OK, s).into_response()
}

/// Handle one parsed JSON-RPC request object.
pub async fn handle_request<V: ChainView + ?Sized>(node: &Arc<V>, req: Value) -> Value {
    let Value::Object(mut obj) = req else {
        return response(
            &Value::Null,
            Err(RpcError::invalid_request("request must be a JSON object")),
        );
    };
    let id = obj.remove("id").unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::Number(_) | Value::String(_)) {
        return response(
            &Value::Null,
            Err(RpcError::invalid_request(
                "id must be a string, a number or null",
            )),
        );
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return response(
            &id,
            Err(RpcError::invalid_request("jsonrpc must be \"2.0\"")),
        );
    }
    let Some(method) = obj
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return response(&id, Err(RpcError::invalid_request("missing method")));
    };
    let Some(names) = methods::arg_names(&method) else {
        return response(&id, Err(RpcError::method_not_found(&method)));
    };
    let params = match Params::from_json(obj.remove("params"), names) {
        Ok(p) => p,
        Err(e) => return response(&id, Err(e)),
    };
    response(&id, dispatch(node.clone(), &method, params).await)
}

async fn post_handler<V: ChainView + ?Sized>(
    State(server): State<Server<V>>,
    body: axum::body::Body,
) -> Response {
    let node = server.node;
    let max_body = server.limits.max_body_bytes;
    let body: Bytes = match axum::body::to_bytes(body, max_body).await {
        Ok(b) => b,
        Err(_) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &response(
                    &json!(-1),
                    Err(RpcError::invalid_request(format!(
                        "request body too large: the limit (max_body_bytes) is {max_body} bytes"
                    ))),
                ),
            )
        }
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &response(
                    &json!(-1),
                    Err(RpcError::parse(format!("error unmarshaling request: {e}"))),
                ),
            )
        }
    };
    match parsed {
        Value::Array(reqs) => {
            if reqs.is_empty() {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &response(&Value::Null, Err(RpcError::invalid_request("empty batch"))),
                );
            }
            let max_batch = server.limits.max_request_batch_size;
            if reqs.len() > max_batch {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &response(
                        &Value::Null,
                        Err(RpcError::invalid_request(format!(
                            "batch request exceeds maximum ({max_batch}) size: got {} requests",
                            reqs.len()
                        ))),
                    ),
                );
            }
            let mut out = Vec::with_capacity(reqs.len());
            for r in reqs {
                out.push(handle_request(&node, r).await);
            }
            json_response(StatusCode::OK, &Value::Array(out))
        }
        other => {
            let resp = handle_request(&node, other).await;
            let status = match resp.pointer("/error/code").and_then(Value::as_i64) {
                Some(-32700) | Some(-32600) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::OK,
            };
            json_response(status, &resp)
        }
    }
}

async fn uri_handler<V: ChainView + ?Sized>(
    State(Server { node, .. }): State<Server<V>>,
    Path(method): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let id = json!(-1);
    if methods::arg_names(&method).is_none()
        || method == "subscribe"
        || method.starts_with("unsubscribe")
    {
        return json_response(
            StatusCode::NOT_FOUND,
            &response(&id, Err(RpcError::method_not_found(&method))),
        );
    }
    let r = dispatch(node, &method, Params::Uri(q)).await;
    json_response(StatusCode::OK, &response(&id, r))
}

async fn ws_handler<V: ChainView + ?Sized>(
    State(server): State<Server<V>>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(slot) = ws::Counters::connect(&server.websockets, &server.limits) else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &response(
                &json!(-1),
                Err(RpcError::internal(format!(
                    "too many websocket connections: the limit is {}",
                    server.limits.max_websocket_connections
                ))),
            ),
        );
    };
    let limits = server.limits;
    let node = server.node;
    ws.on_upgrade(move |socket| ws::session(node, socket, slot, limits))
}

async fn metrics_handler<V: ChainView + ?Sized>(
    State(Server { node, .. }): State<Server<V>>,
) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render::metrics_text(&node.metrics()),
    )
        .into_response()
}
