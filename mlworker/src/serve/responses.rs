//! Response bodies in OpenAI's shapes: `chat.completion`,
//! `chat.completion.chunk` (streamed as server-sent events, ending with
//! `data: [DONE]`), `text_completion` and its chunks, `usage`, and logprobs
//! (chat: `{"content":[{token, logprob, bytes, top_logprobs}]}`; legacy
//! completions: `{tokens, token_logprobs, top_logprobs, text_offset}`).

use serde_json::{json, Map, Value};

/// One generated token with its log-probability and the alternatives asked
/// for (`top_logprobs`), each as (text, bytes, logprob).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<(String, Vec<u8>, f32)>,
    /// The token's id and the alternatives' ids (same order as `top`): what
    /// an executor keeps for validators' replays.
    pub token_id: u32,
    pub top_ids: Vec<u32>,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

/// Why generation ended: `stop` (EOS or a stop string) or `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Fields every response of one request shares.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Identifies the weights that served it (the model file's SHA-256 prefix).
    pub system_fingerprint: String,
}

fn logprob(v: f32) -> Value {
    // JSON has no -inf: a token of probability 0 reports OpenAI's floor.
    if v.is_finite() {
        json!(v)
    } else {
        json!(-9999.0)
    }
}

fn chat_logprobs(tokens: &[TokenLogprob]) -> Value {
    json!({"content": tokens.iter().map(|t| json!({
        "token": t.token,
        "logprob": logprob(t.logprob),
        "bytes": t.bytes,
        "top_logprobs": t.top.iter().map(|(tok, bytes, lp)| json!({
            "token": tok, "logprob": logprob(*lp), "bytes": bytes,
        })).collect::<Vec<_>>(),
    })).collect::<Vec<_>>(), "refusal": null})
}

/// Legacy completions logprobs; `offset` is the text offset of the first token.
fn completion_logprobs(tokens: &[TokenLogprob], mut offset: usize) -> Value {
    let mut text_offset = Vec::with_capacity(tokens.len());
    for t in tokens {
        text_offset.push(offset);
        offset += t.token.len();
    }
    json!({
        "tokens": tokens.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| logprob(t.logprob)).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| {
            let mut m = Map::new();
            for (tok, _, lp) in &t.top {
                m.entry(tok.clone()).or_insert(logprob(*lp));
            }
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "text_offset": text_offset,
    })
}

/// A whole (non-streamed) chat completion.
pub fn chat_completion(
    meta: &ResponseMeta,
    content: &str,
    finish: FinishReason,
    logprobs: Option<&[TokenLogprob]>,
    usage: Usage,
) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.system_fingerprint,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": logprobs.map(chat_logprobs),
            "finish_reason": finish.as_str(),
        }],
        "usage": usage.json(),
    })
}

/// One streamed chat chunk: the first carries the role, later ones text,
/// the last the finish reason. `usage` is null on every chunk when the
/// client asked for usage (the final usage chunk has no choices).
pub fn chat_chunk(
    meta: &ResponseMeta,
    first: bool,
    content: Option<&str>,
    logprobs: Option<&[TokenLogprob]>,
    finish: Option<FinishReason>,
    include_usage: bool,
) -> Value {
    let mut delta = Map::new();
    if first {
        delta.insert("role".into(), json!("assistant"));
    }
    if let Some(text) = content {
        delta.insert("content".into(), json!(text));
    }
    let mut chunk = json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.system_fingerprint,
        "choices": [{
            "index": 0,
            "delta": delta,
            "logprobs": logprobs.map(chat_logprobs),
            "finish_reason": finish.map(FinishReason::as_str),
        }],
    });
    if include_usage {
        chunk["usage"] = Value::Null;
    }
    chunk
}

/// The last chunk of a chat stream with `stream_options.include_usage`.
pub fn chat_usage_chunk(meta: &ResponseMeta, usage: Usage) -> Value {
    usage_chunk(meta, "chat.completion.chunk", usage)
}

/// The last chunk of a stream with usage: no choices, only `usage`.
fn usage_chunk(meta: &ResponseMeta, object: &str, usage: Usage) -> Value {
    json!({
        "id": meta.id,
        "object": object,
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.system_fingerprint,
        "choices": [],
        "usage": usage.json(),
    })
}

/// A whole legacy completion. `text_offset_base` is where the completion's
/// text starts (the prompt's length when echoed, else 0).
pub fn text_completion(
    meta: &ResponseMeta,
    text: &str,
    finish: FinishReason,
    logprobs: Option<(&[TokenLogprob], usize)>,
    usage: Usage,
) -> Value {
    json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.system_fingerprint,
        "choices": [{
            "index": 0,
            "text": text,
            "logprobs": logprobs.map(|(t, base)| completion_logprobs(t, base)),
            "finish_reason": finish.as_str(),
        }],
        "usage": usage.json(),
    })
}

/// One streamed legacy completion chunk.
pub fn text_chunk(
    meta: &ResponseMeta,
    text: &str,
    logprobs: Option<(&[TokenLogprob], usize)>,
    finish: Option<FinishReason>,
    include_usage: bool,
) -> Value {
    let mut chunk = json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.system_fingerprint,
        "choices": [{
            "index": 0,
            "text": text,
            "logprobs": logprobs.map(|(t, base)| completion_logprobs(t, base)),
            "finish_reason": finish.map(FinishReason::as_str),
        }],
    });
    if include_usage {
        chunk["usage"] = Value::Null;
    }
    chunk
}

/// The last legacy chunk with `include_usage`.
pub fn text_usage_chunk(meta: &ResponseMeta, usage: Usage) -> Value {
    usage_chunk(meta, "text_completion", usage)
}

/// A server-sent event carrying `value`.
pub fn sse_event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The stream's terminator.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "chatcmpl-1".into(),
            created: 1,
            model: "smollm2-135m".into(),
            system_fingerprint: "fp_0123".into(),
        }
    }

    fn token(t: &str, lp: f32) -> TokenLogprob {
        TokenLogprob {
            token_id: 0,
            top_ids: Vec::new(),
            token: t.into(),
            bytes: t.as_bytes().to_vec(),
            logprob: lp,
            top: vec![
                (t.into(), t.as_bytes().to_vec(), lp),
                ("x".into(), b"x".to_vec(), f32::NEG_INFINITY),
            ],
        }
    }

    #[test]
    fn chat_shapes_match_openai() {
        let toks = [token("Hi", -0.1)];
        let c = chat_completion(
            &meta(),
            "Hi",
            FinishReason::Stop,
            Some(&toks),
            Usage {
                prompt_tokens: 3,
                completion_tokens: 1,
            },
        );
        assert_eq!(c["object"], "chat.completion");
        assert_eq!(c["choices"][0]["message"]["role"], "assistant");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(c["usage"]["total_tokens"], 4);
        let lp = &c["choices"][0]["logprobs"]["content"][0];
        assert_eq!(lp["token"], "Hi");
        assert_eq!(lp["bytes"], json!([72, 105]));
        assert_eq!(lp["top_logprobs"][1]["logprob"], -9999.0);

        let first = chat_chunk(&meta(), true, Some(""), None, None, true);
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert!(first["usage"].is_null() && first.as_object().unwrap().contains_key("usage"));
        let last = chat_chunk(
            &meta(),
            false,
            None,
            None,
            Some(FinishReason::Length),
            false,
        );
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        assert!(!last.as_object().unwrap().contains_key("usage"));
        let usage = chat_usage_chunk(
            &meta(),
            Usage {
                prompt_tokens: 2,
                completion_tokens: 5,
            },
        );
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 5);
        assert_eq!(sse_event(&json!({"a": 1})), "data: {\"a\":1}\n\n");
    }

    #[test]
    fn legacy_logprobs_carry_offsets_and_top_maps() {
        let toks = [token("Once", -0.5), token(" upon", -0.25)];
        let c = text_completion(
            &meta(),
            "Once upon",
            FinishReason::Length,
            Some((&toks, 4)),
            Usage::default(),
        );
        let lp = &c["choices"][0]["logprobs"];
        assert_eq!(lp["tokens"], json!(["Once", " upon"]));
        assert_eq!(lp["text_offset"], json!([4, 8]));
        assert_eq!(lp["top_logprobs"][1][" upon"], -0.25);
    }
}
