#!/usr/bin/env bash
# All benchmarks, each printing what it measured next to a baseline measured in
# the same run (see README "Benchmarks").
set -euo pipefail
cd "$(dirname "$0")/.."
for part in scripts/bench_chain.sh scripts/bench_settle.sh scripts/bench_settlement.sh scripts/bench_gov.sh scripts/bench_network.sh scripts/bench_sprint.sh scripts/bench_worker.sh scripts/bench_inference.sh; do
  if [ -x "$part" ]; then
    echo "== $part"
    "$part"
  fi
done
