#!/usr/bin/env bash
# Inference settlement benchmark (issue 12): MsgStartInference +
# MsgFinishInference pairs per second through FinalizeBlock + Commit on
# rocksdb (target >= 5000/s), next to the single-thread secp256k1 verify
# rate measured in the same run. Source: app/benches/settlement.rs.
#
# Knobs (env): KILN_BENCH_PAIRS (pairs per block, default 5000),
# KILN_BENCH_BLOCKS (timed blocks, default 4), KILN_BENCH_HOSTS (default 20),
# KILN_BENCH_BATCH (messages per tx, default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
out="target/bench_settlement.txt"
mkdir -p target
status=0
cargo bench -p kiln-app --bench settlement 2>&1 | tee "$out.tmp" || status=$?
mv "$out.tmp" "$out"
if [ "$status" -ne 0 ] || ! grep -q '^RESULT ' "$out"; then
  echo "bench_settlement: the benchmark did not finish (full log: $out)" >&2
  exit 1
fi
echo
echo "summary (also in $out):"
grep '^RESULT ' "$out"
