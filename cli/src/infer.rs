//! Buying inference: `kiln infer` (one chat completion, plain or streamed)
//! and `kiln api-proxy` (a local OpenAI-compatible endpoint that signs every
//! request with the account key and forwards it to a transfer agent, so the
//! official `openai` clients, curl or any OpenAI SDK work unchanged).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use k256::ecdsa::SigningKey;
use kiln_client::inference::{sign_body, TransferAgent};
use serde_json::{json, Value};

use kiln_inference::request::{HEADER_EXECUTOR, HEADER_INFERENCE_ID};

/// Largest request body the proxy forwards.
const MAX_BODY_BYTES: usize = 1 << 20;

/// What `kiln infer` prints besides the text.
#[derive(Debug, Clone)]
pub struct InferOutcome {
    pub text: String,
    pub id: String,
    pub executor: String,
    pub usage: Value,
}

fn post(
    ta: &TransferAgent,
    path: &str,
    signed: &kiln_client::inference::SignedBody,
) -> Result<ureq::Response> {
    match signed_post(&format!("{}{path}", ta.url), signed).send_bytes(&signed.body) {
        Ok(r) => Ok(r),
        Err(ureq::Error::Status(code, r)) => {
            let body: Value = r.into_json().unwrap_or(Value::Null);
            let message = body["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| body.to_string());
            bail!(
                "the transfer agent {} refused the request ({code}): {message}",
                ta.url
            )
        }
        Err(e) => Err(anyhow!(
            "cannot reach the transfer agent at {}: {e}",
            ta.url
        )),
    }
}

/// A POST of a signed body to `url` with its signature headers (send it
/// with `send_bytes(&signed.body)`; generation may take minutes).
fn signed_post(url: &str, signed: &kiln_client::inference::SignedBody) -> ureq::Request {
    let mut request = ureq::post(url)
        .set("content-type", "application/json")
        .timeout(std::time::Duration::from_secs(600));
    for (name, value) in &signed.headers {
        request = request.set(name, value);
    }
    request
}

/// One chat completion for `prompt`; `on_text` sees the text as it arrives
/// (once, at the end, when not streaming).
#[allow(clippy::too_many_arguments)]
pub fn infer(
    key: &SigningKey,
    chain_id: &str,
    ta: &TransferAgent,
    model: &str,
    prompt: &str,
    max_tokens: u64,
    stream: bool,
    mut on_text: impl FnMut(&str),
) -> Result<InferOutcome> {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let signed = sign_body(key, chain_id, &ta.host, body, max_tokens)?;
    let response = post(ta, "/v1/chat/completions", &signed)?;
    let id = response
        .header(HEADER_INFERENCE_ID)
        .unwrap_or_default()
        .to_string();
    let executor = response
        .header(HEADER_EXECUTOR)
        .unwrap_or_default()
        .to_string();
    if !stream {
        let v: Value = response.into_json().context("the answer is not JSON")?;
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| anyhow!("the answer has no message: {v}"))?
            .to_string();
        on_text(&text);
        return Ok(InferOutcome {
            text,
            id,
            executor,
            usage: v["usage"].clone(),
        });
    }
    let mut text = String::new();
    let mut usage = Value::Null;
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line.context("reading the stream")?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).context("a stream chunk is not JSON")?;
        if let Some(e) = chunk.get("error") {
            bail!(
                "the executor failed: {}",
                e["message"].as_str().unwrap_or("unknown error")
            );
        }
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
            on_text(piece);
        }
        if !chunk["usage"].is_null() {
            usage = chunk["usage"].clone();
        }
    }
    Ok(InferOutcome {
        text,
        id,
        executor,
        usage,
    })
}

struct Proxy {
    key: SigningKey,
    chain_id: String,
    ta: TransferAgent,
    default_max_tokens: u64,
}

/// Serves the proxy on `listen` until killed. Prints its address first.
pub fn api_proxy(
    listen: &str,
    key: SigningKey,
    chain_id: String,
    ta: TransferAgent,
    default_max_tokens: u64,
) -> Result<()> {
    let proxy = Arc::new(Proxy {
        key,
        chain_id,
        ta,
        default_max_tokens,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let bound: SocketAddr = listener.local_addr()?;
        println!(
            "kiln api-proxy: http://{bound}/v1 signs requests as {} for transfer agent {} ({})",
            kiln_client::keyring::address_from_pubkey(&kiln_client::keyring::compressed_pubkey(
                &proxy.key
            )),
            proxy.ta.host,
            proxy.ta.url
        );
        let _ = std::io::stdout().flush();
        let app = Router::new()
            .fallback(forward)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(proxy);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message.into(), "type": "invalid_request_error", "param": null, "code": null}})),
    )
        .into_response()
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let is_get = method == Method::GET;
    if !is_get && method != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported"),
        );
    }
    // GETs (model lists) are free and unsigned; POSTs are signed.
    let signed = if is_get {
        None
    } else {
        let parsed: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the request body is not JSON: {e}"),
                )
            }
        };
        match sign_body(
            &proxy.key,
            &proxy.chain_id,
            &proxy.ta.host,
            parsed,
            proxy.default_max_tokens,
        ) {
            Ok(s) => Some(s),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e:#}")),
        }
    };
    let _ = headers;
    let url = format!("{}{path}", proxy.ta.url);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
    let (head_tx, head_rx) =
        tokio::sync::oneshot::channel::<Result<(u16, Vec<(String, String)>), String>>();
    tokio::task::spawn_blocking(move || {
        let result = match &signed {
            None => ureq::get(&url).call(),
            Some(s) => signed_post(&url, s).send_bytes(&s.body),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => {
                let _ = head_tx.send(Err(e.to_string()));
                return;
            }
        };
        let keep: Vec<(String, String)> = ["content-type", HEADER_INFERENCE_ID, HEADER_EXECUTOR]
            .iter()
            .filter_map(|h| response.header(h).map(|v| (h.to_string(), v.to_string())))
            .collect();
        let _ = head_tx.send(Ok((response.status(), keep)));
        kiln_client::inference::relay_body(response, |chunk| {
            tx.send(chunk.map(Bytes::from)).is_ok()
        });
    });
    match head_rx.await {
        Ok(Ok((status, keep))) => {
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            let mut builder = Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY));
            for (name, value) in keep {
                builder = builder.header(name, value);
            }
            builder
                .header(header::CACHE_CONTROL, "no-cache")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Ok(Err(e)) => error(
            StatusCode::BAD_GATEWAY,
            format!("the transfer agent at {} did not answer: {e}", proxy.ta.url),
        ),
        Err(_) => error(StatusCode::BAD_GATEWAY, "the forwarding task stopped"),
    }
}
