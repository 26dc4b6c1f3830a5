//! The web dashboard `kilnd` serves (default `http://127.0.0.1:26680/`,
//! `--dashboard ADDR`) under `kilnd devnet` and `kilnd start` alike: height
//! and block time, the epoch's stage, hosts with weight, power, reputation,
//! rewards and inferences served, the last sprints' verdicts, inference
//! prices and traffic, open proposals, and plots of weight per host over
//! epochs and of price over time.
//!
//! It reads the chain the way any client does — over the node's CometBFT
//! JSON-RPC (the devnet's, or CometBFT's own next to `kilnd start`) — so it
//! shows exactly what `kiln query` shows, and `kilnd dashboard --node URL`
//! watches any node. The page and its script are compiled into the binary
//! (no CDN); a websocket (`/api/live`) pushes a new summary each time a block
//! commits, and `/api/summary` answers the current one.

mod summary;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

pub use summary::{History, SummaryBuilder};

/// Where `kilnd` serves the dashboard unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:26680";

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// How often the node's height is polled; each new block is pushed.
const POLL: Duration = Duration::from_millis(400);
/// A new block re-reads the whole state at most this often (a devnet makes
/// blocks every 300 ms; between full reads a new block moves the height
/// and block time only).
const MIN_FULL_READ: Duration = Duration::from_millis(1500);
/// The summary is rebuilt at least this often (a stalled chain still shows
/// the node's state and errors).
const REFRESH: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Shared {
    latest: watch::Receiver<Arc<String>>,
}

/// Binds `listen` now, so a port in use is the caller's error, then serves
/// the dashboard of the node at `node_url` on a thread of its own. Returns
/// the bound address.
pub fn spawn(listen: SocketAddr, node_url: &str) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("the dashboard cannot listen on {listen}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let node_url = node_url.to_string();
    std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the dashboard cannot start its runtime");
                    return;
                }
            };
            if let Err(e) = runtime.block_on(serve(listener, node_url)) {
                tracing::error!(error = %format!("{e:#}"), "the dashboard stopped");
            }
        })?;
    Ok(bound)
}

/// Serves until the process ends (the `kilnd dashboard` command).
pub async fn serve(listener: std::net::TcpListener, node_url: String) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let initial = summary::waiting(&node_url, "no answer from the node yet").to_string();
    let (tx, rx) = watch::channel(Arc::new(initial));
    tokio::spawn(follow_chain(node_url, tx));
    let app = Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/api/summary", get(current_summary))
        .route("/api/live", get(live))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(Shared { latest: rx });
    axum::serve(listener, app).await?;
    Ok(())
}

/// Polls the node's height; each new block (or every [`REFRESH`]) rebuilds
/// the summary and publishes it to every page.
async fn follow_chain(node_url: String, tx: watch::Sender<Arc<String>>) {
    let mut builder = Some(SummaryBuilder::new(&node_url));
    let mut last_height = None;
    let mut last_built = tokio::time::Instant::now() - REFRESH;
    loop {
        let Some(mut b) = builder.take() else { return };
        let due = last_built.elapsed() >= REFRESH;
        let full_allowed = last_built.elapsed() >= MIN_FULL_READ;
        let result = tokio::task::spawn_blocking(move || {
            let status = b.status();
            let height = status.as_ref().ok().and_then(SummaryBuilder::height_of);
            let rebuilt = match (height, due) {
                (Some(h), false) if Some(h) == last_height => None,
                (Some(_), false) if !full_allowed => status.as_ref().ok().and_then(|s| b.head(s)),
                _ => Some(b.build(status)),
            };
            (b, height, rebuilt)
        })
        .await;
        let Ok((b, height, rebuilt)) = result else {
            tracing::error!("the dashboard's chain reader panicked; it stops");
            return;
        };
        builder = Some(b);
        if let Some(summary) = rebuilt {
            last_height = height;
            if summary.get("state_height") == summary.get("height") {
                last_built = tokio::time::Instant::now();
            }
            if tx.send(Arc::new(summary.to_string())).is_err() {
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn current_summary(State(s): State<Shared>) -> Response {
    let body = s.latest.borrow().as_str().to_string();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn live(ws: WebSocketUpgrade, State(s): State<Shared>) -> Response {
    ws.on_upgrade(move |socket| push_summaries(socket, s.latest))
}

/// Sends the current summary, then every new one, until the page goes away.
async fn push_summaries(mut socket: WebSocket, mut latest: watch::Receiver<Arc<String>>) {
    let first = latest.borrow_and_update().as_str().to_string();
    if socket.send(Message::Text(first.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            changed = latest.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = latest.borrow_and_update().as_str().to_string();
                if socket.send(Message::Text(next.into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // The page sends nothing; a close or an error ends it.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
