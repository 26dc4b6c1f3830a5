//! Minimal blocking CometBFT 0.38 JSON-RPC client (`status`, `abci_query`,
//! `validators`, `broadcast_tx_sync`, `tx`) over plain HTTP.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

/// Default RPC address of a local node.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:26657";

/// JSON-RPC client of one node.
pub struct RpcClient {
    url: String,
    agent: ureq::Agent,
}

/// Result of an `abci_query`.
#[derive(Debug, Clone)]
pub struct AbciQueryResponse {
    pub code: u32,
    pub codespace: String,
    pub log: String,
    pub value: Vec<u8>,
    pub height: u64,
}

/// Result of `broadcast_tx_sync` (CheckTx).
#[derive(Debug, Clone)]
pub struct BroadcastResponse {
    pub code: u32,
    pub codespace: String,
    pub log: String,
    /// upper-case hex
    pub hash: String,
}

/// Error the node returned for a JSON-RPC call (as opposed to a transport error).
#[derive(Debug, thiserror::Error)]
#[error("node error {code}: {message}{}", if data.is_empty() { String::new() } else { format!(": {data}") })]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: String,
}

/// Parses a `u64` that CometBFT may send as a JSON string or number.
pub fn json_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Parses an `i64` sent as a JSON string or number.
pub fn json_i64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

pub fn json_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Normalises a node address: `tcp://` → `http://`, adds `http://` when no
/// scheme is given, strips a trailing `/`.
pub fn normalize_node_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("tcp://") {
        format!("http://{rest}")
    } else if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

impl RpcClient {
    pub fn new(url: &str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build();
        RpcClient {
            url: normalize_node_url(url),
            agent,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> anyhow::Error {
        if self.url.starts_with("https://") {
            return anyhow!(
                "cannot reach node at {}: {e}\n  this build of kiln speaks plain http only; use an http:// address (e.g. through an SSH tunnel)",
                self.url
            );
        }
        anyhow!(
            "cannot reach node at {}: {e}\n  is `kilnd devnet` running? (set the address with --node or KILN_NODE)",
            self.url
        )
    }

    fn handle_response(
        &self,
        method: &str,
        resp: std::result::Result<ureq::Response, ureq::Error>,
    ) -> Result<Value> {
        let body: Value = match resp {
            Ok(r) => r.into_json().with_context(|| {
                format!(
                    "node at {} sent an invalid JSON-RPC response to `{method}`",
                    self.url
                )
            })?,
            // CometBFT answers JSON-RPC errors with HTTP 500 and a JSON body.
            Err(ureq::Error::Status(code, r)) => match r.into_json::<Value>() {
                Ok(v) if v.get("error").is_some() => v,
                _ => bail!("node at {} answered `{method}` with HTTP {code}", self.url),
            },
            Err(ureq::Error::Transport(t)) => return Err(self.unreachable(t)),
        };
        if let Some(err) = body.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError {
                code: json_i64(&err["code"]).unwrap_or(0),
                message: json_str(&err["message"]),
                data: json_str(&err["data"]),
            }
            .into());
        }
        body.get("result").cloned().ok_or_else(|| {
            anyhow!(
                "node at {} sent a JSON-RPC response to `{method}` without a result",
                self.url
            )
        })
    }

    /// Calls a method with JSON-RPC over HTTP POST.
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .send_json(req);
        self.handle_response(method, resp)
    }

    /// Calls a method with the URI (GET) form: `GET /method?k=v`.
    pub fn call_uri(&self, method: &str, query: &[(&str, &str)]) -> Result<Value> {
        let mut req = self.agent.get(&format!("{}/{method}", self.url));
        for (k, v) in query {
            req = req.query(k, v);
        }
        self.handle_response(method, req.call())
    }

    /// RPC `status`.
    pub fn status(&self) -> Result<Value> {
        self.call("status", json!({}))
    }

    /// Chain id from `status` (`node_info.network`).
    pub fn chain_id(&self) -> Result<String> {
        let st = self.status()?;
        let id = json_str(&st["node_info"]["network"]);
        if id.is_empty() {
            bail!(
                "node at {} did not report a chain id in `status`; pass --chain-id",
                self.url
            );
        }
        Ok(id)
    }

    /// RPC `abci_query` (`height` 0 = latest).
    pub fn abci_query(&self, path: &str, data: &[u8], height: u64) -> Result<AbciQueryResponse> {
        let res = self.call(
            "abci_query",
            json!({"path": path, "data": hex::encode_upper(data), "height": height.to_string(), "prove": false}),
        )?;
        let r = &res["response"];
        let value = match &r["value"] {
            Value::String(s) if !s.is_empty() => base64::engine::general_purpose::STANDARD
                .decode(s)
                .with_context(|| format!("abci_query {path}: response value is not base64"))?,
            _ => vec![],
        };
        Ok(AbciQueryResponse {
            code: json_u64(&r["code"]).unwrap_or(0) as u32,
            codespace: json_str(&r["codespace"]),
            log: json_str(&r["log"]),
            value,
            height: json_u64(&r["height"]).unwrap_or(0),
        })
    }

    /// RPC `validators` at `height` (0 = latest), every page: the list of
    /// `{address, pub_key: {type, value}, voting_power, proposer_priority}`.
    pub fn validators(&self, height: u64) -> Result<Vec<Value>> {
        let mut all = vec![];
        for page in 1..=100u64 {
            let mut params = json!({"page": page.to_string(), "per_page": "100"});
            if height > 0 {
                params["height"] = json!(height.to_string());
            }
            let res = self.call("validators", params)?;
            let items = res["validators"].as_array().cloned().unwrap_or_default();
            let total = json_u64(&res["total"]).unwrap_or(0) as usize;
            let empty = items.is_empty();
            all.extend(items);
            if empty || all.len() >= total {
                return Ok(all);
            }
        }
        bail!("too many validator pages from {}", self.url)
    }

    /// RPC `broadcast_tx_sync`.
    pub fn broadcast_tx_sync(&self, tx: &[u8]) -> Result<BroadcastResponse> {
        let res = self.call(
            "broadcast_tx_sync",
            json!({"tx": base64::engine::general_purpose::STANDARD.encode(tx)}),
        )?;
        Ok(BroadcastResponse {
            code: json_u64(&res["code"]).unwrap_or(0) as u32,
            codespace: json_str(&res["codespace"]),
            log: json_str(&res["log"]),
            hash: json_str(&res["hash"]).to_uppercase(),
        })
    }

    /// RPC `tx` by hash (hex). `Ok(None)` when the node does not know it (yet).
    pub fn tx(&self, hash_hex: &str) -> Result<Option<Value>> {
        let hash_hex = hash_hex.trim_start_matches("0x").to_uppercase();
        let hash =
            hex::decode(&hash_hex).with_context(|| format!("'{hash_hex}' is not a hex tx hash"))?;
        if hash.len() != 32 {
            bail!(
                "a tx hash is 32 bytes (64 hex characters), got {}",
                hash.len()
            );
        }
        // URI form `tx?hash=0x…` first; JSON-RPC POST (hash in base64) as a fallback.
        let r = match self.call_uri("tx", &[("hash", &format!("0x{hash_hex}")), ("prove", "false")]) {
            Ok(v) => Ok(v),
            Err(e) if e.downcast_ref::<RpcError>().is_some() => Err(e),
            Err(e) if e.to_string().contains("cannot reach node") => Err(e),
            Err(_) => self.call(
                "tx",
                json!({"hash": base64::engine::general_purpose::STANDARD.encode(&hash), "prove": false}),
            ),
        };
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) => match e.downcast_ref::<RpcError>() {
                Some(re)
                    if format!("{} {}", re.message, re.data)
                        .to_lowercase()
                        .contains("not found") =>
                {
                    Ok(None)
                }
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            normalize_node_url("tcp://127.0.0.1:26657"),
            "http://127.0.0.1:26657"
        );
        assert_eq!(
            normalize_node_url("localhost:26657/"),
            "http://localhost:26657"
        );
        assert_eq!(
            normalize_node_url("https://rpc.example"),
            "https://rpc.example"
        );
    }

    #[test]
    fn unreachable_node_error_is_helpful() {
        // Port 1 on loopback: nothing listens there.
        let c = RpcClient::new("http://127.0.0.1:1");
        let e = c.status().unwrap_err().to_string();
        assert!(e.contains("cannot reach node at http://127.0.0.1:1"), "{e}");
        assert!(e.contains("kilnd devnet"), "{e}");
    }
}
