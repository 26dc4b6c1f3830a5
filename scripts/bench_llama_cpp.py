#!/usr/bin/env python3
"""llama.cpp row of the inference benchmark (issue 11), when the
`llama-cpp-python` package is importable (it is a source package that needs
cmake and a C++ build; setup does not install it).

    bench_llama_cpp.py GGUF THREADS

The same first prompt as bench_inference.py, greedy, 128 new tokens (EOS
suppressed by a logit bias so every run generates them all), THREADS
threads; prints tokens/s at 1 request. llama.cpp computes on the Q4_1
weights directly (no f32 dequantization), so it reads ~6x less memory per
token than an f32 engine: the row is a reference point, not a like-for-like
f32 comparison.
"""
import sys
import time

import llama_cpp

gguf, threads = sys.argv[1], int(sys.argv[2])
NEW = 128
prompt = ("Write a long, detailed story about the ocean. " +
          "Describe the place, the people, the sounds and the smells, and what happens over one whole day, "
          "from the first light of the morning to the last hour of the night. " * 3).strip()
llm = llama_cpp.Llama(model_path=gguf, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
eos = llm.token_eos()
llm.create_completion(prompt[:40], max_tokens=4, temperature=0)  # warm up
t0 = time.perf_counter()
r = llm.create_completion(prompt, max_tokens=NEW, temperature=0, logit_bias={eos: -1e9})
el = time.perf_counter() - t0
n = r["usage"]["completion_tokens"]
print(f"RESULT llama_cpp_1 prompt_tokens={r['usage']['prompt_tokens']} completion_tokens={n} tokens_per_s={n / el:.1f}")
