#!/usr/bin/env bash
# Starts a single-node Kiln devnet and one ML worker for the `dev` host, from
# the dev-profile build that `make test` also uses (make devnet builds it
# first; KILN_BIN_DIR=target/release runs a release build instead). The home is $KILN_HOME
# (default ~/.kiln); the first start creates the `dev` account key and its ML
# operational key `dev-ml` (test keyring), a genesis funding both, registering
# dev as a host on the node's consensus key and granting dev-ml the ML-ops
# messages. Extra arguments go to `kilnd devnet` (e.g. --block-time 500ms).
# KILN_NO_WORKER=1 starts the node alone; the worker's log is
# $KILN_HOME/worker.log and its status port KILN_WORKER_HTTP (127.0.0.1:8547).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${KILN_BIN_DIR:-$(pwd)/target/debug}
export KILN_HOME=${KILN_HOME:-$HOME/.kiln}
RPC=http://127.0.0.1:26657
WORKER_HTTP=${KILN_WORKER_HTTP:-127.0.0.1:8547}
mkdir -p "$KILN_HOME"

node_pid=""
worker_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null || true
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    exit "$status"
}
trap cleanup EXIT INT TERM

"$BIN/kilnd" devnet "$@" &
node_pid=$!

# Wait for the RPC (the first start also writes keys and genesis).
for _ in $(seq 1 120); do
    if "$BIN/kiln" status --node "$RPC" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$node_pid" 2>/dev/null; then
        echo "kilnd devnet exited; see its output above" >&2
        exit 1
    fi
    sleep 0.5
done

DEV=$("$BIN/kiln" keys show dev --address --keyring-backend test)
cat <<MSG

Kiln devnet — home $KILN_HOME, RPC $RPC, dev host $DEV
Dashboard: http://127.0.0.1:26680/ (live; kilnd devnet --dashboard ADDR to move it)
In another terminal, for example:
  $BIN/kiln query epoch                 # stage of the sprint cycle
  $BIN/kiln query weights               # host weights = consensus power
  $BIN/kiln-mlworker status --http $WORKER_HTTP
  $BIN/kiln infer "Say hello." --from dev --keyring-backend test --stream   # buy inference
  $BIN/kiln api-proxy --from dev --keyring-backend test   # OpenAI base_url http://127.0.0.1:8080/v1
  $BIN/kiln keys add alice
  $BIN/kiln tx bank send dev \$($BIN/kiln keys show alice --address) 10kiln --keyring-backend test
Stop with Ctrl-C; run again to resume from disk.
MSG

if [ "${KILN_NO_WORKER:-0}" != "1" ]; then
    echo "ML worker for $DEV (key dev-ml) — log $KILN_HOME/worker.log, status http://$WORKER_HTTP/status"
    RUST_LOG=${RUST_LOG:-info} "$BIN/kiln-mlworker" run --node "$RPC" --host "$DEV" --key dev-ml \
        --keyring-backend test --http "$WORKER_HTTP" --serve-model smollm2-135m >>"$KILN_HOME/worker.log" 2>&1 &
    worker_pid=$!
fi
wait "$node_pid"
