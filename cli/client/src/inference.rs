//! The requester's side of paid inference: choosing a transfer agent and
//! signing an OpenAI-compatible request body with the account key
//! ([`kiln_inference::request`]), for `kiln infer` and `kiln api-proxy`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use k256::ecdsa::SigningKey;
use kiln_framework::Address;
use kiln_inference::request::{
    request_id, RequestHeader, HEADER_PUBKEY, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::rpc::RpcClient;

/// The host whose worker receives the requests, and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferAgent {
    pub host: Address,
    /// Base URL of its worker (no trailing slash).
    pub url: String,
}

/// Picks the transfer agent: `host` when given (its registered worker URL,
/// or `url` when given); otherwise the worker at `url` (its `/status` names
/// its host); otherwise a registered host that declares a model.
pub fn transfer_agent(
    rpc: &RpcClient,
    host: Option<&str>,
    url: Option<&str>,
) -> Result<TransferAgent> {
    let url = url.map(|u| u.trim_end_matches('/').to_string());
    if let Some(host) = host {
        let address = Address::parse(host).map_err(|e| anyhow!("--transfer-agent: {e}"))?;
        let url = match url {
            Some(u) => u,
            None => registered_url(rpc, &address)?,
        };
        return Ok(TransferAgent { host: address, url });
    }
    if let Some(url) = url {
        let status: Value = ureq::get(&format!("{url}/status"))
            .timeout(std::time::Duration::from_secs(10))
            .call()
            .with_context(|| format!("asking the worker at {url} which host it serves"))?
            .into_json()
            .with_context(|| format!("{url}/status is not a Kiln worker's status"))?;
        let host = status["host"]
            .as_str()
            .ok_or_else(|| anyhow!("{url}/status names no host: is it a Kiln worker?"))?;
        let address = Address::parse(host).map_err(|e| anyhow!("{url}/status host: {e}"))?;
        return Ok(TransferAgent { host: address, url });
    }
    let hosts = crate::query::json_query(rpc, kiln_hosts::query::HOSTS_PATH, b"", 0)?;
    let serving: Vec<&Value> = hosts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["models"].as_array().is_some_and(|m| !m.is_empty()))
        .collect();
    if serving.is_empty() {
        bail!("no registered host serves a model yet; pass --worker URL or --transfer-agent HOST");
    }
    let mut pick = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut pick);
    let chosen = serving[(u64::from_le_bytes(pick) % serving.len() as u64) as usize];
    let address = chosen["owner"]
        .as_str()
        .and_then(|a| Address::parse(a).ok())
        .ok_or_else(|| anyhow!("the hosts query lists a host without an address"))?;
    let url = chosen["worker_url"]
        .as_str()
        .ok_or_else(|| anyhow!("host {address} has no worker URL"))?
        .trim_end_matches('/')
        .to_string();
    Ok(TransferAgent { host: address, url })
}

fn registered_url(rpc: &RpcClient, host: &Address) -> Result<String> {
    let h = crate::query::json_query(
        rpc,
        kiln_hosts::query::HOST_PATH,
        host.to_bech32().as_bytes(),
        0,
    )
    .with_context(|| format!("looking up host {host}"))?;
    Ok(h["worker_url"]
        .as_str()
        .ok_or_else(|| anyhow!("host {host} has no worker URL"))?
        .trim_end_matches('/')
        .to_string())
}

/// A body signed for one transfer agent: send `body` as is with `headers`.
#[derive(Debug, Clone)]
pub struct SignedBody {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    pub id: [u8; 32],
    pub model: String,
    pub max_tokens: u64,
}

/// Signs an OpenAI request body (a JSON object naming its `model`). A body
/// without `max_tokens`/`max_completion_tokens` gets `max_tokens =
/// default_max_tokens`: the escrow is `(prompt + max_tokens) × price`, so a
/// paid request always states it.
pub fn sign_body(
    key: &SigningKey,
    chain_id: &str,
    transfer_agent: &Address,
    mut body: Value,
    default_max_tokens: u64,
) -> Result<SignedBody> {
    let object = body
        .as_object_mut()
        .ok_or_else(|| anyhow!("the request body must be a JSON object"))?;
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the request names no \"model\" (see `kiln query models`)"))?
        .to_string();
    let stated = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| object.get(*k).filter(|v| !v.is_null()).cloned());
    let max_tokens = match stated {
        Some(v) => v
            .as_u64()
            .filter(|m| *m > 0)
            .ok_or_else(|| anyhow!("max_tokens must be a positive integer, got {v}"))?,
        None => {
            object.insert("max_tokens".into(), Value::from(default_max_tokens));
            default_max_tokens
        }
    };
    let bytes = serde_json::to_vec(&body)?;
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let header = RequestHeader {
        chain_id: chain_id.to_string(),
        transfer_agent: *transfer_agent,
        timestamp,
        body_sha256: Sha256::digest(&bytes).into(),
        model: model.clone(),
        max_tokens,
    };
    let signature = header.sign(key);
    let pubkey = crate::keyring::compressed_pubkey(key);
    Ok(SignedBody {
        body: bytes,
        headers: vec![
            (HEADER_PUBKEY, hex::encode(pubkey)),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (HEADER_SIGNATURE, hex::encode(signature)),
        ],
        id: request_id(&signature),
        model,
        max_tokens,
    })
}

/// Reads an HTTP answer's body as it arrives (a stream stays a stream) and
/// hands each chunk, or the read error that ends it, to `send`; stops when
/// `send` returns false (the receiver went away). Used by the proxy and the
/// transfer agent to relay answers.
pub fn relay_body(
    response: ureq::Response,
    mut send: impl FnMut(std::io::Result<Vec<u8>>) -> bool,
) {
    let mut reader = response.into_reader();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match std::io::Read::read(&mut reader, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !send(Ok(buf[..n].to_vec())) {
                    break;
                }
            }
            Err(e) => {
                send(Err(e));
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_signed_body_verifies_and_states_max_tokens() {
        let key = SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let ta = Address([3; 20]);
        let s = sign_body(
            &key,
            "kiln-x",
            &ta,
            json!({"model": "m", "messages": []}),
            99,
        )
        .unwrap();
        assert_eq!(s.max_tokens, 99);
        let sent: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(sent["max_tokens"], 99);
        let pubkey = hex::decode(&s.headers[0].1).unwrap();
        let header = RequestHeader {
            chain_id: "kiln-x".into(),
            transfer_agent: ta,
            timestamp: s.headers[1].1.parse().unwrap(),
            body_sha256: Sha256::digest(&s.body).into(),
            model: "m".into(),
            max_tokens: 99,
        };
        let signature = hex::decode(&s.headers[2].1).unwrap();
        header
            .verify(&Address::from_pubkey(&pubkey), &pubkey, &signature)
            .unwrap();
        let s = sign_body(
            &key,
            "kiln-x",
            &ta,
            json!({"model": "m", "max_completion_tokens": 5}),
            99,
        )
        .unwrap();
        assert_eq!(s.max_tokens, 5);
        for bad in [
            json!([]),
            json!({"messages": []}),
            json!({"model": "m", "max_tokens": 0}),
        ] {
            assert!(sign_body(&key, "kiln-x", &ta, bad, 9).is_err());
        }
    }
}
