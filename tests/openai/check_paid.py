"""The official `openai` Python client, unchanged, buying inference on a Kiln
chain through `kiln api-proxy` (which signs each request with the account key).

Usage: check_paid.py BASE_URL MODEL OUT_JSON
  BASE_URL: the proxy, like http://127.0.0.1:8080/v1
Prints each check; writes what the chain must settle (inference ids, token
counts, SHA-256 of each completion) to OUT_JSON for the caller to compare
with `kiln query inference ID`. Exits non-zero on the first failed check.
"""
import hashlib
import json
import sys

import openai

base_url, model, out = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url, api_key="unused-kiln-signs", max_retries=0, timeout=300)
messages = [{"role": "user", "content": "Name three colours of the rainbow."}]
settled = []


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


# Plain: the raw response carries the inference id and the executor.
raw = client.chat.completions.with_raw_response.create(
    model=model, messages=messages, temperature=0, max_tokens=16
)
plain = raw.parse()
text = plain.choices[0].message.content
inference_id = raw.headers.get("x-kiln-inference-id")
check(bool(text), f"paid chat completion: {text!r}")
check(inference_id and len(inference_id) == 64, f"inference id {inference_id}")
check(0 < plain.usage.completion_tokens <= 16, f"usage {plain.usage}")
settled.append({
    "id": inference_id,
    "executor": raw.headers.get("x-kiln-executor"),
    "prompt_tokens": plain.usage.prompt_tokens,
    "completion_tokens": plain.usage.completion_tokens,
    "response_sha256": hashlib.sha256(text.encode()).hexdigest(),
})

# Streamed, with usage in the last chunk.
with client.chat.completions.with_streaming_response.create(
    model=model, messages=messages, temperature=0, max_tokens=12, stream=True,
    stream_options={"include_usage": True},
) as response:
    stream_id = response.headers.get("x-kiln-inference-id")
    pieces, usage = [], None
    for chunk in response.parse():
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
streamed = "".join(pieces)
check(bool(streamed) and len(pieces) > 1, f"streamed in {len(pieces)} chunks: {streamed!r}")
check(stream_id and stream_id != inference_id, f"stream inference id {stream_id}")
check(usage is not None and 0 < usage.completion_tokens <= 12, f"stream usage {usage}")
settled.append({
    "id": stream_id,
    "executor": response.headers.get("x-kiln-executor"),
    "prompt_tokens": usage.prompt_tokens,
    "completion_tokens": usage.completion_tokens,
    "response_sha256": hashlib.sha256(streamed.encode()).hexdigest(),
})

# A request without max_tokens gets the proxy's default (the escrow needs one).
raw = client.chat.completions.with_raw_response.create(
    model=model, messages=[{"role": "user", "content": "Hi"}], temperature=0
)
third = raw.parse()
check(third.usage.completion_tokens > 0, "a request without max_tokens is served")
settled.append({
    "id": raw.headers.get("x-kiln-inference-id"),
    "executor": raw.headers.get("x-kiln-executor"),
    "prompt_tokens": third.usage.prompt_tokens,
    "completion_tokens": third.usage.completion_tokens,
    "response_sha256": hashlib.sha256(third.choices[0].message.content.encode()).hexdigest(),
})

json.dump(settled, open(out, "w"))
