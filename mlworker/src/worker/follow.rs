//! New-block notifications from the node's websocket (`/websocket`,
//! `subscribe` to `tm.event='NewBlock'`), so the worker acts as soon as a block
//! commits instead of at its next poll. Best effort: while the websocket is
//! unavailable (or the node does not offer one) the worker keeps polling, and
//! the subscriber reconnects in the background.

use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tungstenite::Message;

/// Counts new blocks announced by the node; the worker waits on it between ticks.
#[derive(Clone, Default)]
pub struct BlockSignal {
    inner: Arc<(Mutex<BlockSignalState>, Condvar)>,
}

#[derive(Default)]
struct BlockSignalState {
    blocks: u64,
    connected: bool,
}

impl BlockSignal {
    fn announce(&self) {
        let (lock, cvar) = &*self.inner;
        if let Ok(mut s) = lock.lock() {
            s.blocks = s.blocks.wrapping_add(1);
        }
        cvar.notify_all();
    }

    fn set_connected(&self, connected: bool) {
        if let Ok(mut s) = self.inner.0.lock() {
            s.connected = connected;
        }
    }

    /// Whether the websocket subscription is live.
    pub fn connected(&self) -> bool {
        self.inner.0.lock().map(|s| s.connected).unwrap_or(false)
    }

    /// Blocks announced so far.
    pub fn blocks(&self) -> u64 {
        self.inner.0.lock().map(|s| s.blocks).unwrap_or(0)
    }

    /// Waits until a block newer than `seen` is announced or `timeout`
    /// passes; returns the count to pass next time.
    pub fn wait_after(&self, seen: u64, timeout: Duration) -> u64 {
        let (lock, cvar) = &*self.inner;
        let Ok(guard) = lock.lock() else {
            std::thread::sleep(timeout);
            return seen;
        };
        match cvar.wait_timeout_while(guard, timeout, |s| s.blocks == seen) {
            Ok((s, _)) => s.blocks,
            Err(_) => seen,
        }
    }
}

/// `http://host:port` → `ws://host:port/websocket`.
pub fn websocket_url(node_url: &str) -> String {
    let base = kiln_client::rpc::normalize_node_url(node_url);
    let rest = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .unwrap_or(base);
    format!("{}/websocket", rest.trim_end_matches('/'))
}

/// Starts the subscriber thread; the returned signal counts new blocks.
pub fn spawn(node_url: &str) -> BlockSignal {
    let signal = BlockSignal::default();
    let url = websocket_url(node_url);
    let thread_signal = signal.clone();
    let spawned = std::thread::Builder::new().name("new-blocks".into()).spawn(move || {
        let mut logged_failure = false;
        loop {
            match follow(&url, &thread_signal) {
                Ok(()) => {}
                Err(e) => {
                    if !logged_failure {
                        tracing::info!(url = %url, error = %format!("{e:#}"), "no new-block websocket; polling until it is back");
                        logged_failure = true;
                    }
                }
            }
            thread_signal.set_connected(false);
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the new-block subscriber; polling only");
    }
    signal
}

/// One connection: subscribe, then announce every NewBlock event until the
/// connection fails or goes silent.
fn follow(url: &str, signal: &BlockSignal) -> Result<()> {
    let authority = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow!("only ws:// is supported for the new-block subscription"))?
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let stream = TcpStream::connect(&authority).with_context(|| format!("connect {authority}"))?;
    // Blocks come every second or so; a minute of silence means a dead link.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (mut socket, _) = tungstenite::client(url, stream)
        .map_err(|e| anyhow!("websocket handshake with {url}: {e}"))?;
    let subscribe = serde_json::json!({
        "jsonrpc": "2.0",
        "id": "kiln-mlworker",
        "method": "subscribe",
        "params": {"query": "tm.event='NewBlock'"},
    });
    socket.send(Message::Text(subscribe.to_string().into()))?;
    signal.set_connected(true);
    tracing::info!(url, "subscribed to new blocks");
    loop {
        match socket.read()? {
            Message::Text(text) if text.contains("NewBlock") => signal.announce(),
            Message::Ping(p) => socket.send(Message::Pong(p))?,
            Message::Close(_) => return Ok(()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_url_from_node_url() {
        assert_eq!(
            websocket_url("http://127.0.0.1:26657"),
            "ws://127.0.0.1:26657/websocket"
        );
        assert_eq!(
            websocket_url("127.0.0.1:26657/"),
            "ws://127.0.0.1:26657/websocket"
        );
    }

    #[test]
    fn wait_returns_on_an_announcement_or_after_the_timeout() {
        let s = BlockSignal::default();
        let t0 = std::time::Instant::now();
        assert_eq!(s.wait_after(0, Duration::from_millis(50)), 0);
        assert!(t0.elapsed() >= Duration::from_millis(40));
        let s2 = s.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s2.announce();
        });
        let t0 = std::time::Instant::now();
        assert_eq!(s.wait_after(0, Duration::from_secs(10)), 1);
        assert!(t0.elapsed() < Duration::from_secs(5));
        h.join().unwrap();
    }
}
