"""The official `openai` Python client, unchanged, against `kiln-mlworker serve`.

Usage: check_serve.py BASE_URL MODEL  (BASE_URL like http://127.0.0.1:8090/v1)
Exits non-zero with a message on the first failed check.
"""
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=120)
messages = [{"role": "user", "content": "Name three colours of the rainbow."}]


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


ids = [m.id for m in client.models.list()]
check(model in ids, f"models.list() lists {model}: {ids}")

first = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=24, seed=1)
text = first.choices[0].message.content
check(bool(text) and first.choices[0].finish_reason in ("stop", "length"), f"chat completion: {text!r}")
check(first.usage.prompt_tokens > 5 and 0 < first.usage.completion_tokens <= 24, f"usage {first.usage}")
again = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=24, seed=1)
check(again.choices[0].message.content == text, "greedy is deterministic")

sampled = [
    client.chat.completions.create(model=model, messages=messages, temperature=1.0, top_p=0.95, seed=s, max_tokens=24)
    .choices[0].message.content
    for s in (7, 7, 8)
]
check(sampled[0] == sampled[1], "the same seed gives the same sampled text")

pieces, usage, finish = [], None, None
stream = client.chat.completions.create(
    model=model, messages=messages, temperature=0, max_tokens=24, seed=1, stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
check("".join(pieces) == text, f"streamed text equals the whole response: {''.join(pieces)!r}")
check(finish == first.choices[0].finish_reason, f"stream finish reason {finish}")
check(usage is not None and usage.completion_tokens == first.usage.completion_tokens, f"stream usage {usage}")

lp = client.chat.completions.create(
    model=model, messages=messages, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3
)
content = lp.choices[0].logprobs.content
check(len(content) == lp.usage.completion_tokens, f"{len(content)} logprob entries for {lp.usage.completion_tokens} tokens")
check(all(c.logprob <= 0 and len(c.top_logprobs) == 3 for c in content), "each token has a logprob <= 0 and 3 alternatives")
check(all(c.top_logprobs[0].logprob >= c.logprob for c in content), "greedy tokens are the most likely")
check(all(bytes(c.bytes).decode("utf-8", "replace") == c.token for c in content if c.bytes), "bytes spell the token")

comp = client.completions.create(model=model, prompt="The sky is", max_tokens=6, temperature=0, logprobs=2)
check(comp.choices[0].text and len(comp.choices[0].logprobs.tokens) == comp.usage.completion_tokens, f"completion {comp.choices[0].text!r}")

try:
    client.chat.completions.create(model=model, messages=messages, temperature="hot")
    check(False, "a wrong type is refused")
except openai.BadRequestError as e:
    check(e.body.get("param") == "temperature", f"BadRequestError names the parameter: {e.body}")
try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    check(False, "an unknown model is refused")
except openai.NotFoundError as e:
    check(e.body.get("code") == "model_not_found", f"NotFoundError for an unknown model: {e.body}")
try:
    client.chat.completions.create(model=model, messages=[])
    check(False, "empty messages are refused")
except openai.BadRequestError as e:
    check(e.body.get("param") == "messages", "BadRequestError for empty messages")
try:
    client.chat.completions.create(model=model, messages=messages, max_tokens=10**6)
    check(False, "too many tokens are refused")
except openai.BadRequestError as e:
    check(e.body.get("param") == "max_tokens", f"BadRequestError for max_tokens: {e.body}")
print("all openai client checks passed")
