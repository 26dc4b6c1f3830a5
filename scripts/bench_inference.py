#!/usr/bin/env python3
"""Inference benchmark (issue 11): `kiln-mlworker serve` against Hugging Face
`transformers.generate` on the same GGUF, machine and run.

    bench_inference.py BASE_URL GGUF THREADS

Kiln: the official openai client, 1 request and then 8 concurrent requests,
each a ~128-token prompt asking for exactly 128 new tokens (greedy,
`min_tokens` = `max_tokens` = 128, vLLM's extension Kiln takes, as
transformers' `min_new_tokens`; completion tokens counted from `usage`); aggregate
tokens/s = completion tokens / wall time; time to first token at 8
concurrent from streamed requests. transformers: the same prompt ids, one
`generate` of 128 new tokens (min_new_tokens=128) for 1, and the 8 prompts
as one left-padded batch for 8. Both sides use THREADS torch threads.
Prints one RESULT line per measure and the ratios.
"""
import json
import os
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

import openai  # noqa: E402

base_url, gguf, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
NEW = 128
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
model = client.models.list().data[0].id

topics = ["the ocean", "mountains", "a city at night", "an old library", "a desert journey",
          "a winter forest", "a space station", "a small bakery"]
prompts = [
    ("Write a long, detailed story about " + t + ". " +
     "Describe the place, the people, the sounds and the smells, and what happens over one whole day, "
     "from the first light of the morning to the last hour of the night. " * 3).strip()
    for t in topics
]


def complete(p):
    r = client.completions.create(model=model, prompt=p, max_tokens=NEW, temperature=0,
                                  extra_body={"min_tokens": NEW})
    return r.usage.prompt_tokens, r.usage.completion_tokens


def timed_ttft(p, out, i):
    t0 = time.perf_counter()
    first = None
    n = 0
    for chunk in client.completions.create(model=model, prompt=p, max_tokens=NEW, temperature=0, stream=True,
                                           extra_body={"min_tokens": NEW}):
        if chunk.choices and chunk.choices[0].text:
            if first is None:
                first = time.perf_counter() - t0
            n += 1
    out[i] = (first, n)


complete(prompts[0][:40])  # warm up
t0 = time.perf_counter()
ptoks, ctoks = complete(prompts[0])
kiln1 = ctoks / (time.perf_counter() - t0)
print(f"RESULT kiln_1 prompt_tokens={ptoks} completion_tokens={ctoks} tokens_per_s={kiln1:.1f}")

results = [None] * 8
t0 = time.perf_counter()
ths = [threading.Thread(target=lambda i=i: results.__setitem__(i, complete(prompts[i]))) for i in range(8)]
[t.start() for t in ths]
[t.join() for t in ths]
el = time.perf_counter() - t0
kiln8 = sum(r[1] for r in results) / el
print(f"RESULT kiln_8 completion_tokens={sum(r[1] for r in results)} seconds={el:.1f} tokens_per_s={kiln8:.1f}")

ttft = [None] * 8
ths = [threading.Thread(target=timed_ttft, args=(prompts[i], ttft, i)) for i in range(8)]
[t.start() for t in ths]
[t.join() for t in ths]
firsts = sorted(f for f, _ in ttft if f is not None)
print(f"RESULT kiln_ttft_8 median_s={firsts[len(firsts)//2]:.2f} max_s={firsts[-1]:.2f}")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

torch.set_num_threads(threads)
folder, name = os.path.dirname(os.path.abspath(gguf)), os.path.basename(gguf)
t0 = time.perf_counter()
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
print(f"transformers loaded in {time.perf_counter() - t0:.1f}s")
tok.padding_side = "left"
if tok.pad_token is None:
    tok.pad_token = tok.eos_token
with torch.inference_mode():
    ids = tok(prompts[0], return_tensors="pt")
    t0 = time.perf_counter()
    out = hf.generate(**ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
    el = time.perf_counter() - t0
    hf1 = (out.shape[1] - ids["input_ids"].shape[1]) / el
    print(f"RESULT hf_1 completion_tokens={out.shape[1] - ids['input_ids'].shape[1]} tokens_per_s={hf1:.1f}")
    batch = tok(prompts, return_tensors="pt", padding=True)
    t0 = time.perf_counter()
    out = hf.generate(**batch, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
    el = time.perf_counter() - t0
    hf8 = 8 * (out.shape[1] - batch["input_ids"].shape[1]) / el
    print(f"RESULT hf_8 completion_tokens={8 * (out.shape[1] - batch['input_ids'].shape[1])} seconds={el:.1f} tokens_per_s={hf8:.1f}")

print(f"RESULT ratio_1 kiln/hf={kiln1 / hf1:.2f} (target >= 1)")
print(f"RESULT ratio_8 kiln/hf={kiln8 / hf8:.2f} (target >= 2)")
