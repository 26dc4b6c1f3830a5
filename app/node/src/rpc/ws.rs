//! Websocket sessions: JSON-RPC methods plus `subscribe` / `unsubscribe` /
//! `unsubscribe_all`, with events in CometBFT's format.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tendermint_rpc::query::Query;
use tokio::sync::broadcast::error::RecvError;

use super::{handle_request, response, ChainView, Params, RpcError, RpcLimits};
use crate::events::{parse_query, query_matches};

/// Live websocket connections and, among them, clients holding at least one
/// subscription (CometBFT's `max_subscription_clients` counts those).
#[derive(Default)]
pub struct Counters {
    connections: AtomicUsize,
    subscription_clients: AtomicUsize,
}

/// Try to take `counter` below `max`; false when it is full.
fn take(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Counters {
    /// A connection slot, or `None` when `max_websocket_connections` are open.
    pub fn connect(counters: &Arc<Counters>, limits: &RpcLimits) -> Option<Slot> {
        take(&counters.connections, limits.max_websocket_connections).then(|| Slot {
            counters: counters.clone(),
            subscribed: false,
        })
    }
}

/// One websocket connection's place in the [`Counters`]; released on drop.
pub struct Slot {
    counters: Arc<Counters>,
    subscribed: bool,
}

impl Slot {
    /// Count this connection as a subscription client (first subscription);
    /// false when `max` clients already subscribe.
    fn subscribe(&mut self, max: usize) -> bool {
        if self.subscribed {
            return true;
        }
        self.subscribed = take(&self.counters.subscription_clients, max);
        self.subscribed
    }

    /// This connection no longer holds subscriptions.
    fn unsubscribe_all(&mut self) {
        if std::mem::take(&mut self.subscribed) {
            self.counters
                .subscription_clients
                .fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.unsubscribe_all();
        self.counters.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Sub {
    query: String,
    parsed: Query,
    id: Value,
}

pub async fn session<V: ChainView + ?Sized>(
    node: Arc<V>,
    socket: WebSocket,
    mut slot: Slot,
    limits: RpcLimits,
) {
    let (mut tx, mut rx) = socket.split();
    let mut bus = node.subscribe();
    let mut shutdown = node.shutdown();
    let mut subs: Vec<Sub> = vec![];
    loop {
        tokio::select! {
            r = shutdown.changed() => {
                let stop = r.is_err() || *shutdown.borrow();
                if stop {
                    let _ = tx.send(Message::Close(None)).await;
                    break;
                }
            }
            msg = rx.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Ping(p))) => { let _ = tx.send(Message::Pong(p)).await; continue; }
                    Some(Ok(Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                };
                let reply = handle_ws_message(&node, &mut subs, &mut slot, &limits, &text).await;
                if tx.send(Message::Text(reply.to_string().into())).await.is_err() {
                    break;
                }
            }
            ev = bus.recv() => {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "websocket subscriber too slow; events dropped");
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                };
                let mut failed = false;
                for s in &subs {
                    if query_matches(&s.parsed, &ev.events) {
                        let msg = json!({
                            "jsonrpc": "2.0",
                            "id": s.id,
                            "result": {"query": s.query, "data": ev.data, "events": ev.events},
                        });
                        if tx.send(Message::Text(msg.to_string().into())).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    break;
                }
            }
        }
    }
}

async fn handle_ws_message<V: ChainView + ?Sized>(
    node: &Arc<V>,
    subs: &mut Vec<Sub>,
    slot: &mut Slot,
    limits: &RpcLimits,
    text: &str,
) -> Value {
    let req: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return response(
                &json!(-1),
                Err(RpcError::parse(format!("error unmarshaling request: {e}"))),
            )
        }
    };
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    match method.as_str() {
        "subscribe" | "unsubscribe" => {
            let params = match Params::from_json(req.get("params").cloned(), &["query"]) {
                Ok(p) => p,
                Err(e) => return response(&id, Err(e)),
            };
            let q = match params.string("query") {
                Ok(Some(q)) => q,
                Ok(None) => return response(&id, Err(RpcError::invalid_params("missing query"))),
                Err(e) => return response(&id, Err(e)),
            };
            if method == "unsubscribe" {
                let before = subs.len();
                subs.retain(|s| s.query != q);
                if subs.len() == before {
                    return response(&id, Err(RpcError::internal("subscription not found")));
                }
                if subs.is_empty() {
                    slot.unsubscribe_all();
                }
                return response(&id, Ok(json!({})));
            }
            let parsed = match parse_query(&q) {
                Ok(p) => p,
                Err(e) => return response(&id, Err(RpcError::internal(e))),
            };
            if subs.iter().any(|s| s.query == q) {
                return response(
                    &id,
                    Err(RpcError::internal(
                        "failed to subscribe: already subscribed",
                    )),
                );
            }
            if subs.len() >= limits.max_subscriptions_per_client {
                return response(
                    &id,
                    Err(RpcError::internal(format!(
                        "failed to subscribe: max_subscriptions_per_client {} reached",
                        limits.max_subscriptions_per_client
                    ))),
                );
            }
            if !slot.subscribe(limits.max_subscription_clients) {
                return response(
                    &id,
                    Err(RpcError::internal(format!(
                        "failed to subscribe: max_subscription_clients {} reached",
                        limits.max_subscription_clients
                    ))),
                );
            }
            subs.push(Sub {
                query: q,
                parsed,
                id: id.clone(),
            });
            response(&id, Ok(json!({})))
        }
        "unsubscribe_all" => {
            if subs.is_empty() {
                return response(&id, Err(RpcError::internal("subscription not found")));
            }
            subs.clear();
            slot.unsubscribe_all();
            response(&id, Ok(json!({})))
        }
        _ => handle_request(node, req).await,
    }
}
