#!/usr/bin/env bash
# A software upgrade on a 4-validator CometBFT testnet, as operators run it
# (part of `make test`; README "An upgrade, with cosmovisor"):
#   1. build the "new binary": kilnd with the test upgrade's handler (cargo
#      feature `test-upgrade`), installed where cosmovisor would keep it;
#   2. `scripts/testnet.sh up 4` (the ceremony, real CometBFT, no workers);
#   3. node0's operator submits a MsgSoftwareUpgrade proposal with the CLI,
#      every operator votes yes, it passes;
#   4. at the height every kilnd halts: exit status 3, `UPGRADE ... NEEDED`
#      in its log, data/upgrade-info.json written, no block past it;
#   5. every node restarts on the new binary as cosmovisor would restart it,
#      each once it halted (a node whose peers stopped before it saw the
#      upgrade block decided halts once they are back): the migration runs
#      (gov min_deposit doubles), blocks resume, all four agree on app hashes;
#   6. the old binary refuses to start on the upgraded state.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${KILN_BIN_DIR:-$ROOT/target/debug}
NAME=kiln-test-upgrade
NEW_BIN=$ROOT/target/upgrades/$NAME/bin

say() { printf '\033[1;34m[upgrade]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[upgrade] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

if [ ! -x "$ROOT/.bin/cometbft" ] && [ -z "${KILN_COMETBFT:-}" ]; then
  fail "CometBFT is not installed (scripts/setup.sh installs it into .bin/)"
fi

say "building the new binary (kilnd with the $NAME handler)"
# With the workspace's own feature set (`--workspace`, as `make test` and
# `make devnet` build): only kiln-app recompiles. `-p kiln-app` alone
# resolves dependency features differently and rebuilt a third of the
# dependency graph, twice.
cargo build -q --workspace --bins --features kiln-app/test-upgrade
mkdir -p "$NEW_BIN"
cp "$BIN/kilnd" "$NEW_BIN/kilnd.tmp" && mv "$NEW_BIN/kilnd.tmp" "$NEW_BIN/kilnd"
# Back to the usual build (cargo re-links the cached artifact).
cargo build -q --workspace --bins
cmp -s "$BIN/kilnd" "$NEW_BIN/kilnd" && fail "the two kilnd builds are identical"
# The upgraded node's bin dir: the new kilnd, the same CLI and worker.
ln -sf "$BIN/kiln" "$NEW_BIN/kiln"
ln -sf "$BIN/kiln-mlworker" "$NEW_BIN/kiln-mlworker"

export KILN_TESTNET_DIR; KILN_TESTNET_DIR=$(mktemp -d -t kiln-upgrade-XXXXXX)
export KILN_TESTNET_WORKERS=0 KILN_TESTNET_BLOCK_TIME=${KILN_UPGRADE_BLOCK_TIME:-300ms}
export KILN_TESTNET_PORT_BASE; KILN_TESTNET_PORT_BASE=$(python3 - <<'EOF'
import socket, random
for _ in range(500):
    base = random.randrange(21000, 31000, 10)
    ok = True
    for p in range(base, base + 40):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        finally:
            s.close()
        if not ok:
            break
    if ok:
        print(base)
        break
EOF
)
cleanup() {
  local status=$?
  KILN_BIN_DIR=$BIN scripts/testnet.sh down >/dev/null 2>&1 || true
  if [ "$status" != 0 ]; then
    # What each node said last, before its directory goes.
    for log in "$KILN_TESTNET_DIR"/node*/kilnd.log "$KILN_TESTNET_DIR"/node*/cometbft.log; do
      [ -f "$log" ] || continue
      echo "--- $log (tail) ---"
      sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -v "snapshot taken" | tail -n 15
    done
  fi
  if [ "${KILN_KEEP_TESTNET:-0}" != 1 ]; then rm -rf "$KILN_TESTNET_DIR"; fi
  exit "$status"
}
trap cleanup EXIT

rpc() { echo "http://127.0.0.1:$((KILN_TESTNET_PORT_BASE + 10 * $1 + 1))"; }
home() { echo "$KILN_TESTNET_DIR/node$1"; }
height() { curl -sf --max-time 3 "$(rpc "$1")/status" | json 'd["result"]["sync_info"]["latest_block_height"]' 2>/dev/null || echo 0; }
heights() { for i in 0 1 2 3; do height "$i"; done | tr '\n' ' '; }
kiln_at() { # node args...
  local i=$1; shift
  "$BIN/kiln" "$@" --keyring-backend test --home "$(home "$i")" --node "$(rpc "$i")" --output json
}
tx_at() { # node args...
  local out
  out=$(kiln_at "$@" --yes) || fail "node$1: kiln ${*:2} failed: $out"
  [ "$(echo "$out" | json 'd["code"]')" = 0 ] || fail "node$1: kiln ${*:2} refused: $out"
}
app_hash_at() { # node height
  curl -sf --max-time 3 "$(rpc "$1")/block?height=$2" | json 'd["result"]["block"]["header"]["app_hash"]' 2>/dev/null || echo "-"
}
wait_for() { # seconds description command...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq 1 $((seconds * 5))); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  fail "$what (waited ${seconds}s; heights of node0..3 now: $(heights))"
}

say "4 validators under CometBFT in $KILN_TESTNET_DIR"
scripts/testnet.sh up 4 >"$KILN_TESTNET_DIR/up.log" 2>&1 || { cat "$KILN_TESTNET_DIR/up.log"; fail "testnet up"; }

AUTHORITY=$(kiln_at 0 query gov params | json 'd["authority"]')
UPGRADE_HEIGHT=$(( $(height 0) + 60 ))
PROPOSAL=$KILN_TESTNET_DIR/upgrade.json
cat >"$PROPOSAL" <<EOF
{
  "messages": [
    {
      "@type": "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade",
      "authority": "$AUTHORITY",
      "plan": {"name": "$NAME", "height": "$UPGRADE_HEIGHT", "info": "test upgrade"}
    }
  ],
  "metadata": "",
  "deposit": "10000000ukiln",
  "title": "Upgrade to $NAME",
  "summary": "Every validator switches binaries at height $UPGRADE_HEIGHT."
}
EOF
say "node0's operator proposes the upgrade at height $UPGRADE_HEIGHT"
tx_at 0 tx gov submit-proposal "$PROPOSAL" --from operator
ID=$(kiln_at 0 query gov proposals | json 'max(p["id"] for p in d)')
for i in 0 1 2 3; do
  # Each operator votes through its own node once that node has the proposal.
  wait_for 30 "node$i does not see proposal $ID" \
    bash -c "\"$BIN/kiln\" query gov proposal $ID --node $(rpc "$i") --output json >/dev/null 2>&1"
  tx_at "$i" tx gov vote "$ID" yes --from operator
done
passed() { [ "$(kiln_at 0 query gov proposal "$ID" | json 'd["status"]')" = passed ]; }
wait_for 120 "proposal $ID did not pass: $(kiln_at 0 query gov proposal "$ID" 2>&1 | head -c 600)" passed
kiln_at 0 query gov upgrade | json 'd["plan"]["name"]' | grep -qx "$NAME" || fail "no upgrade plan after the proposal passed"
say "proposal $ID passed; waiting for the halt at $UPGRADE_HEIGHT"
# The operator guide's Grafana dashboard queries only series CometBFT serves.
PROMETHEUS=http://127.0.0.1:$((KILN_TESTNET_PORT_BASE + 4))/metrics
DASH=$(python3 scripts/check_dashboard.py docs/grafana/kiln-dashboard.json cometbft_ "$PROMETHEUS") || fail "$DASH"
say "$DASH"
# The dashboard kilnd serves beside CometBFT reads the same chain as the CLI.
DASHBOARD=http://127.0.0.1:$((KILN_TESTNET_PORT_BASE + 5))
SUMMARY=$(curl -sf --max-time 5 "$DASHBOARD/api/summary") || fail "node0's dashboard does not answer at $DASHBOARD"
python3 - "$SUMMARY" "$(kiln_at 0 query weights | json 'len([w for w in d["weights"] if w["weight"] > 0])')" <<'EOF' || fail "node0's dashboard summary is wrong: $SUMMARY"
import json, sys
s = json.loads(sys.argv[1])
assert s["ok"] and s["chain_id"] == "kiln-testnet" and s["height"] > 0, s
assert len([h for h in s["hosts"] if h["weight"] > 0]) == int(sys.argv[2]), s["hosts"]
EOF
curl -sf --max-time 5 "$DASHBOARD/" | grep -q "<title>Kiln dashboard</title>" || fail "node0's dashboard page is not served"
say "node0's dashboard at $DASHBOARD shows the testnet at height $(echo "$SUMMARY" | json 'd["height"]') with its 4 hosts"

halted() { ! kill -0 "$(cat "$(home "$1")/kilnd.pid")" 2>/dev/null; }
halted_at_least() { # count
  local n=0
  for i in 0 1 2 3; do halted "$i" && n=$((n + 1)); done
  [ "$n" -ge "$1" ]
}
# What a halted node leaves for cosmovisor: the log line and upgrade-info.json.
check_halt_record() { # node
  local h; h=$(home "$1")
  grep -q "UPGRADE \"$NAME\" NEEDED at height $UPGRADE_HEIGHT" "$h/kilnd.log" ||
    fail "node$1: no UPGRADE NEEDED line in kilnd.log: $(tail -n 5 "$h/kilnd.log")"
  [ -f "$h/data/upgrade-info.json" ] || fail "node$1: no data/upgrade-info.json"
  python3 - "$h/data/upgrade-info.json" "$NAME" "$UPGRADE_HEIGHT" <<'EOF' || fail "node$1: wrong upgrade-info.json"
import json, sys
info = json.load(open(sys.argv[1]))
assert info["name"] == sys.argv[2] and info["height"] == int(sys.argv[3]), info
EOF
}
# What cosmovisor does for a halted node: stop what is left of it (CometBFT
# stops with kilnd) and start it again on the new binary.
restart_on_new_binary() { # node
  KILN_BIN_DIR=$BIN scripts/testnet.sh stop "$1" >/dev/null
  KILN_BIN_DIR=$NEW_BIN scripts/testnet.sh start "$1" >/dev/null
}
# A quorum (3 of 4) decides block UPGRADE_HEIGHT and halts on it. Usually all
# four do; a node that had not yet received the decision when its peers'
# CometBFT stopped waits one block short, and halts once they are back.
wait_for 180 "fewer than 3 kilnd halted at $UPGRADE_HEIGHT" halted_at_least 3
for _ in $(seq 1 100); do halted_at_least 4 && break; sleep 0.2; done
LAGGARDS=()
for i in 0 1 2 3; do
  if halted "$i"; then check_halt_record "$i"; else LAGGARDS+=("$i"); fi
done
say "every kilnd that decided $UPGRADE_HEIGHT halted with upgrade-info.json; restarting them on the new binary"
for i in 0 1 2 3; do if halted "$i"; then restart_on_new_binary "$i"; fi; done
for i in "${LAGGARDS[@]}"; do
  say "node$i had not seen block $UPGRADE_HEIGHT decided; it halts once its peers are back"
  wait_for 120 "node$i did not halt at $UPGRADE_HEIGHT after its peers restarted" halted "$i"
  check_halt_record "$i"
  restart_on_new_binary "$i"
done

TARGET=$((UPGRADE_HEIGHT + 3))
for i in 0 1 2 3; do
  wait_for 120 "node$i did not pass $TARGET after the upgrade" bash -c "[ \$(curl -sf --max-time 3 $(rpc "$i")/status | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"result\"][\"sync_info\"][\"latest_block_height\"])' 2>/dev/null || echo 0) -ge $TARGET ]"
done
for at in "$UPGRADE_HEIGHT" $((UPGRADE_HEIGHT + 2)); do
  # Block at+1 carries the app hash after block `at`.
  first=$(app_hash_at 0 $((at + 1)))
  for i in 1 2 3; do
    [ "$(app_hash_at "$i" $((at + 1)))" = "$first" ] || fail "node$i's app hash after block $at differs from node0's"
  done
done
MIN=$(kiln_at 0 query gov params | json 'd["params"]["min_deposit"]')
[ "$MIN" = 20000000 ] || fail "the migration did not run: min_deposit is $MIN"
kiln_at 0 query gov upgrade | json '[a["name"] for a in d["applied"]]' | grep -q "$NAME" || fail "the upgrade is not recorded as applied"
say "all four migrated at $UPGRADE_HEIGHT and agree on the app hash; min_deposit doubled to $MIN"

KILN_BIN_DIR=$NEW_BIN scripts/testnet.sh stop 3 >/dev/null
if out=$(timeout 30 "$BIN/kilnd" start --home "$(home 3)" 2>&1); then
  fail "the old kilnd started on the upgraded state"
fi
echo "$out" | grep -q "refusing to start" || fail "the old kilnd failed, but not with the refusal: $out"
say "the old kilnd refuses the upgraded state: $(echo "$out" | grep -o 'refusing to start[^;]*' | head -n 1)"
say "ok"
