//! The OpenAI-compatible wire format: requests of `POST /v1/chat/completions`
//! and `POST /v1/completions` parsed and checked into one
//! [`GenerationRequest`], and errors in OpenAI's shape
//! (`{"error":{"message","type","param","code"}}`) with the status codes the
//! official clients map to their exception classes (400 `BadRequestError`,
//! 404 `NotFoundError`, 429 `RateLimitError`, 5xx `InternalServerError`).
//!
//! Parsing goes field by field over the JSON object, so a wrong type names
//! its parameter (`param`) the way OpenAI's own errors do, and an unknown
//! parameter is refused instead of silently ignored (a client that thinks it
//! set `presence_penalty` should learn it had no effect).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The largest `top_logprobs` (chat) a request may ask for, as OpenAI.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// The largest `logprobs` of the legacy completions endpoint, as OpenAI.
pub const MAX_COMPLETION_LOGPROBS: u32 = 5;
/// At most this many stop strings, as OpenAI.
pub const MAX_STOP_SEQUENCES: usize = 4;

/// An error answered in OpenAI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// OpenAI's `type`: `invalid_request_error`, `rate_limit_error`, `server_error`…
    pub kind: &'static str,
    pub message: String,
    /// The request parameter at fault, when one is.
    pub param: Option<String>,
    /// A stable machine-readable code (`model_not_found`, `context_length_exceeded`…).
    pub code: Option<&'static str>,
    /// Seconds a client should wait before retrying (429/503: `Retry-After`).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param: param.map(str::to_string),
            code: None,
            retry_after_secs: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn model_not_found(model: &str, served: &[String]) -> ApiError {
        ApiError {
            status: 404,
            kind: "invalid_request_error",
            message: format!(
                "The model `{model}` does not exist on this worker; it serves: {}",
                served.join(", ")
            ),
            param: Some("model".into()),
            code: Some("model_not_found"),
            retry_after_secs: None,
        }
    }

    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError {
            status: 413,
            kind: "invalid_request_error",
            message: format!(
                "The request body is larger than this worker's limit of {limit} bytes"
            ),
            param: None,
            code: Some("request_too_large"),
            retry_after_secs: None,
        }
    }

    pub fn queue_full(queued: usize, retry_after_secs: u64) -> ApiError {
        ApiError {
            status: 429,
            kind: "rate_limit_error",
            message: format!(
                "This worker's queue is full ({queued} requests waiting); retry after {retry_after_secs} s"
            ),
            param: None,
            code: Some("queue_full"),
            retry_after_secs: Some(retry_after_secs),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 503,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: Some("unavailable"),
            retry_after_secs: Some(1),
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: None,
            retry_after_secs: None,
        }
    }

    pub fn not_found_route(method: &str, path: &str) -> ApiError {
        ApiError {
            status: 404,
            kind: "invalid_request_error",
            message: format!("Unknown request URL: {method} {path}"),
            param: None,
            code: Some("unknown_url"),
            retry_after_secs: None,
        }
    }

    /// The JSON body: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Which endpoint a request came through (the response shapes differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

/// One chat message; `content` is text, or OpenAI's list of text parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// What the model is asked to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    /// Chat messages, rendered by the model's own chat template.
    Messages(Vec<ChatMessage>),
    /// Raw text (completions).
    Text(String),
    /// Token ids given directly (completions).
    Tokens(Vec<u32>),
}

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 = no top-k cut.
    pub top_k: u32,
    /// Same seed, same prompt, same output.
    pub seed: Option<u64>,
    /// Tokens to generate at most (None: up to the context length).
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// vLLM's extension: the model's end-of-sequence tokens cannot be drawn
    /// before this many tokens (0: no minimum).
    pub min_tokens: u32,
    /// vLLM's extension: an end-of-sequence token does not end the answer
    /// (only `max_tokens`, a stop string or the context does).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: None,
            max_tokens: None,
            stop: Vec::new(),
            min_tokens: 0,
            ignore_eos: false,
        }
    }
}

/// A checked request, whichever endpoint it came through.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    pub endpoint: Endpoint,
    pub model: String,
    pub prompt: PromptInput,
    pub sampling: SamplingParams,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with `usage`.
    pub include_usage: bool,
    /// Return each generated token's logprob (and `top_logprobs` alternatives).
    pub logprobs: bool,
    pub top_logprobs: u32,
    /// Completions' `echo`: the prompt is repeated before the completion.
    pub echo: bool,
    pub user: Option<String>,
}

/// Parameters accepted and not acted on: they do not change the output
/// when left at these values, so clients that always send them work.
fn ignorable_at(name: &str, value: &Value) -> Option<bool> {
    match name {
        "presence_penalty" | "frequency_penalty" => Some(value.as_f64() == Some(0.0)),
        "n" | "best_of" => Some(value.as_u64() == Some(1)),
        "logit_bias" => Some(value.as_object().is_some_and(Map::is_empty)),
        "parallel_tool_calls" | "store" | "metadata" | "service_tier" => Some(true),
        "tools" => Some(value.as_array().is_some_and(Vec::is_empty)),
        "tool_choice" => Some(value.as_str() == Some("none")),
        "response_format" => Some(value.get("type").and_then(Value::as_str) == Some("text")),
        _ => None,
    }
}

struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// A parameter of type `T`, or None when absent or `null`.
    fn take<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ApiError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|_| {
                ApiError::invalid(
                    Some(name),
                    format!(
                        "Invalid type for '{name}': expected {expected}, but got {}",
                        describe(&v)
                    ),
                )
                .with_code("invalid_type")
            }),
        }
    }

    /// Whatever is left is unknown, or accepted only at a neutral value.
    fn finish(self) -> Result<(), ApiError> {
        for (name, value) in self.map {
            match ignorable_at(&name, &value) {
                Some(true) => {}
                Some(false) => {
                    return Err(ApiError::invalid(
                        Some(&name),
                        format!("'{name}' = {value} is not supported by this worker (leave it at its default)"),
                    )
                    .with_code("unsupported_parameter"))
                }
                None => {
                    return Err(ApiError::invalid(
                        Some(&name),
                        format!("Unrecognized request argument supplied: {name}"),
                    )
                    .with_code("unknown_parameter"))
                }
            }
        }
        Ok(())
    }
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    if text.len() > 40 {
        kind.to_string()
    } else {
        format!("{kind} ({text})")
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CompletionPrompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

/// A message as sent: `content` a string, a list of `{"type":"text","text"}`
/// parts, or null (assistant turns with tool calls, which are refused).
#[derive(Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<WireContent>,
    #[serde(default)]
    #[allow(dead_code)] // accepted for the wire format; a name changes nothing here
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

#[derive(Deserialize)]
struct WirePart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// Parses a request body of `endpoint` (already bounded in size by the
/// caller). Every error is a 400 in OpenAI's shape naming the parameter.
pub fn parse_request(endpoint: Endpoint, body: &[u8]) -> Result<GenerationRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            None,
            format!("We could not parse the JSON body of your request ({e}). The body must be a JSON object."),
        )
        .with_code("invalid_json")
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid(
            None,
            format!(
                "The request body must be a JSON object, not {}",
                describe(&value)
            ),
        )
        .with_code("invalid_json"));
    };
    let mut f = Fields { map };

    let model: String = f.take("model", "a string")?.ok_or_else(|| {
        ApiError::invalid(Some("model"), "you must provide a model parameter")
            .with_code("missing_required_parameter")
    })?;
    let prompt = match endpoint {
        Endpoint::Chat => {
            if f.map.contains_key("prompt") {
                return Err(ApiError::invalid(
                    Some("prompt"),
                    "chat completions take 'messages', not 'prompt' (use /v1/completions for a prompt)",
                ));
            }
            let messages: Vec<WireMessage> = f
                .take("messages", "an array of messages with 'role' and 'content'")?
                .ok_or_else(|| {
                    ApiError::invalid(Some("messages"), "you must provide a messages parameter")
                        .with_code("missing_required_parameter")
                })?;
            PromptInput::Messages(check_messages(messages)?)
        }
        Endpoint::Completions => {
            let prompt: CompletionPrompt = f
                .take(
                    "prompt",
                    "a string, an array of one string, or an array of token ids",
                )?
                .ok_or_else(|| {
                    ApiError::invalid(Some("prompt"), "you must provide a prompt parameter")
                        .with_code("missing_required_parameter")
                })?;
            match prompt {
                CompletionPrompt::Text(t) => PromptInput::Text(t),
                CompletionPrompt::Texts(mut ts) if ts.len() == 1 => PromptInput::Text(ts.remove(0)),
                CompletionPrompt::Tokens(ids) if !ids.is_empty() => PromptInput::Tokens(ids),
                CompletionPrompt::TokenLists(mut ls) if ls.len() == 1 && !ls[0].is_empty() => {
                    PromptInput::Tokens(ls.remove(0))
                }
                _ => {
                    return Err(ApiError::invalid(
                        Some("prompt"),
                        "this worker takes one prompt per request (a string, or a non-empty array of token ids)",
                    ))
                }
            }
        }
    };

    let mut sampling = SamplingParams::default();
    if let Some(t) = f.take::<f64>("temperature", "a number")? {
        if !(0.0..=2.0).contains(&t) {
            return Err(
                ApiError::invalid(Some("temperature"), format!("{t} is not in [0, 2]"))
                    .with_code("out_of_range"),
            );
        }
        sampling.temperature = t as f32;
    }
    if let Some(p) = f.take::<f64>("top_p", "a number")? {
        if !(p > 0.0 && p <= 1.0) {
            return Err(
                ApiError::invalid(Some("top_p"), format!("{p} is not in (0, 1]"))
                    .with_code("out_of_range"),
            );
        }
        sampling.top_p = p as f32;
    }
    if let Some(k) = f.take::<u32>("top_k", "a non-negative integer")? {
        sampling.top_k = k;
    }
    sampling.seed = f.take::<u64>("seed", "a non-negative integer")?;
    let max_tokens = f.take::<u32>("max_tokens", "a non-negative integer")?;
    let max_completion_tokens = f.take::<u32>("max_completion_tokens", "a non-negative integer")?;
    sampling.max_tokens = max_completion_tokens.or(max_tokens);
    if sampling.max_tokens == Some(0) {
        return Err(
            ApiError::invalid(Some("max_tokens"), "max_tokens must be at least 1")
                .with_code("out_of_range"),
        );
    }
    sampling.min_tokens = f
        .take::<u32>("min_tokens", "a non-negative integer")?
        .unwrap_or(0);
    if let Some(max) = sampling.max_tokens {
        if sampling.min_tokens > max {
            return Err(ApiError::invalid(
                Some("min_tokens"),
                format!(
                    "min_tokens ({}) is above max_tokens ({max})",
                    sampling.min_tokens
                ),
            )
            .with_code("out_of_range"));
        }
    }
    sampling.ignore_eos = f.take::<bool>("ignore_eos", "a boolean")?.unwrap_or(false);
    sampling.stop = match f.take::<StringOrList>("stop", "a string or an array of strings")? {
        None => Vec::new(),
        Some(StringOrList::One(s)) => vec![s],
        Some(StringOrList::Many(v)) => v,
    };
    sampling.stop.retain(|s| !s.is_empty());
    if sampling.stop.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid(
            Some("stop"),
            format!(
                "at most {MAX_STOP_SEQUENCES} stop sequences, got {}",
                sampling.stop.len()
            ),
        ));
    }

    let stream = f.take::<bool>("stream", "a boolean")?.unwrap_or(false);
    let include_usage = match f
        .take::<StreamOptions>("stream_options", "an object like {\"include_usage\": true}")?
    {
        None => false,
        Some(_) if !stream => {
            return Err(ApiError::invalid(
                Some("stream_options"),
                "stream_options is only allowed when stream is true",
            ))
        }
        Some(o) => o.include_usage,
    };

    let (logprobs, top_logprobs, echo) = match endpoint {
        Endpoint::Chat => {
            let logprobs = f.take::<bool>("logprobs", "a boolean")?.unwrap_or(false);
            let top = f.take::<u32>("top_logprobs", "an integer from 0 to 20")?;
            if let Some(top) = top {
                if top > MAX_TOP_LOGPROBS {
                    return Err(ApiError::invalid(
                        Some("top_logprobs"),
                        format!("top_logprobs must be at most {MAX_TOP_LOGPROBS}, got {top}"),
                    )
                    .with_code("out_of_range"));
                }
                if !logprobs {
                    return Err(ApiError::invalid(
                        Some("top_logprobs"),
                        "top_logprobs requires logprobs to be true",
                    ));
                }
            }
            (logprobs, top.unwrap_or(0), false)
        }
        Endpoint::Completions => {
            let n = f.take::<u32>("logprobs", "an integer from 0 to 5")?;
            if let Some(n) = n {
                if n > MAX_COMPLETION_LOGPROBS {
                    return Err(ApiError::invalid(
                        Some("logprobs"),
                        format!("logprobs must be at most {MAX_COMPLETION_LOGPROBS}, got {n}"),
                    )
                    .with_code("out_of_range"));
                }
            }
            let echo = f.take::<bool>("echo", "a boolean")?.unwrap_or(false);
            if f.take::<String>("suffix", "a string")?
                .is_some_and(|s| !s.is_empty())
            {
                return Err(ApiError::invalid(
                    Some("suffix"),
                    "suffix (insertion) is not supported by this model",
                ));
            }
            (n.is_some(), n.unwrap_or(0), echo)
        }
    };
    let user = f.take::<String>("user", "a string")?;
    f.finish()?;
    Ok(GenerationRequest {
        endpoint,
        model,
        prompt,
        sampling,
        stream,
        include_usage,
        logprobs,
        top_logprobs,
        echo,
        user,
    })
}

fn check_messages(messages: Vec<WireMessage>) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "messages must contain at least one message",
        )
        .with_code("empty_array"));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let param = format!("messages[{i}]");
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant"
        ) {
            return Err(ApiError::invalid(
                Some(&format!("{param}.role")),
                format!(
                    "'{}' is not a supported role: use system, developer, user or assistant",
                    m.role
                ),
            ));
        }
        let content = match m.content {
            Some(WireContent::Text(t)) => t,
            Some(WireContent::Parts(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.into_iter().enumerate() {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                Some(&format!("{param}.content[{j}]")),
                                format!("content parts of type '{kind}' are not supported: this model reads text"),
                            ))
                        }
                    }
                }
                text
            }
            None => {
                return Err(ApiError::invalid(
                    Some(&format!("{param}.content")),
                    "each message needs a 'content' string",
                ))
            }
        };
        // The template's `developer` is OpenAI's new name for `system`.
        let role = if m.role == "developer" {
            "system".to_string()
        } else {
            m.role
        };
        out.push(ChatMessage { role, content });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<GenerationRequest, ApiError> {
        parse_request(Endpoint::Chat, body.to_string().as_bytes())
    }

    #[test]
    fn a_full_chat_request_parses() {
        let r = chat(json!({
            "model": "smollm2-135m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}
            ],
            "temperature": 0, "top_p": 0.9, "seed": 7, "max_tokens": 16, "stop": "\n",
            "stream": true, "stream_options": {"include_usage": true},
            "logprobs": true, "top_logprobs": 5, "n": 1, "presence_penalty": 0
        }))
        .unwrap();
        assert_eq!(r.model, "smollm2-135m");
        assert_eq!(
            r.prompt,
            PromptInput::Messages(vec![
                ChatMessage {
                    role: "system".into(),
                    content: "Be brief.".into()
                },
                ChatMessage {
                    role: "user".into(),
                    content: "Hi there".into()
                },
            ])
        );
        assert_eq!(r.sampling.temperature, 0.0);
        assert_eq!(r.sampling.seed, Some(7));
        assert_eq!(r.sampling.max_tokens, Some(16));
        assert_eq!(r.sampling.stop, vec!["\n".to_string()]);
        assert!(r.stream && r.include_usage && r.logprobs);
        assert_eq!(r.top_logprobs, 5);
    }

    #[test]
    fn completions_take_text_or_token_ids() {
        let r = parse_request(
            Endpoint::Completions,
            br#"{"model":"m","prompt":"Once","logprobs":3,"echo":true}"#,
        )
        .unwrap();
        assert_eq!(r.prompt, PromptInput::Text("Once".into()));
        assert!(r.logprobs && r.echo);
        assert_eq!(r.top_logprobs, 3);
        let r = parse_request(
            Endpoint::Completions,
            br#"{"model":"m","prompt":[[1,2,3]]}"#,
        )
        .unwrap();
        assert_eq!(r.prompt, PromptInput::Tokens(vec![1, 2, 3]));
        let e = parse_request(
            Endpoint::Completions,
            br#"{"model":"m","prompt":["a","b"]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }

    #[test]
    fn bad_requests_name_their_parameter() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"messages": [{"role": "user", "content": "x"}]}),
                "model",
                "missing_required_parameter",
            ),
            (
                json!({"model": "m"}),
                "messages",
                "missing_required_parameter",
            ),
            (
                json!({"model": "m", "messages": []}),
                "messages",
                "empty_array",
            ),
            (json!({"model": 5, "messages": []}), "model", "invalid_type"),
            (
                json!({"model": "m", "messages": "hi"}),
                "messages",
                "invalid_type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
                "temperature",
                "invalid_type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                "temperature",
                "out_of_range",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
                "max_tokens",
                "invalid_type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
                "max_tokens",
                "out_of_range",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
                "out_of_range",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "min_tokens": 5}),
                "min_tokens",
                "out_of_range",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "ignore_eos": "yes"}),
                "ignore_eos",
                "invalid_type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}),
                "frobnicate",
                "unknown_parameter",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}),
                "n",
                "unsupported_parameter",
            ),
        ];
        for (body, param, code) in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
            assert_eq!(e.code, Some(code), "{body}: {e:?}");
        }
        let e = chat(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = chat(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
    }

    #[test]
    fn malformed_json_and_non_objects_are_400s_with_the_openai_shape() {
        for body in [&b"{not json"[..], b"[1,2]", b"", b"\"text\""] {
            let e = parse_request(Endpoint::Chat, body).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.code, Some("invalid_json"));
            let shape = e.body();
            assert!(shape["error"]["message"].is_string());
            assert_eq!(shape["error"]["type"], "invalid_request_error");
            assert!(shape["error"].as_object().unwrap().contains_key("param"));
        }
    }
}
