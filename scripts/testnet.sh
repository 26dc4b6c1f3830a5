#!/usr/bin/env bash
# A multi-validator Kiln network on loopback under the real CometBFT v0.38:
# each node is `kilnd start` + `cometbft start` sharing one home, plus a
# `kiln-mlworker run` for the node's host. The genesis is built by the
# ceremony commands a real network uses (kilnd init, genesis add-account,
# genesis gentx on every node, collect-gentxs on the coordinator), never by
# editing JSON.
#
#   scripts/testnet.sh up [N]       create (first time: N validators, default 4) and start
#   scripts/testnet.sh down         stop every process (state is kept; `up` resumes)
#   scripts/testnet.sh status       per node: processes, height, app hash, voting power
#   scripts/testnet.sh logs I [kilnd|cometbft|worker] [-f]
#   scripts/testnet.sh join         a new node state-syncs from the network, registers
#                                   its host, grants its ML key and runs a worker
#   scripts/testnet.sh add-node statesync|blocksync
#                                   create (not start) a non-validator node that will
#                                   join by state sync / by block sync from genesis;
#                                   prints its index I (then: start I)
#   scripts/testnet.sh stop I | kill I | start I    one node (SIGTERM / SIGKILL / again)
#   scripts/testnet.sh reset        down, then delete the testnet directory
#
# Environment: KILN_TESTNET_DIR (default ~/.kiln-testnet), KILN_TESTNET_PORT_BASE
# (default 26656: node I uses base+10*I for p2p, +1 RPC, +2 ABCI, +3 worker,
# +4 CometBFT's Prometheus metrics, +5 the kilnd dashboard),
# KILN_TESTNET_BLOCK_TIME (CometBFT timeout_commit, default 1s),
# KILN_TESTNET_WORKERS=0 (nodes without workers), KILN_TESTNET_WORKER_THREADS
# (default 1), KILN_TESTNET_SNAPSHOT_INTERVAL (default 10),
# KILN_TESTNET_SNAPSHOT_CHUNK_BYTES (default: kilnd's, 4 MiB),
# KILN_TESTNET_MEMPOOL_SIZE (CometBFT mempool size, default kilnd init's), KILN_BIN_DIR
# (default target/debug), KILN_COMETBFT (default .bin/cometbft),
# KILN_TESTNET_GENESIS_ACCOUNTS (a JSON file of extra accounts the coordinator
# funds at genesis with `kilnd genesis bulk-add-accounts`, before the gentxs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${KILN_BIN_DIR:-$ROOT/target/debug}
COMETBFT=${KILN_COMETBFT:-$ROOT/.bin/cometbft}
DIR=${KILN_TESTNET_DIR:-$HOME/.kiln-testnet}
PORT_BASE=${KILN_TESTNET_PORT_BASE:-26656}
BLOCK_TIME=${KILN_TESTNET_BLOCK_TIME:-1s}
WORKERS=${KILN_TESTNET_WORKERS:-1}
WORKER_THREADS=${KILN_TESTNET_WORKER_THREADS:-1}
SNAPSHOT_INTERVAL=${KILN_TESTNET_SNAPSHOT_INTERVAL:-10}
SNAPSHOT_CHUNK_BYTES=${KILN_TESTNET_SNAPSHOT_CHUNK_BYTES:-}
MEMPOOL_SIZE=${KILN_TESTNET_MEMPOOL_SIZE:-}
CHAIN_ID=${KILN_TESTNET_CHAIN_ID:-kiln-testnet}
GENESIS_ACCOUNTS=${KILN_TESTNET_GENESIS_ACCOUNTS:-}
# Genesis funds per operator and per ML key (ukiln).
OPERATOR_FUNDS=1000000000000ukiln
ML_FUNDS=10000000ukiln

say() { printf '\033[1;34m[testnet]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[testnet] error:\033[0m %s\n' "$*" >&2; exit 1; }

home() { echo "$DIR/node$1"; }
p2p_port() { echo $((PORT_BASE + 10 * $1)); }
rpc_port() { echo $((PORT_BASE + 10 * $1 + 1)); }
abci_port() { echo $((PORT_BASE + 10 * $1 + 2)); }
worker_port() { echo $((PORT_BASE + 10 * $1 + 3)); }
prometheus_port() { echo $((PORT_BASE + 10 * $1 + 4)); }
dashboard_port() { echo $((PORT_BASE + 10 * $1 + 5)); }
rpc_url() { echo "http://127.0.0.1:$(rpc_port "$1")"; }
# Number of nodes created so far (node0 … node{count-1}).
node_count() { local n=0; while [ -d "$(home "$n")" ]; do n=$((n + 1)); done; echo "$n"; }

kilnd() { "$BIN/kilnd" "$@"; }
kiln() { "$BIN/kiln" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
rpc_get() { curl -sf --max-time 3 "$1" 2>/dev/null; }
height_of() { rpc_get "$(rpc_url "$1")/status" | json 'd["result"]["sync_info"]["latest_block_height"]' 2>/dev/null || echo "-"; }
operator_address() { kiln keys show "$2" --address --keyring-backend test --home "$(home "$1")"; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

check_bins() {
  for b in kilnd kiln kiln-mlworker; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run \`make build\` (or make testnet)"
  done
  [ -x "$COMETBFT" ] || die "$COMETBFT is missing: run scripts/setup.sh"
}

# Sets `key = value` in a section of a TOML file kilnd init wrote (the key
# must already be there, in that section).
toml_set() { # file section key value
  python3 - "$@" <<'PY'
import re, sys
path, section, key, value = sys.argv[1:]
lines = open(path).read().split("\n")
current, done = "", False
for i, line in enumerate(lines):
    m = re.match(r"^\[(.+)\]\s*$", line)
    if m:
        current = m.group(1)
        continue
    if current == section and re.match(rf"^{re.escape(key)}\s*=", line):
        lines[i] = f"{key} = {value}"
        done = True
        break
if not done:
    sys.exit(f"{path}: no key {key} in [{section or 'top level'}]")
open(path, "w").write("\n".join(lines))
PY
}

# The node's CometBFT and kilnd settings for this loopback network.
configure_node() { # index
  local i=$1 h; h=$(home "$1")
  local cfg="$h/config/config.toml"
  toml_set "$cfg" "" proxy_app "\"tcp://127.0.0.1:$(abci_port "$i")\""
  toml_set "$cfg" rpc laddr "\"tcp://127.0.0.1:$(rpc_port "$i")\""
  toml_set "$cfg" p2p laddr "\"tcp://127.0.0.1:$(p2p_port "$i")\""
  toml_set "$cfg" p2p addr_book_strict false
  toml_set "$cfg" p2p allow_duplicate_ip true
  # Loopback: no reason to pace peers at CometBFT's internet default (5 MB/s).
  toml_set "$cfg" p2p send_rate 52428800
  toml_set "$cfg" p2p recv_rate 52428800
  toml_set "$cfg" consensus timeout_commit "\"$BLOCK_TIME\""
  toml_set "$cfg" instrumentation prometheus_listen_addr "\"127.0.0.1:$(prometheus_port "$i")\""
  if [ -n "$MEMPOOL_SIZE" ]; then toml_set "$cfg" mempool size "$MEMPOOL_SIZE"; fi
  toml_set "$h/config/kilnd.toml" "" snapshot_interval "$SNAPSHOT_INTERVAL"
  if [ -n "$SNAPSHOT_CHUNK_BYTES" ]; then
    toml_set "$h/config/kilnd.toml" "" snapshot_chunk_bytes "$SNAPSHOT_CHUNK_BYTES"
  fi
}

# Every other node as a persistent peer.
set_peers() { # index count
  local i=$1 n=$2 peers="" j id
  for ((j = 0; j < n; j++)); do
    [ "$j" = "$i" ] && continue
    id=$("$COMETBFT" show-node-id --home "$(home "$j")")
    peers="${peers:+$peers,}$id@127.0.0.1:$(p2p_port "$j")"
  done
  toml_set "$(home "$i")/config/config.toml" p2p persistent_peers "\"$peers\""
}

start_node() { # index
  local i=$1 h; h=$(home "$1")
  if ! alive "$h/kilnd.pid"; then
    setsid "$BIN/kilnd" start --home "$h" --dashboard "127.0.0.1:$(dashboard_port "$i")" >>"$h/kilnd.log" 2>&1 </dev/null &
    echo $! >"$h/kilnd.pid"
  fi
  # CometBFT's handshake needs the ABCI socket: wait for it.
  for _ in $(seq 1 100); do
    # Connect without sending a byte (a stray byte would be a malformed frame).
    (: </dev/tcp/127.0.0.1/"$(abci_port "$i")") 2>/dev/null && break
    alive "$h/kilnd.pid" || die "kilnd of node$i exited; see $h/kilnd.log: $(tail -n 3 "$h/kilnd.log")"
    sleep 0.1
  done
  if ! alive "$h/cometbft.pid"; then
    setsid "$COMETBFT" start --home "$h" >>"$h/cometbft.log" 2>&1 </dev/null &
    echo $! >"$h/cometbft.pid"
  fi
}

start_worker() { # index
  local i=$1 h; h=$(home "$1")
  [ "$WORKERS" = 1 ] || return 0
  [ -f "$h/worker.enabled" ] || return 0
  alive "$h/worker.pid" && return 0
  RUST_LOG=${RUST_LOG:-info} setsid "$BIN/kiln-mlworker" run --node "$(rpc_url "$i")" \
    --host "$(operator_address "$i" operator)" --key operator-ml --keyring-backend test \
    --home "$h" --http "127.0.0.1:$(worker_port "$i")" --threads "$WORKER_THREADS" \
    >>"$h/worker.log" 2>&1 </dev/null &
  echo $! >"$h/worker.pid"
}

stop_pidfile() { # pidfile signal
  local f=$1 sig=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Clean stop order: the worker, then CometBFT (no new block reaches the app),
# then the app.
stop_node() { # index signal
  local h; h=$(home "$1")
  stop_pidfile "$h/worker.pid" "$2"
  stop_pidfile "$h/cometbft.pid" "$2"
  stop_pidfile "$h/kilnd.pid" "$2"
}

wait_height() { # index height seconds
  local h
  for _ in $(seq 1 $(($3 * 5))); do
    h=$(height_of "$1")
    [ "$h" != "-" ] && [ "$h" -ge "$2" ] && return 0
    sleep 0.2
  done
  die "node$1 did not reach height $2 within $3 s (see $(home "$1")/cometbft.log)"
}

# Signs and sends a tx from a node's test keyring through that node's RPC.
send_tx() { # index args...
  local i=$1; shift
  local out
  out=$(kiln "$@" --keyring-backend test --home "$(home "$i")" --node "$(rpc_url "$i")" --yes --output json) ||
    die "node$i: kiln $* failed: $out"
  [ "$(echo "$out" | json 'd["code"]')" = 0 ] || die "node$i: kiln $* refused: $out"
}

grant_and_start_worker() { # index
  local i=$1 h; h=$(home "$1")
  send_tx "$i" tx authz grant-ml-ops "$(operator_address "$i" operator-ml)" --from operator
  touch "$h/worker.enabled"
  start_worker "$i"
}

create_network() { # count
  local n=$1 i h
  [ "$n" -ge 1 ] || die "a network needs at least one validator"
  mkdir -p "$DIR"
  say "ceremony for $n validators in $DIR (chain $CHAIN_ID)"
  for ((i = 0; i < n; i++)); do
    h=$(home "$i")
    kilnd init --home "$h" --chain-id "$CHAIN_ID" --moniker "node$i" --params devnet >/dev/null
    kiln keys add operator --keyring-backend test --home "$h" >"$h/operator.mnemonic"
    kiln keys add operator-ml --keyring-backend test --home "$h" >"$h/operator-ml.mnemonic"
    configure_node "$i"
  done
  # The coordinator (node0) funds every operator and ML key, then hands the
  # genesis out so each operator signs a gentx against it.
  local coordinator; coordinator=$(home 0)
  for ((i = 0; i < n; i++)); do
    kilnd genesis add-account "$(operator_address "$i" operator)" "$OPERATOR_FUNDS" --home "$coordinator" >/dev/null
    kilnd genesis add-account "$(operator_address "$i" operator-ml)" "$ML_FUNDS" --home "$coordinator" >/dev/null
  done
  if [ -n "$GENESIS_ACCOUNTS" ]; then
    kilnd genesis bulk-add-accounts "$GENESIS_ACCOUNTS" --home "$coordinator"
  fi
  for ((i = 0; i < n; i++)); do
    h=$(home "$i")
    [ "$i" = 0 ] || cp "$coordinator/config/genesis.json" "$h/config/genesis.json"
    kilnd genesis gentx --home "$h" --from operator --weight 10 --keyring-backend test \
      --worker-url "http://127.0.0.1:$(worker_port "$i")" --hardware "loopback cpu" >/dev/null
    [ "$i" = 0 ] || cp "$h"/config/gentx/*.json "$coordinator/config/gentx/"
  done
  kilnd genesis collect-gentxs --home "$coordinator"
  kilnd genesis validate --home "$coordinator"
  for ((i = 1; i < n; i++)); do cp "$coordinator/config/genesis.json" "$(home "$i")/config/genesis.json"; done
  for ((i = 0; i < n; i++)); do set_peers "$i" "$n"; done
}

print_nodes() {
  local n; n=$(node_count)
  printf '%-6s %-7s %-7s %-7s %-7s %-8s %-10s %s\n' node p2p rpc abci worker metrics dashboard home
  for ((i = 0; i < n; i++)); do
    printf '%-6s %-7s %-7s %-7s %-7s %-8s %-10s %s\n' "node$i" "$(p2p_port "$i")" "$(rpc_port "$i")" \
      "$(abci_port "$i")" "$(worker_port "$i")" "$(prometheus_port "$i")" "$(dashboard_port "$i")" "$(home "$i")"
  done
}

cmd_up() {
  check_bins
  local n=${1:-4} fresh=0 i
  if [ ! -d "$(home 0)" ]; then
    create_network "$n"
    fresh=1
  fi
  n=$(node_count)
  say "starting $n nodes"
  for ((i = 0; i < n; i++)); do start_node "$i"; done
  wait_height 0 2 120
  if [ "$fresh" = 1 ]; then
    say "each operator grants its ML key the worker messages"
    for ((i = 0; i < n; i++)); do grant_and_start_worker "$i"; done
  else
    for ((i = 0; i < n; i++)); do start_worker "$i"; done
  fi
  print_nodes
  say "the network is up: scripts/testnet.sh status | logs I | join | down"
  say "e.g. $BIN/kiln query weights --node $(rpc_url 0); dashboard http://127.0.0.1:$(dashboard_port 0)/"
}

cmd_down() {
  local n i; n=$(node_count)
  for ((i = 0; i < n; i++)); do stop_node "$i" TERM; done
  say "stopped $n nodes (state kept in $DIR)"
}

cmd_status() {
  local n i h power vals
  n=$(node_count)
  [ "$n" -gt 0 ] || die "no testnet in $DIR: run scripts/testnet.sh up"
  vals=$(rpc_get "$(rpc_url 0)/validators?per_page=100" || true)
  printf '%-6s %-8s %-8s %-8s %-8s %-18s %s\n' node kilnd cometbft worker height app_hash power
  for ((i = 0; i < n; i++)); do
    h=$(home "$i")
    local st app="-" height="-" addr
    st=$(rpc_get "$(rpc_url "$i")/status" || true)
    if [ -n "$st" ]; then
      height=$(echo "$st" | json 'd["result"]["sync_info"]["latest_block_height"]')
      app=$(echo "$st" | json 'd["result"]["sync_info"]["latest_app_hash"][:16]')
    fi
    addr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$h/config/priv_validator_key.json")
    power=$(echo "${vals:-{\}}" | python3 -c 'import json,sys
d=json.load(sys.stdin); a=sys.argv[1]
print(next((v["voting_power"] for v in d.get("result",{}).get("validators",[]) if v["address"]==a), "0"))' "$addr" 2>/dev/null || echo "?")
    printf '%-6s %-8s %-8s %-8s %-8s %-18s %s\n' "node$i" \
      "$(alive "$h/kilnd.pid" && echo up || echo down)" \
      "$(alive "$h/cometbft.pid" && echo up || echo down)" \
      "$(alive "$h/worker.pid" && echo up || echo -)" "$height" "$app" "$power"
  done
  echo
  kiln query weights --node "$(rpc_url 0)" 2>/dev/null || true
}

cmd_logs() {
  local i=${1:?usage: logs I [kilnd|cometbft|worker] [-f]} what=${2:-cometbft} follow=${3:-}
  local f; f="$(home "$i")/$what.log"
  [ -f "$f" ] || die "no $f"
  if [ "$follow" = -f ] || [ "$what" = -f ]; then tail -n 50 -F "$f"; else tail -n 50 "$f"; fi
}

# Creates (does not start) node N, a non-validator that joins the running
# network by state sync or by block sync from genesis; prints its index.
cmd_add_node() { # statesync|blocksync
  local mode=$1 n j h peer_rpc latest trust_height trust_hash
  case "$mode" in statesync | blocksync) ;; *) die "add-node: statesync or blocksync, not '$mode'" ;; esac
  n=$(node_count)
  [ "$n" -gt 0 ] || die "no testnet in $DIR: run scripts/testnet.sh up first"
  j=$n
  h=$(home "$j")
  peer_rpc=$(rpc_url 0)
  kilnd init --home "$h" --chain-id "$CHAIN_ID" --moniker "node$j" >/dev/null
  # The genesis, from a peer's RPC (as a person joining would download it).
  rpc_get "$peer_rpc/genesis" | python3 -c 'import json,sys; json.dump(json.load(sys.stdin)["result"]["genesis"], open(sys.argv[1], "w"), indent=2)' \
    "$h/config/genesis.json" || die "cannot read the genesis from $peer_rpc"
  kilnd genesis validate --home "$h" >/dev/null
  configure_node "$j"
  set_peers "$j" "$n"
  [ "$mode" = statesync ] || { echo "$j"; return 0; }
  # Trust a recent header read from a peer; the light client verifies the
  # snapshot's height against it.
  latest=$(rpc_get "$peer_rpc/status" | json 'd["result"]["sync_info"]["latest_block_height"]')
  trust_height=$((latest > SNAPSHOT_INTERVAL ? latest - SNAPSHOT_INTERVAL : 1))
  trust_hash=$(rpc_get "$peer_rpc/block?height=$trust_height" | json 'd["result"]["block_id"]["hash"]')
  local servers="127.0.0.1:$(rpc_port 0),127.0.0.1:$(rpc_port $((n > 1 ? 1 : 0)))"
  local cfg="$h/config/config.toml"
  toml_set "$cfg" statesync enable true
  toml_set "$cfg" statesync rpc_servers "\"$servers\""
  toml_set "$cfg" statesync trust_height "$trust_height"
  toml_set "$cfg" statesync trust_hash "\"$trust_hash\""
  # Every peer is on loopback: their snapshot offers arrive at once.
  toml_set "$cfg" statesync discovery_time '"5s"'
  say "node$j will trust height $trust_height ($trust_hash)" >&2
  echo "$j"
}

# Waits until node I says it is not catching up and is at height H or above.
wait_caught_up() { # index height
  local j=$1 target=$2 h st; h=$(home "$1")
  for _ in $(seq 1 900); do
    st=$(rpc_get "$(rpc_url "$j")/status" || true)
    if [ -n "$st" ] && [ "$(echo "$st" | json 'd["result"]["sync_info"]["catching_up"]')" = False ] &&
      [ "$(echo "$st" | json 'int(d["result"]["sync_info"]["latest_block_height"])')" -ge "$target" ]; then
      return 0
    fi
    alive "$h/cometbft.pid" || die "cometbft of node$j exited; see $h/cometbft.log"
    sleep 0.2
  done
  die "node$j did not catch up to height $target within 180 s (see $h/cometbft.log)"
}

cmd_join() {
  check_bins
  local n j h latest
  n=$(node_count)
  [ "$n" -gt 0 ] || die "no testnet in $DIR: run scripts/testnet.sh up first"
  say "node$n joins by state sync from $(rpc_url 0)"
  j=$(cmd_add_node statesync)
  h=$(home "$j")
  latest=$(height_of 0)
  start_node "$j"
  # Caught up: CometBFT says so and the height is the peer's.
  wait_caught_up "$j" "$latest"
  say "node$j caught up at height $(height_of "$j") ($(grep -c "Snapshot restored" "$h/cometbft.log" 2>/dev/null || echo 0) snapshot restored)"
  kiln keys add operator --keyring-backend test --home "$h" >"$h/operator.mnemonic"
  kiln keys add operator-ml --keyring-backend test --home "$h" >"$h/operator-ml.mnemonic"
  # A network member (node0's operator) funds the newcomer's two accounts.
  send_tx 0 tx bank send operator "$(operator_address "$j" operator)" 1000kiln
  send_tx 0 tx bank send operator "$(operator_address "$j" operator-ml)" 10kiln
  # The funds are committed on node0; node j may be a block behind, and it is
  # node j that the newcomer's next transaction reads its account from.
  wait_caught_up "$j" "$(height_of 0)"
  send_tx "$j" tx host register --from operator --worker-url "http://127.0.0.1:$(worker_port "$j")" \
    --hardware "loopback cpu" --consensus-key-file "$h/config/priv_validator_key.json"
  grant_and_start_worker "$j"
  print_nodes
  say "node$j is a registered host; it enters CometBFT's validator set after its first accepted sprint (scripts/testnet.sh status)"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  join) cmd_join ;;
  add-node) check_bins; cmd_add_node "${2:?usage: add-node statesync|blocksync}" ;;
  stop) stop_node "${2:?usage: stop I}" TERM ;;
  kill) stop_node "${2:?usage: kill I}" KILL ;;
  start) check_bins; start_node "${2:?usage: start I}"; start_worker "$2" ;;
  reset) cmd_down; rm -rf "$DIR"; say "deleted $DIR" ;;
  *) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
