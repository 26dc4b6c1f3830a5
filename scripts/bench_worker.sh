#!/usr/bin/env bash
# How much of the sprint engine's throughput the chain-following worker turns
# into proven work: a throwaway `kilnd devnet` (1 s blocks) with
# `kiln-mlworker run` for the dev host until epoch 2 settles, then the nonces
# the worker computed in epoch 2's sprint over its compute window (the blocks
# whose successor is still in the sprint stage: sprint_blocks − 1 blocks of
# 1 s), against `kiln-mlworker sprint bench` on the same machine right after.
# Uses target/release (make bench builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${KILN_BIN_DIR:-$(pwd)/target/release}
WORK=$(mktemp -d -t kiln-bench-worker.XXXXXX)
export KILN_HOME="$WORK/home"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RPC="http://127.0.0.1:$PORT"
pids=()
cleanup() {
  local status=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

"$BIN/kilnd" devnet --rpc "127.0.0.1:$PORT" --block-time 1s >"$WORK/node.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "$RPC/status" >/dev/null 2>&1 && break; sleep 0.2; done
DEV=$("$BIN/kiln" keys show dev --address --keyring-backend test)
"$BIN/kiln-mlworker" run --node "$RPC" --host "$DEV" --key dev-ml --keyring-backend test \
  --http "127.0.0.1:$WPORT" --journal "$WORK/journal" --until-epoch 2 >"$WORK/worker.log" 2>&1 &
worker=$!
pids+=($worker)
echo "worker following a 1 s-block devnet until epoch 2 settles (~85 s)..."
wait "$worker" || { tail -n 20 "$WORK/worker.log"; exit 1; }

python3 - "$WORK/journal/epoch-2.json" >"$WORK/worker.txt" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
window = 9  # devnet: sprint_blocks 10 -> 9 one-second blocks of compute
print(j["next_nonce"], len(j["leaves"]), j["next_nonce"] / window, (j.get("result") or {}).get("accepted"))
PY
read -r NONCES SHARES RATE ACCEPTED <"$WORK/worker.txt"
BENCH=$("$BIN/kiln-mlworker" sprint bench --preset devnet --seconds 10 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nonces_per_s"])')
python3 - "$NONCES" "$SHARES" "$RATE" "$ACCEPTED" "$BENCH" <<'PY'
import sys
nonces, shares, rate, accepted, bench = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
print(f"worker (kiln-mlworker run, devnet epoch 2): {nonces} nonces, {shares} shares, accepted={accepted}")
print(f"  = {rate:.1f} nonces/s over the 9 s compute window")
print(f"sprint bench (same machine, right after):    {bench:.1f} nonces/s")
print(f"worker / bench:                              {rate / bench:.2f}")
PY
