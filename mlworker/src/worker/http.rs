//! The worker's HTTP port: `/health` (200 while the chain answered within
//! [`HEALTHY_WITHIN_SECS`], else 503), `/metrics` (Prometheus text format)
//! and `/status` (JSON, read by `kiln-mlworker status`). An axum server on a
//! small single-threaded tokio runtime of its own, on its own thread: the
//! worker's loop and the engine executor stay plain threads, and requests are
//! served concurrently (a slow client holds up no one). Streaming endpoints
//! (the OpenAI-compatible API) are added to [`router`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::Router;

use super::{unix_now, SharedStatus, WorkerStatus};
use crate::serve::http::{api_routes_loading, ApiLimits, LoadingApp};
use crate::serve::metrics::ServeMetrics;

/// The worker is healthy while its last successful chain read is this recent.
pub const HEALTHY_WITHIN_SECS: u64 = 30;

const JSON: &str = "application/json";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";
const TEXT: &str = "text/plain";

/// Binds `addr` and serves in a background thread; returns the bound address.
pub fn serve(addr: &str, status: SharedStatus) -> Result<SocketAddr> {
    serve_with_inference(addr, status, None)
}

/// [`serve`], plus the OpenAI-compatible `/v1` routes of a model (its
/// metrics appended to `/metrics`) when the worker serves one; the routes
/// answer 503 until the model has loaded.
pub fn serve_with_inference(
    addr: &str,
    status: SharedStatus,
    inference: Option<(LoadingApp, Arc<ServeMetrics>)>,
) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!(
            "cannot listen on {addr} (is another worker using this port? choose one with --http)"
        )
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    // Inference streams many responses at once: give the API two threads.
    let mut builder = if inference.is_some() {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = builder
        .enable_all()
        .thread_name("http")
        .build()
        .context("cannot start the HTTP server's runtime")?;
    let listener = {
        let _in_runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let app = match inference {
        Some((api, metrics)) => router_with(status, Some(metrics))
            .merge(api_routes_loading(api, ApiLimits::default().max_body_bytes)),
        None => router(status),
    };
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            if let Err(e) = runtime.block_on(async move { axum::serve(listener, app).await }) {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        })?;
    Ok(local)
}

/// What the worker's handlers read.
#[derive(Clone)]
struct HttpState {
    status: SharedStatus,
    inference: Option<Arc<ServeMetrics>>,
}

/// The worker's routes over its shared status.
pub fn router(status: SharedStatus) -> Router {
    router_with(status, None)
}

fn router_with(status: SharedStatus, inference: Option<Arc<ServeMetrics>>) -> Router {
    let status = HttpState { status, inference };
    Router::new()
        .route("/health", routing::get(health))
        .route("/metrics", routing::get(prometheus))
        .route("/status", routing::get(status_json))
        .method_not_allowed_fallback(only_get)
        .fallback(not_found)
        .with_state(status)
}

fn snapshot(status: &SharedStatus) -> WorkerStatus {
    status.lock().map(|s| s.clone()).unwrap_or_default()
}

fn respond(code: StatusCode, content_type: &'static str, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn health(State(HttpState { status, .. }): State<HttpState>) -> Response {
    let snapshot = snapshot(&status);
    let age = unix_now().saturating_sub(snapshot.last_chain_contact_unix);
    if snapshot.last_chain_contact_unix > 0 && age <= HEALTHY_WITHIN_SECS {
        respond(
            StatusCode::OK,
            JSON,
            format!(
                "{{\"status\":\"ok\",\"height\":{},\"last_chain_contact_secs\":{age}}}\n",
                snapshot.height
            ),
        )
    } else {
        let why = snapshot
            .last_error
            .clone()
            .unwrap_or_else(|| "no answer from the node yet".into());
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            JSON,
            format!(
                "{}\n",
                serde_json::json!({"status": "unhealthy", "reason": why, "last_chain_contact_secs": age})
            ),
        )
    }
}

async fn prometheus(State(state): State<HttpState>) -> Response {
    let mut text = metrics(&snapshot(&state.status));
    if let Some(inference) = &state.inference {
        text.push_str(&inference.render(std::time::Instant::now()));
    }
    respond(StatusCode::OK, PROMETHEUS_TEXT, text)
}

async fn status_json(State(HttpState { status, .. }): State<HttpState>) -> Response {
    match serde_json::to_string(&snapshot(&status)) {
        Ok(json) => respond(StatusCode::OK, JSON, format!("{json}\n")),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("cannot encode the status: {e}\n"),
        ),
    }
}

async fn only_get() -> Response {
    respond(
        StatusCode::METHOD_NOT_ALLOWED,
        TEXT,
        "only GET is served\n".into(),
    )
}

async fn not_found(method: Method) -> Response {
    if method != Method::GET {
        return only_get().await;
    }
    respond(
        StatusCode::NOT_FOUND,
        TEXT,
        "not found: try /health, /metrics or /status\n".into(),
    )
}

/// Prometheus text exposition of the status.
pub fn metrics(s: &WorkerStatus) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    gauge(
        "kiln_worker_height",
        "Latest chain height the worker has seen.",
        "gauge",
        s.height.to_string(),
    );
    gauge(
        "kiln_worker_epoch",
        "Epoch of the next block.",
        "gauge",
        s.epoch.to_string(),
    );
    gauge(
        "kiln_worker_epoch_nonces",
        "Nonces computed in the current epoch's sprint.",
        "gauge",
        s.nonces_done.to_string(),
    );
    gauge(
        "kiln_worker_epoch_shares",
        "Shares found in the current epoch's sprint.",
        "gauge",
        s.shares.to_string(),
    );
    gauge(
        "kiln_worker_epoch_committed_shares",
        "Shares in the commitment on chain.",
        "gauge",
        s.committed_shares.to_string(),
    );
    gauge(
        "kiln_worker_epoch_opened",
        "1 once the commitment is opened on chain.",
        "gauge",
        u8::from(s.opened).to_string(),
    );
    gauge(
        "kiln_worker_epoch_duties",
        "Openings this host must validate this epoch.",
        "gauge",
        s.duties.to_string(),
    );
    gauge(
        "kiln_worker_epoch_votes_committed",
        "Vote commitments on chain this epoch.",
        "gauge",
        s.votes_committed.to_string(),
    );
    gauge(
        "kiln_worker_epoch_votes_revealed",
        "Vote reveals on chain this epoch.",
        "gauge",
        s.votes_revealed.to_string(),
    );
    gauge(
        "kiln_worker_nonces_total",
        "Nonces computed since start.",
        "counter",
        s.nonces_total.to_string(),
    );
    gauge(
        "kiln_worker_nonces_per_second",
        "Recent sprint throughput.",
        "gauge",
        format!("{:.3}", s.nonces_per_second),
    );
    gauge(
        "kiln_worker_txs_accepted_total",
        "Transactions accepted by CheckTx.",
        "counter",
        s.txs_accepted.to_string(),
    );
    gauge(
        "kiln_worker_txs_refused_total",
        "Transactions refused by CheckTx.",
        "counter",
        s.txs_refused.to_string(),
    );
    gauge(
        "kiln_worker_txs_failed_in_block_total",
        "Transactions accepted by CheckTx that failed in their block.",
        "counter",
        s.txs_failed_in_block.to_string(),
    );
    gauge(
        "kiln_worker_last_chain_contact_seconds",
        "Unix time of the last successful chain read.",
        "gauge",
        s.last_chain_contact_unix.to_string(),
    );
    out.push_str(&format!("# HELP kiln_worker_stage Stage of the next block.\n# TYPE kiln_worker_stage gauge\nkiln_worker_stage{{stage=\"{}\"}} 1\n", s.stage));
    out
}

/// `GET http://addr/path` with std sockets; returns (status code, body).
pub fn get(addr: &str, path: &str) -> Result<(u16, String)> {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).with_context(|| {
        format!(
            "cannot reach the worker at {addr}: is `kiln-mlworker run` running with --http {addr}?"
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from {addr}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) => Ok((c, body.to_string())),
        None => bail!("malformed HTTP status line from {addr}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn serves_health_metrics_and_status() {
        let status: SharedStatus = Arc::new(Mutex::new(WorkerStatus {
            height: 7,
            stage: "open".into(),
            ..Default::default()
        }));
        let addr = serve("127.0.0.1:0", status.clone()).unwrap().to_string();
        let (code, body) = get(&addr, "/health").unwrap();
        assert_eq!(code, 503, "no chain contact yet: {body}");
        status.lock().unwrap().last_chain_contact_unix = unix_now();
        let (code, body) = get(&addr, "/health").unwrap();
        assert_eq!(code, 200, "{body}");
        let (code, body) = get(&addr, "/metrics").unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("kiln_worker_height 7"), "{body}");
        assert!(
            body.contains("kiln_worker_stage{stage=\"open\"} 1"),
            "{body}"
        );
        let (code, body) = get(&addr, "/status").unwrap();
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["height"], 7);
        assert_eq!(get(&addr, "/nope").unwrap().0, 404);
    }

    /// Sends `request` as is and returns the status line and the body.
    fn raw(addr: &str, request: &str) -> (String, String) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    #[test]
    fn answers_as_before_for_paths_methods_and_query_strings() {
        let status: SharedStatus = Arc::new(Mutex::new(WorkerStatus {
            height: 3,
            last_chain_contact_unix: unix_now(),
            ..Default::default()
        }));
        let addr = serve("127.0.0.1:0", status).unwrap().to_string();
        let (code, body) = get(&addr, "/nope").unwrap();
        assert_eq!(
            (code, body.as_str()),
            (404, "not found: try /health, /metrics or /status\n")
        );
        let (code, body) = get(&addr, "/health?verbose=1").unwrap();
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["height"].as_u64()),
            (Some("ok"), Some(3))
        );
        assert!(body.ends_with("}\n"), "{body:?}");
        for path in ["/status", "/elsewhere"] {
            let (line, body) = raw(
                &addr,
                &format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            );
            assert!(line.starts_with("HTTP/1.1 405"), "{path}: {line}");
            assert_eq!(body, "only GET is served\n");
        }
        let (line, _) = raw(
            &addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    }

    #[test]
    fn a_stalled_client_does_not_hold_up_other_requests() {
        let status: SharedStatus = Arc::new(Mutex::new(WorkerStatus::default()));
        let addr = serve("127.0.0.1:0", status).unwrap().to_string();
        // Half a request line, then silence, on a few connections.
        let stalled: Vec<TcpStream> = (0..4)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.write_all(b"GET /sta").unwrap();
                s
            })
            .collect();
        let t0 = std::time::Instant::now();
        let answers: Vec<_> = (0..8)
            .map(|_| {
                let addr = addr.clone();
                std::thread::spawn(move || get(&addr, "/status").unwrap().0)
            })
            .collect();
        for a in answers {
            assert_eq!(a.join().unwrap(), 200);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t0.elapsed()
        );
        drop(stalled);
    }
}
