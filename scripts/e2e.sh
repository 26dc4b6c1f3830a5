#!/usr/bin/env bash
# End-to-end, as a user runs it (ARCHITECTURE.md testing layer 5): `kilnd`,
# the `kiln` CLI and cosmjs as separate processes on loopback.
#   1. a malformed genesis stops the node with a clear error;
#   2. `kilnd devnet` creates a funded `dev` key and produces blocks;
#   3. CLI tour: keys (file keyring + wrong passphrase), send, balances,
#      grant-ml-ops, grants query, the hot key trying to move funds, revoke;
#   4. cosmjs queries a balance and sends tokens with simulated gas;
#      governance: cosmjs submits a text proposal (Cosmos gov v1) and votes
#      YES; the CLI drafts a params proposal from the params in force,
#      submits it unedited and splits its vote; both pass;
#   5. `kiln-mlworker run` for the dev host (ML key dev-ml) sprints, commits,
#      opens, validates and votes; the settled weight becomes consensus power;
#      mid-sprint it sells inference (--serve-model): an unsigned request is
#      refused, the official openai client buys plain and streamed
#      completions through `kiln api-proxy`, each settles on chain (paid
#      (prompt + completion) x price, the rest refunded, the completion's
#      hash as received) and alice's balance falls by exactly the sum paid;
#      `kiln infer --stream` buys one more;
#      a second host (alice) registers, proves compute and serves: requests
#      sent to dev's worker that the draw gives her are forwarded and settle
#      to her, and dev validates them by replay; restarted with a perturbed
#      substitute of the model, her work is scored low by dev, the dispute is
#      upheld and the requester refunded;
#      `kiln-mlworker doctor` passes on it and, for a key without the
#      grant, names the missing grant and the command that fixes it;
#      killed -9 mid-sprint and restarted, it resumes from its journal;
#      after the rewards, dev declares two ML nodes with their own keys and
#      runs their workers: both sprint in their own lanes and earn (the
#      per-node split of dev's sprint result, `kiln query host dev`); box-2
#      is then disabled, its share is gone the next epoch, and it is stopped
#      and removed;
#   6. the node is killed and restarted and resumes from disk.
# Uses the binaries in target/debug (make test builds them); KILN_BIN_DIR overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${KILN_BIN_DIR:-$ROOT/target/debug}
WORK=$(mktemp -d -t kiln-e2e.XXXXXX)
NODE_PID=""
WORKER_PID=""
PROXY_PID=""
WORKER2_PID=""
WORKER3_PID=""
WORKER4_PID=""
cleanup() {
  local status=$?
  set +e
  for P in "$WORKER3_PID" "$WORKER4_PID"; do
    if [ -n "$P" ]; then kill "$P" 2>/dev/null; wait "$P" 2>/dev/null; fi
  done
  for N in 3 4; do
    if [ "${E2E_OK:-0}" != 1 ] && [ -f "$WORK/worker$N.log" ]; then echo "--- ML node worker $N log (tail) ---"; tail -n 30 "$WORK/worker$N.log"; fi
  done
  if [ -n "$WORKER2_PID" ]; then kill "$WORKER2_PID" 2>/dev/null; wait "$WORKER2_PID" 2>/dev/null; fi
  if [ "${E2E_OK:-0}" != 1 ] && [ -f "$WORK/worker2.log" ]; then echo "--- alice's worker log (tail) ---"; tail -n 30 "$WORK/worker2.log"; fi
  if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; fi
  if [ -n "$WORKER_PID" ]; then kill "$WORKER_PID" 2>/dev/null; wait "$WORKER_PID" 2>/dev/null; fi
  if [ "${E2E_OK:-0}" != 1 ] && [ -f "$WORK/worker.log" ]; then echo "--- worker log (tail) ---"; tail -n 40 "$WORK/worker.log"; fi
  if [ -n "$NODE_PID" ]; then kill "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; fi
  if [ "${E2E_OK:-0}" != 1 ] && [ -f "$WORK/node.log" ]; then echo "--- node log (tail) ---"; tail -n 40 "$WORK/node.log"; fi
  # KILN_E2E_KEEP=1 keeps every log and home for a post-mortem.
  if [ "${KILN_E2E_KEEP:-0}" = 1 ]; then echo "[e2e] kept $WORK"; else rm -rf "$WORK"; fi
  exit "$status"
}
trap cleanup EXIT
step() { printf '\033[1;32m[e2e]\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31m[e2e] FAIL:\033[0m %s\n' "$*"; exit 1; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RPC="http://127.0.0.1:$PORT"
export BIN RPC
export KILN_HOME="$WORK/home"
KILND="$BIN/kilnd"
kiln() { "$BIN/kiln" --node "$RPC" "$@"; }
json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

step "a malformed genesis stops the node with a clear error"
"$KILND" init --home "$WORK/bad" --chain-id kiln-bad >/dev/null
python3 - "$WORK/bad/config/genesis.json" <<'PY'
import json, sys
p = sys.argv[1]; g = json.load(open(p))
g["app_state"] = {"bank": {"balances": [{"address": "kiln1notanaddress", "coins": [{"denom": "ukiln", "amount": "-5"}]}]}}
json.dump(g, open(p, "w"))
PY
if out=$("$KILND" start --home "$WORK/bad" --abci 127.0.0.1:0 2>&1); then fail "kilnd started with a malformed genesis"; fi
echo "$out" | grep -q "refusing to start" || fail "unclear genesis error: $out"
echo "$out" | grep -q "invalid address" || fail "genesis error does not name the problem: $out"
echo "   -> $(echo "$out" | tail -n 1)"

DASHBOARD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_node() {
  "$KILND" devnet --rpc "127.0.0.1:$PORT" --block-time 300ms --dashboard "127.0.0.1:$DASHBOARD_PORT" >>"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 1 100); do
    if curl -sf "$RPC/status" >/dev/null 2>&1; then return 0; fi
    kill -0 "$NODE_PID" 2>/dev/null || fail "kilnd devnet exited"
    sleep 0.2
  done
  fail "node did not answer on $RPC"
}
wait_height() { # wait until the chain passes height $1
  for _ in $(seq 1 100); do
    h=$(curl -sf "$RPC/status" | json_field '["result"]["sync_info"]["latest_block_height"]')
    [ "$h" -ge "$1" ] && return 0
    sleep 0.2
  done
  fail "chain stuck below height $1"
}

step "kilnd devnet: first start creates the dev key and genesis"
start_node
grep -q "UNENCRYPTED test keyring" "$WORK/node.log" || fail "dev key creation not reported"
MNEMONIC=$(grep -A2 "mnemonic is shown once" "$WORK/node.log" | tail -n 1 | sed 's/^ *//')
[ "$(echo "$MNEMONIC" | wc -w)" -eq 24 ] || fail "dev mnemonic not printed: $MNEMONIC"
wait_height 2
kiln status >/dev/null
DEV=$(kiln keys show dev --keyring-backend test --output json | json_field '["address"]')

step "keys: file keyring, env passphrase, wrong passphrase"
export KILN_KEYRING_PASSPHRASE="e2e correct horse"
kiln keys add alice --output json >"$WORK/alice.json"
ALICE=$(json_field '["address"]' <"$WORK/alice.json")
kiln keys add hot --output json >/dev/null
HOT=$(kiln keys show hot --output json | json_field '["address"]')
if out=$(KILN_KEYRING_PASSPHRASE=wrong kiln keys export alice --yes 2>&1); then fail "export with a wrong passphrase succeeded"; fi
echo "$out" | grep -qi "wrong passphrase" || fail "unclear wrong-passphrase error: $out"
kiln keys list | grep -q alice || fail "keys list misses alice"

step "tx bank send dev -> alice, hot"
kiln tx bank send dev "$ALICE" 25kiln --keyring-backend test --yes --output json >"$WORK/send.json"
[ "$(json_field '["code"]' <"$WORK/send.json")" = 0 ] || fail "send failed: $(cat "$WORK/send.json")"
kiln tx bank send dev "$HOT" 1kiln --keyring-backend test --yes >/dev/null
BAL=$(kiln query bank balances "$ALICE" --output json | json_field '["balances"][0]["amount"]')
[ "$BAL" = 25000000 ] || fail "alice balance $BAL != 25000000"
HASH=$(json_field '["txhash"]' <"$WORK/send.json")
kiln query tx "$HASH" --output json | json_field '["code"]' | grep -qx 0 || fail "query tx"
kiln query account "$ALICE" --output json >/dev/null
# The devnet registers SmolLM2; with no requests its price sits at its floor.
M=$(kiln query models --output json | json_field '[0]["id"]')
[ "$M" = smollm2-135m ] || fail "query models: $M"
kiln query prices | grep -q "^smollm2-135m .* 100 " || fail "query prices: $(kiln query prices)"

step "tx authz grant-ml-ops: alice grants the hot key the worker messages only"
kiln tx authz grant-ml-ops "$HOT" --from alice --expiration +30d --yes --output json >"$WORK/grant.json"
[ "$(json_field '["code"]' <"$WORK/grant.json")" = 0 ] || fail "grant failed: $(cat "$WORK/grant.json")"
N=$(kiln query authz grants "$ALICE" --output json | json_field '["grants"].__len__()')
[ "$N" -ge 4 ] || fail "expected the ML-ops grants, got $N"

step "the hot key cannot move alice's funds through MsgExec"
cat >"$WORK/steal.json" <<JSON
[{"@type": "/cosmos.bank.v1beta1.MsgSend", "from_address": "$ALICE", "to_address": "$HOT", "amount": [{"denom": "ukiln", "amount": "1000"}]}]
JSON
if out=$(kiln tx authz exec "$WORK/steal.json" --from hot --gas 200000 --yes --output json 2>&1); then fail "hot key moved funds: $out"; fi
echo "$out" | grep -q "authorization not found" || fail "unclear refusal: $out"
BAL=$(kiln query bank balances "$ALICE" --output json | json_field '["balances"][0]["amount"]')
[ "$BAL" -le 25000000 ] && [ "$BAL" -gt 24000000 ] || fail "alice balance changed unexpectedly: $BAL"

step "tx authz revoke-ml-ops"
kiln tx authz revoke-ml-ops "$HOT" --from alice --yes >/dev/null
N=$(kiln query authz grants "$ALICE" --output json | json_field '["grants"].__len__()')
[ "$N" = 0 ] || fail "grants left after revoke: $N"

step "bad input through RPC: garbage tx gets a clear code"
R=$(curl -sf "$RPC/broadcast_tx_sync?tx=0xdeadbeef" | json_field '["result"]["code"]')
[ "$R" = 2 ] || fail "garbage tx code $R"

step "cosmjs (unchanged) queries and sends"
if [ ! -d tests/cosmjs/node_modules ]; then (cd tests/cosmjs && npm ci --no-audit --no-fund --loglevel=error); fi
(cd tests/cosmjs && KILN_RPC="$RPC" KILN_MNEMONIC="$MNEMONIC" node send_and_query.mjs)
# cosmjs delegated 5000ukiln to dev (its own host) and undelegated 2000,
# beside dev's genesis self-bond of 1 M KILN (devnet: no collateral grace).
kiln query staking delegations dev --output json | json_field '["delegations"][0]["balance"]' | grep -qx 1000000003000 ||
  fail "cosmjs's delegation is not on chain: $(kiln query staking delegations dev --output json)"

step "staking: dev bonds its own coins and unbonds part, alice delegates to dev's operator address, dev sets its commission"
kiln tx staking bond 1000kiln --from dev --keyring-backend test --yes --output json >"$WORK/bond.json"
[ "$(json_field '["code"]' <"$WORK/bond.json")" = 0 ] || fail "bond failed: $(cat "$WORK/bond.json")"
VALOPER=$(kiln query staking host dev --output json | json_field '["operator_address"]')
case "$VALOPER" in kilnvaloper1*) ;; *) fail "dev's operator address is $VALOPER" ;; esac
kiln tx staking delegate "$VALOPER" 2kiln --from alice --yes --output json >"$WORK/delegate.json"
[ "$(json_field '["code"]' <"$WORK/delegate.json")" = 0 ] || fail "delegate failed: $(cat "$WORK/delegate.json")"
kiln tx staking unbond 0.5kiln --from dev --keyring-backend test --yes --output json >"$WORK/unbond.json"
[ "$(json_field '["code"]' <"$WORK/unbond.json")" = 0 ] || fail "unbond failed: $(cat "$WORK/unbond.json")"
kiln query staking delegations alice --output json | json_field '["delegations"][0]["balance"]' | grep -qx 2000000 || fail "alice's delegation is not 2 kiln"
# dev's entries: cosmjs's 2000ukiln and this 0.5 kiln.
kiln query staking unbonding dev --output json | json_field '["entries"]' | grep -q "'balance': '500000'" ||
  fail "dev has no 0.5 kiln unbonding entry: $(kiln query staking unbonding dev --output json)"
kiln tx staking set-commission 1% --from dev --keyring-backend test --yes --output json | json_field '["code"]' | grep -qx 0 || fail "set-commission failed"
kiln tx staking set-commission 3% --from dev --keyring-backend test --yes --output json >"$WORK/comm.json" 2>&1 && fail "a second commission change in one epoch was accepted"
grep -q "at most 100 basis points\|already changed" "$WORK/comm.json" || fail "a second commission change was not refused: $(cat "$WORK/comm.json")"
kiln query staking host dev --output json >"$WORK/pool.json"
[ "$(json_field '["backing"]' <"$WORK/pool.json")" = 1001001503000 ] && [ "$(json_field '["commission_bps"]' <"$WORK/pool.json")" = 100 ] ||
  fail "dev's pool: $(cat "$WORK/pool.json")"
echo "   -> $VALOPER: backing $(json_field '["backing"]' <"$WORK/pool.json") ukiln from $(json_field '["delegators"]' <"$WORK/pool.json") accounts, commission 1%"

step "governance: cosmjs submits a text proposal and votes YES; the CLI drafts, submits and splits its vote on a params proposal"
GOV_OUT=$(cd tests/cosmjs && KILN_RPC="$RPC" KILN_MNEMONIC="$MNEMONIC" node gov_vote.mjs 2>&1) || fail "cosmjs gov_vote.mjs: $GOV_OUT"
echo "$GOV_OUT" | grep -v '^proposal_id=' | sed 's/^/   /'
PROP_JS=$(echo "$GOV_OUT" | sed -n 's/^proposal_id=\([0-9][0-9]*\)$/\1/p')
[ -n "$PROP_JS" ] || fail "gov_vote.mjs printed no proposal id: $GOV_OUT"
ST=$(kiln query gov proposal "$PROP_JS" --output json | json_field '["status"]')
case "$ST" in voting_period | passed) ;; *) fail "cosmjs's proposal $PROP_JS is $ST: $(kiln query gov proposal "$PROP_JS")" ;; esac
# The CLI drafts a params proposal holding the gov params in force and
# submits it unedited (a change to the same values).
kiln tx gov draft --kind params --module gov --out "$WORK/gov-params.json" >/dev/null
python3 - "$WORK/gov-params.json" <<'PY' || fail "the draft: $(cat "$WORK/gov-params.json")"
import json, sys
d = json.load(open(sys.argv[1]))
m = d["messages"][0]
assert m["@type"] == "/kiln.gov.v1.MsgUpdateParams", m
assert m["params"]["min_deposit"] == "10000000" and m["params"]["voting_period_blocks"] == 20, m
assert d["deposit"] == "10000000ukiln" and d["title"], d
PY
kiln tx gov draft --kind params --module gov --out "$WORK/gov-params.json" >/dev/null 2>&1 && fail "draft overwrote a file without --force"
kiln tx gov submit-proposal "$WORK/gov-params.json" --from dev --keyring-backend test --yes --output json >"$WORK/submit.json" 2>"$WORK/submit.err" ||
  fail "submit-proposal: $(cat "$WORK/submit.json" "$WORK/submit.err")"
PROP_CLI=$(json_field '["proposal_id"]' <"$WORK/submit.json")
kiln tx gov weighted-vote "$PROP_CLI" yes=0.6,no=0.4 --from dev --keyring-backend test --yes --output json >"$WORK/vote.json"
[ "$(json_field '["code"]' <"$WORK/vote.json")" = 0 ] || fail "weighted-vote: $(cat "$WORK/vote.json")"
kiln query gov votes "$PROP_CLI" | grep -q "yes=0.6,no=0.4" || fail "the split vote: $(kiln query gov votes "$PROP_CLI")"
kiln query gov proposals | sed 's/^/   /'
# 300 ms blocks: the 20-block voting periods end within seconds.
for _ in $(seq 1 100); do
  [ "$(kiln query gov proposal "$PROP_CLI" --output json | json_field '["status"]')" = voting_period ] || break
  sleep 0.3
done
for P in "$PROP_JS" "$PROP_CLI"; do
  ST=$(kiln query gov proposal "$P" --output json | json_field '["status"]')
  [ "$ST" = passed ] || fail "proposal $P ended $ST: $(kiln query gov proposal "$P")"
done
echo "   -> proposals $PROP_JS (cosmjs, text) and $PROP_CLI (CLI, gov params) passed: $(kiln query gov tally "$PROP_CLI" | tail -n 1)"

step "ML nodes: dev declares one with its own key (granted in the same tx), updates it, cancels it and removes it"
kiln keys add box-ml --keyring-backend test --output json >"$WORK/box-ml.json"
BOXML=$(json_field '["address"]' <"$WORK/box-ml.json")
kiln tx host mlnode add gpu-0 --ml-key box-ml --worker-url http://box-a.test:8090 --models smollm2-135m \
  --hardware "1x test GPU" --from dev --keyring-backend test --yes --output json >"$WORK/mlnode.json"
[ "$(json_field '["code"]' <"$WORK/mlnode.json")" = 0 ] || fail "mlnode add: $(cat "$WORK/mlnode.json")"
kiln query host dev --keyring-backend test --output json >"$WORK/host.json"
python3 - "$WORK/host.json" "$BOXML" <<'PY' || fail "the ML node: $(cat "$WORK/host.json")"
import json, sys
n = json.load(open(sys.argv[1]))["ml_nodes"][0]
assert n["id"] == "gpu-0" and n["state"] == "enabling" and n["ml_key"] == sys.argv[2] and n["lane"] == 1, n
PY
kiln query authz grants dev --keyring-backend test --output json | grep -q "$BOXML" || fail "box-ml got no ML-ops grant"
kiln tx host mlnode update gpu-0 --hardware "2x test GPU" --from dev --keyring-backend test --yes --output json | json_field '["code"]' | grep -qx 0 || fail "mlnode update"
kiln tx host mlnode remove gpu-0 --from dev --keyring-backend test --yes --output json >"$WORK/rm.json" 2>&1 && fail "an enabling ML node was removed"
# Disabling a node still "enabling" cancels it at once; then it can go.
kiln tx host mlnode disable gpu-0 --from dev --keyring-backend test --yes --output json | json_field '["code"]' | grep -qx 0 || fail "mlnode disable"
kiln tx host mlnode remove gpu-0 --from dev --keyring-backend test --yes --output json | json_field '["code"]' | grep -qx 0 || fail "mlnode remove"
[ "$(kiln query host dev --keyring-backend test --output json | json_field '["ml_nodes"]')" = "[]" ] || fail "gpu-0 is still listed"
kiln query authz grants dev --keyring-backend test --output json | grep -q "$BOXML" && fail "box-ml's grant outlived its node"
echo "   -> gpu-0 added (lane 1, box-ml granted), updated, cancelled and removed (grant revoked)"

WPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_worker() {
  RUST_LOG=info "$BIN/kiln-mlworker" run --node "$RPC" --host "$DEV" --key dev-ml --keyring-backend test \
    --http "127.0.0.1:$WPORT" --journal "$WORK/journal" --serve-model smollm2-135m >>"$WORK/worker.log" 2>&1 &
  WORKER_PID=$!
}
worker_status() { curl -sf "http://127.0.0.1:$WPORT/status"; }
# Waits (up to $2 s) until the worker reports a settled result for an epoch >= $1; prints that epoch.
wait_settled() {
  for _ in $(seq 1 $(( $2 * 2 ))); do
    e=$(worker_status 2>/dev/null | json_field '.get("last_result") and d["last_result"]["epoch"] or 0' 2>/dev/null || echo 0)
    if [ "$e" -ge "$1" ]; then echo "$e"; return 0; fi
    kill -0 "$WORKER_PID" 2>/dev/null || fail "the worker exited"
    sleep 0.5
  done
  fail "no epoch >= $1 settled for the worker within $2 s"
}

step "kiln-mlworker run: the dev host's worker earns weight, and weight becomes consensus power"
start_worker
E1=$(wait_settled 1 120)
worker_status | json_field '["last_result"]["result"]["accepted"]' | grep -qx True || fail "dev not accepted: $(worker_status)"
"$BIN/kiln-mlworker" status --http "127.0.0.1:$WPORT" | sed 's/^/   /'
wait_height $(( $(curl -sf "$RPC/status" | json_field '["result"]["sync_info"]["latest_block_height"]') + 3 ))
W=$(kiln query weights --output json | json_field '["weights"][0]["weight"]')
P=$(kiln query weights --output json | json_field '["weights"][0]["cometbft_voting_power"]')
V=$(curl -sf "$RPC/validators" | json_field '["result"]["validators"][0]["voting_power"]')
R=$(kiln query sprint-result "$E1" "$DEV" --output json | json_field '["effective_weight"]')
[ "$W" -gt 0 ] && [ "$W" = "$P" ] && [ "$W" = "$V" ] && [ "$W" = "$R" ] || fail "weight $W, power $P, CometBFT power $V, epoch $E1 result $R must agree"
echo "   -> epoch $E1: dev weight $W = consensus power $P = CometBFT voting power $V"
# The dashboard kilnd serves, in Debian's headless Chromium (Playwright).
SHOTS="$(pwd)/target/screenshots"
if ! node tests/browser/dashboard.mjs "http://127.0.0.1:$DASHBOARD_PORT/" "$DEV" "$BIN/kiln" "$RPC" "$SHOTS" 2>&1 | sed 's/^/   /'; then
  fail "the dashboard's browser test failed"
fi
# Read whole answers before grep -q: an early exit of grep would SIGPIPE curl (pipefail).
HEALTH=$(curl -sf "http://127.0.0.1:$WPORT/health") || fail "/health not ok"
grep -q '"ok"' <<<"$HEALTH" || fail "/health not ok: $HEALTH"
grep -q "subscribed to new blocks" "$WORK/worker.log" || fail "the worker did not subscribe to new blocks over the websocket"
METRICS=$(curl -sf "http://127.0.0.1:$WPORT/metrics") || fail "/metrics did not answer"
grep -q '^kiln_worker_nonces_total' <<<"$METRICS" || fail "/metrics lacks counters"

step "kiln-mlworker doctor: a healthy set-up passes every check; a key without the grant is named with its fix"
DPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/kiln-mlworker" doctor --node "$RPC" --host "$DEV" --key dev-ml --keyring-backend test --device cpu \
  --serve-model smollm2-135m --http "127.0.0.1:$DPORT" >"$WORK/doctor.txt" 2>&1 || fail "doctor failed on a healthy devnet: $(cat "$WORK/doctor.txt")"
grep -q "all checks passed" "$WORK/doctor.txt" || fail "doctor: $(cat "$WORK/doctor.txt")"
[ "$(grep -c '^\[ok\]' "$WORK/doctor.txt")" -ge 10 ] || fail "doctor ran too few checks: $(cat "$WORK/doctor.txt")"
sed 's/^/   /' "$WORK/doctor.txt"
kiln keys add nogrant-ml --keyring-backend test --output json >/dev/null
NOGRANT=$(kiln keys show nogrant-ml --keyring-backend test --output json | json_field '["address"]')
if "$BIN/kiln-mlworker" doctor --node "$RPC" --host "$DEV" --key nogrant-ml --keyring-backend test --device cpu \
  --http "127.0.0.1:$DPORT" >"$WORK/doctor2.txt" 2>&1; then fail "doctor passed a key without a grant: $(cat "$WORK/doctor2.txt")"; fi
grep -q '^\[FAIL\] grant' "$WORK/doctor2.txt" && grep -q "fix: kiln tx authz grant-ml-ops $NOGRANT --from <host key>" "$WORK/doctor2.txt" ||
  fail "doctor did not name the missing grant and its fix: $(cat "$WORK/doctor2.txt")"
if "$BIN/kiln-mlworker" doctor --node "$RPC" --host "$DEV" --key dev-ml --keyring-backend test --device cpu \
  --http "127.0.0.1:$WPORT" >"$WORK/doctor3.txt" 2>&1; then fail "doctor passed a port in use"; fi
grep -q '^\[FAIL\] port' "$WORK/doctor3.txt" || fail "doctor did not name the busy port: $(cat "$WORK/doctor3.txt")"
echo "   -> without the grant: $(grep -A1 '^\[FAIL\] grant' "$WORK/doctor2.txt" | tail -n 1 | sed 's/^ *//')"

# Waits until the worker is inside a sprint with nonces done; sets S to "sprint <nonces>".
wait_mid_sprint() {
  for _ in $(seq 1 200); do
    S=$(worker_status | json_field '["stage"] + " " + str(d["nonces_done"])')
    case "$S" in sprint\ 0) ;; sprint\ *) return 0 ;; esac
    sleep 0.1
  done
  fail "never saw the worker mid-sprint: $S"
}

step "the dev host sells inference while it sprints: unsigned requests are refused, the openai client buys through kiln api-proxy"
wait_mid_sprint
EI=$(worker_status | json_field '["epoch"]')
CODE=$(curl -s -o "$WORK/unsigned.json" -w '%{http_code}' "http://127.0.0.1:$WPORT/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"smollm2-135m","messages":[{"role":"user","content":"Say hello."}],"max_tokens":8}')
[ "$CODE" = 401 ] && grep -q "sign each request" "$WORK/unsigned.json" || fail "an unsigned request got $CODE: $(cat "$WORK/unsigned.json")"
BAL0=$(kiln query bank balances "$ALICE" --output json | json_field '["balances"][0]["amount"]')
PPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/kiln" --node "$RPC" api-proxy --from alice --worker "http://127.0.0.1:$WPORT" --listen "127.0.0.1:$PPORT" >>"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PPORT/v1/models" >/dev/null 2>&1 && break; kill -0 "$PROXY_PID" 2>/dev/null || fail "api-proxy exited: $(cat "$WORK/proxy.log")"; sleep 0.2; done
"$ROOT/.venv/bin/python" tests/openai/check_paid.py "http://127.0.0.1:$PPORT/v1" smollm2-135m "$WORK/paid.json" | sed 's/^/   /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "the openai client could not buy inference through the proxy"
S2=$(worker_status | json_field '["stage"]')
echo "   -> served during '$S' (stage now $S2)"
# Each inference settles on chain: finished, paid (prompt + completion) × price,
# the rest refunded, the completion's hash as the client received it.
PAID=$(python3 - "$WORK/paid.json" "$DEV" <<'PY'
import json, subprocess, sys, time
paid_total = 0
for want in json.load(open(sys.argv[1])):
    for _ in range(150):
        out = subprocess.run(["bash", "-c", f'"$BIN/kiln" --node "$RPC" query inference {want["id"]} --output json'],
                             capture_output=True, text=True)
        rec = json.loads(out.stdout) if out.returncode == 0 else {}
        if rec.get("status") == "finished":
            break
        time.sleep(0.2)
    else:
        sys.exit(f"inference {want['id']} did not finish on chain: {out.stdout} {out.stderr}")
    tokens = rec["prompt_tokens"] + rec["completion_tokens"]
    expect = -(-tokens * rec["price_pkiln"] // 1_000_000)
    checks = {
        "executor": rec["executor"] == sys.argv[2] == want["executor"],
        "prompt tokens": rec["prompt_tokens"] == want["prompt_tokens"],
        "completion tokens": rec["completion_tokens"] == want["completion_tokens"],
        "response hash": rec["response_hash"] == want["response_sha256"],
        "paid = tokens x price": int(rec["paid"]) == expect,
        "paid + refunded = escrow": int(rec["paid"]) + int(rec["refunded"]) == int(rec["escrow"]),
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        sys.exit(f"inference {want['id']}: {bad}: {rec} vs {want}")
    paid_total += int(rec["paid"])
    print(f"   -> {want['id'][:16]}: {tokens} tokens x {rec['price_pkiln']} pkiln = {rec['paid']} ukiln paid, {rec['refunded']} refunded", file=sys.stderr)
print(paid_total)
PY
) || fail "the settlements do not match what the client received"
BAL1=$(kiln query bank balances "$ALICE" --output json | json_field '["balances"][0]["amount"]')
[ $((BAL0 - BAL1)) = "$PAID" ] || fail "alice paid $((BAL0 - BAL1)) ukiln but the settlements say $PAID"
EARNED=$(kiln query serving-stats "$DEV" --output json | json_field '["total_earned"]')
[ "$EARNED" = "$PAID" ] || fail "the executor earned $EARNED, the settlements paid $PAID"
echo "   -> alice's balance fell by exactly $PAID ukiln; the executor earned $EARNED"
OUT=$(kiln infer "Say hi." --from alice --worker "http://127.0.0.1:$WPORT" --max-tokens 6 --stream 2>"$WORK/infer.err") || fail "kiln infer failed: $(cat "$WORK/infer.err")"
[ -n "$OUT" ] && grep -q "kiln query inference" "$WORK/infer.err" || fail "kiln infer printed: $OUT / $(cat "$WORK/infer.err")"
echo "   -> kiln infer --stream: $OUT"
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=""
METRICS=$(curl -sf "http://127.0.0.1:$WPORT/metrics") || fail "/metrics did not answer"
grep -q '^kiln_inference_requests_total [1-9]' <<<"$METRICS" || fail "/metrics lacks the inference counters"
# The operator guide's Grafana dashboard queries only series the worker serves.
DASH=$(python3 scripts/check_dashboard.py docs/grafana/kiln-dashboard.json kiln_ "http://127.0.0.1:$WPORT/metrics") || fail "$DASH"
echo "   -> $DASH"
wait_settled "$EI" 120 >/dev/null
worker_status | json_field '["last_result"]["result"]["accepted"]' | grep -qx True || fail "the epoch with inference was not accepted: $(worker_status)"
echo "   -> epoch $EI, which served paid requests mid-sprint, was accepted"

step "the worker killed -9 mid-sprint resumes from its journal"
wait_mid_sprint
EK=$(worker_status | json_field '["epoch"]')
kill -9 "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=""
echo "   -> killed in epoch $EK at '$S'"
start_worker
E2=$(wait_settled "$EK" 120)
[ "$E2" = "$EK" ] || fail "the restarted worker settled epoch $E2, expected $EK"
grep -q "resuming the epoch from the journal" "$WORK/worker.log" || fail "the restarted worker did not resume from its journal"
worker_status | json_field '["last_result"]["result"]["accepted"]' | grep -qx True || fail "dev not accepted after the restart: $(worker_status)"

kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=""

step "a second host (alice) proves compute and serves: the transfer agent forwards the requests the draw gives her"
# Alice becomes a host: a consensus key of her own, the model declared, a
# self-bond, an ML key granted; her worker sprints and sells SmolLM2 on its
# own port.
"$KILND" init --home "$WORK/alicehome" --chain-id kiln-devnet >/dev/null
WPORT2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
kiln tx host register --from alice --worker-url "http://127.0.0.1:$WPORT2" --models smollm2-135m \
  --consensus-key-file "$WORK/alicehome/config/priv_validator_key.json" --hardware "e2e cpu" --yes --output json >"$WORK/reg.json"
[ "$(json_field '["code"]' <"$WORK/reg.json")" = 0 ] || fail "alice's registration: $(cat "$WORK/reg.json")"
# A self-bond: her unfunded ML key gets the fee-free allowance only once
# her host has weight or a bond (a bare registration buys nothing).
kiln tx staking bond 1kiln --from alice --yes --output json >"$WORK/bond2.json"
[ "$(json_field '["code"]' <"$WORK/bond2.json")" = 0 ] || fail "alice's self-bond: $(cat "$WORK/bond2.json")"
kiln keys add alice-ml --keyring-backend test --output json >/dev/null
ALICE_ML=$(kiln keys show alice-ml --keyring-backend test --output json | json_field '["address"]')
kiln tx authz grant-ml-ops "$ALICE_ML" --from alice --expiration +30d --yes --output json >"$WORK/grant2.json"
[ "$(json_field '["code"]' <"$WORK/grant2.json")" = 0 ] || fail "alice's grant: $(cat "$WORK/grant2.json")"
RUST_LOG=info "$BIN/kiln-mlworker" run --node "$RPC" --host "$ALICE" --key alice-ml --keyring-backend test \
  --http "127.0.0.1:$WPORT2" --journal "$WORK/journal2" --serve-model smollm2-135m >>"$WORK/worker2.log" 2>&1 &
WORKER2_PID=$!
start_worker
# Wait until both hosts have weight (after alice's first accepted sprint).
for _ in $(seq 1 600); do
  N=$(kiln query weights --output json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for w in d["weights"] if int(w["weight"]) > 0))')
  [ "$N" = 2 ] && break
  kill -0 "$WORKER2_PID" 2>/dev/null || fail "alice's worker exited: $(tail -n 20 "$WORK/worker2.log")"
  sleep 0.5
done
[ "$N" = 2 ] || fail "alice never got weight: $(kiln query weights) $(tail -n 20 "$WORK/worker2.log")"
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$WPORT2/v1/models" >/dev/null 2>&1 && break; sleep 0.3; done
echo "   -> weights: $(kiln query weights --output json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(", ".join(w["host"][:12] + "…=" + str(w["weight"]) for w in d["weights"]))')"
# Buys through dev's worker (the transfer agent) until the draw picks alice;
# prints that inference's id. The draw follows weight and alice, new, holds
# ~1/5 of it: 16 tries missed her 3% of the time (0.8^16), and the test
# draws up to four times; 48 tries miss once in ~50 000.
buy_until_alice_executes() { # prompt
  local i out
  for i in $(seq 1 48); do
    out=$(kiln infer "$1 ($i)" --from alice --worker "http://127.0.0.1:$WPORT" --max-tokens 6 --output json) ||
      { echo "kiln infer failed: $out" >&2; return 1; }
    if [ "$(echo "$out" | json_field '["executor"]')" = "$ALICE" ]; then echo "$out" | json_field '["id"]'; return 0; fi
  done
  echo "48 draws never picked alice" >&2; return 1
}
FORWARDED=$(buy_until_alice_executes "Count to three.") || fail "no inference reached alice"
for _ in $(seq 1 150); do
  ST=$(kiln query inference "$FORWARDED" --output json 2>/dev/null | json_field '["status"]' 2>/dev/null || true)
  [ "$ST" = finished ] && break
  sleep 0.2
done
kiln query inference "$FORWARDED" --output json >"$WORK/fwd.json"
[ "$(json_field '["status"]' <"$WORK/fwd.json")" = finished ] && [ "$(json_field '["executor"]' <"$WORK/fwd.json")" = "$ALICE" ] &&
  [ "$(json_field '["transfer_agent"]' <"$WORK/fwd.json")" = "$DEV" ] || fail "the forwarded inference did not settle to alice: $(cat "$WORK/fwd.json")"
grep -q "inference served; finish queued" "$WORK/worker2.log" || fail "alice's worker did not serve the forwarded request"
echo "   -> inference ${FORWARDED:0:16}: transfer agent dev, executor alice, settled and paid $(json_field '["paid"]' <"$WORK/fwd.json") ukiln"
# dev, the other host of the model, validates it: fetches the payload from
# alice's worker, replays it on its own model and posts a passing score.
plain_log() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
for _ in $(seq 1 120); do plain_log "$WORK/worker.log" | grep -q "validation queued id=$FORWARDED" && break; sleep 0.5; done
SCORE=$(plain_log "$WORK/worker.log" | grep "validation queued id=$FORWARDED" | sed 's/.*score_micro=\([0-9]*\).*/\1/' | head -n 1)
[ -n "$SCORE" ] && [ "$SCORE" -ge 995000 ] || fail "dev did not validate alice's honest work (score '$SCORE'): $(plain_log "$WORK/worker.log" | grep -i valid | tail -n 5)"
echo "   -> dev replayed it: score $SCORE / 1000000 (threshold 995000)"
V=$(worker_status | json_field '["inference_validation"]["validated"]')
[ "$V" -ge 1 ] || fail "dev's /status does not count its validations: $(worker_status)"
"$BIN/kiln-mlworker" status --http "127.0.0.1:$WPORT" | grep '^validates' | sed 's/^/   /'

step "a host serving a substituted model is caught: its validator's low score is upheld and the requester refunded"
kill "$WORKER2_PID"; wait "$WORKER2_PID" 2>/dev/null || true
RUST_LOG=info "$BIN/kiln-mlworker" run --node "$RPC" --host "$ALICE" --key alice-ml --keyring-backend test \
  --http "127.0.0.1:$WPORT2" --journal "$WORK/journal2" --serve-model smollm2-135m \
  --test-substitute-perturbation 0.01 >>"$WORK/worker2.log" 2>&1 &
WORKER2_PID=$!
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$WPORT2/v1/models" >/dev/null 2>&1 && break; sleep 0.3; done
# Why an inference never reached the chain or was never judged: what the
# transfer agent (dev's worker) did with its start, and every refusal the
# workers logged.
inference_trail() { # id
  for log in "$WORK/worker.log" "$WORK/worker2.log"; do
    echo "--- $(basename "$log"): ${1:0:8} and refusals ---"
    plain_log "$log" | grep -E "${1:0:8}|tx refused|failed in its block|tx failed" | tail -n 20
  done
}
# Four workers share two cores here, and dev's validator has been seen to
# miss an inference (no replay before the record's 120-block retention
# ended; cause not found yet — each miss is printed as MISSED): up to three
# substitute inferences are bought, and one must be caught.
CAUGHT=""
for TRY in 1 2 3; do
  CHEATED=$(buy_until_alice_executes "Name a colour (try $TRY).") || fail "no inference reached the substitute"
  for _ in $(seq 1 240); do
    # A record that is gone was pruned unjudged after its retention.
    kiln query inference "$CHEATED" --output json >"$WORK/cheat.json" 2>"$WORK/cheat.err" || break
    [ "$(json_field '["status"]' <"$WORK/cheat.json" 2>/dev/null || true)" = invalidated ] && { CAUGHT=1; break; }
    sleep 0.5
  done
  [ -n "$CAUGHT" ] && break
  echo "   -> MISSED: inference ${CHEATED:0:16} by the substitute was not invalidated ($(cat "$WORK/cheat.err" "$WORK/cheat.json" 2>/dev/null | head -c 200)); buying another"
done
[ -n "$CAUGHT" ] || fail "three substitute inferences, none invalidated; the last: $(cat "$WORK/cheat.err") $(inference_trail "$CHEATED")"
[ "$(json_field '["status"]' <"$WORK/cheat.json")" = invalidated ] && [ "$(json_field '["paid"]' <"$WORK/cheat.json")" = 0 ] ||
  fail "the substitute's inference was not invalidated: $(cat "$WORK/cheat.json"); dev: $(plain_log "$WORK/worker.log" | grep -i valid | tail -n 5)"
SCORE=$(plain_log "$WORK/worker.log" | grep "validation queued id=$CHEATED" | sed 's/.*score_micro=\([0-9]*\).*/\1/' | head -n 1)
echo "   -> inference ${CHEATED:0:16} by the substitute: dev scored it $SCORE, the dispute was upheld, alice's pay refunded (refunded $(json_field '["refunded"]' <"$WORK/cheat.json") of $(json_field '["escrow"]' <"$WORK/cheat.json") ukiln)"
kiln query serving-stats "$ALICE" --output json | json_field '["total_invalidated"]' | grep -qx '[1-9][0-9]*' || fail "alice's invalidation is not counted"

step "validation duties: dev committed its seeds ahead, revealed them, and the chain recomputed its duties: none skipped"
PF=$(json_field '["period"]' <"$WORK/fwd.json")
# The next period's seed is committed ahead, in the period's first blocks:
# right at a period boundary it may be a few blocks away.
seed_ahead() {
  kiln query validation-duties dev --output json >"$WORK/duties.json" &&
    python3 - "$WORK/duties.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
periods = [s["period"] for s in d["seeds"]]
assert d["period"] + 1 in periods, periods  # committed before the next period starts
PY
}
for _ in $(seq 1 60); do seed_ahead 2>/dev/null && break; sleep 0.5; done
seed_ahead || fail "dev's seeds are not on chain: $(cat "$WORK/duties.json")"
# Period PF's duties are recomputed at the settle that opens period PF + 2.
for _ in $(seq 1 200); do
  kiln query validation-duties dev --output json >"$WORK/duties.json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if any(r['period']==int(sys.argv[2]) for r in d['records']) else 1)" "$WORK/duties.json" "$PF" && break
  sleep 0.5
done
python3 - "$WORK/duties.json" "$PF" <<'PY' || fail "dev's duties for period $PF: $(cat "$WORK/duties.json")"
import json, sys
d = json.load(open(sys.argv[1]))
r = [r for r in d["records"] if r["period"] == int(sys.argv[2])]
assert r, "no record for the period"
r = r[0]
assert r["revealed"], r
# alice's inferences of that period (at least the forwarded one) were all dev's duty
# (two hosts, traffic below 100: p = 1), and dev validated each one.
assert r["assigned_micro"] >= 1_000_000 and r["assigned_micro"] % 1_000_000 == 0, r
assert r["performed"] * 1_000_000 == r["assigned_micro"] and r["skipped_micro"] == 0, r
print(f"   -> period {r['period']}: seed revealed, {r['performed']} duties assigned and performed, none skipped")
PY

step "rewards: each settle mints the epoch's emission; the hosts are paid, alice's delegation to dev accrues and she withdraws it"
kiln query supply --output json >"$WORK/supply.json"
python3 - "$WORK/supply.json" <<'PY' || fail "no emission recorded: $(cat "$WORK/supply.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert int(s["minted"]) > 0 and int(s["community_pool"]) > 0, s
print(f"   -> minted {int(s['minted']) / 1e6:.0f} KILN so far, community pool {int(s['community_pool']) / 1e6:.0f} KILN, supply {int(s['supply']) / 1e6:.0f} KILN")
PY
kiln query rewards dev --keyring-backend test --output json | json_field '["host_lifetime_rewards"]' | grep -qx '[1-9][0-9]*' || fail "dev earned no rewards"
PENDING=$(kiln query rewards alice --output json | json_field '["total_pending"]')
[ "$PENDING" -gt 0 ] || fail "alice's delegation to dev accrued nothing"
# cosmjs's withdrawRewards, unchanged, with alice's key.
ALICE_MNEMONIC=$(kiln keys export alice --yes --output json | json_field '["mnemonic"]')
(cd tests/cosmjs && KILN_RPC="$RPC" KILN_MNEMONIC="$ALICE_MNEMONIC" KILN_VALOPER="$VALOPER" node withdraw_rewards.mjs) ||
  fail "cosmjs withdrawRewards failed"
# Then the CLI, after the next settle has credited more.
E_NOW=$(kiln query epoch --output json | json_field '["epoch"]')
for _ in $(seq 1 600); do
  P=$(kiln query rewards alice --output json | json_field '["total_pending"]')
  [ "$P" -gt 0 ] && break
  sleep 0.5
done
[ "$P" -gt 0 ] || fail "no rewards accrued again after epoch $E_NOW"
BAL0=$(kiln query bank balances "$ALICE" --output json | json_field '["balances"][0]["amount"]')
kiln tx distribution withdraw-rewards dev --from alice --yes --output json >"$WORK/withdraw.json"
[ "$(json_field '["code"]' <"$WORK/withdraw.json")" = 0 ] || fail "withdraw-rewards failed: $(cat "$WORK/withdraw.json")"
BAL1=$(kiln query bank balances "$ALICE" --output json | json_field '["balances"][0]["amount"]')
[ "$BAL1" -gt "$BAL0" ] || fail "alice's balance did not grow by her rewards: $BAL0 -> $BAL1 (pending was $PENDING)"
echo "   -> alice withdrew her delegator rewards: +$((BAL1 - BAL0)) ukiln net of the fee (pending $P before the tx)"
kiln query leaderboard --output json >"$WORK/board.json"
python3 - "$WORK/board.json" "$DEV" <<'PY' || fail "leaderboard: $(cat "$WORK/board.json")"
import json, sys
b = json.load(open(sys.argv[1]))
dev = next(h for h in b["hosts"] if h["host"] == sys.argv[2])
assert dev["accepted"] and dev["effective_weight"] > 0 and int(dev["reward"]) > 0, dev
assert dev["consensus_power"] > 0 and int(dev["lifetime_rewards"]) >= int(dev["reward"]), dev
assert not dev["jailed"], dev
print(f"   -> leaderboard epoch {b['epoch']}: " + ", ".join(
    f"{h['host'][:12]}… weight {h['effective_weight']} reward {int(h['reward']) / 1e6:.0f} KILN served {h['inferences_served']} rep {h['reputation']}"
    for h in b["hosts"]))
PY
kiln query slashes --output json | grep -q '^\[' || fail "kiln query slashes did not answer a list"

step "one host, two ML nodes: dev runs two more workers (own ML keys) as ML nodes, each sprints in its own lane and both earn; one is retired cleanly"
WPORT3=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WPORT4=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for N in 1 2; do
  kiln keys add "box-$N-ml" --keyring-backend test --output json >/dev/null
  P=$([ "$N" = 1 ] && echo "$WPORT3" || echo "$WPORT4")
  kiln tx host mlnode add "box-$N" --ml-key "box-$N-ml" --worker-url "http://127.0.0.1:$P" --hardware "e2e cpu" \
    --from dev --keyring-backend test --yes --output json | json_field '["code"]' | grep -qx 0 || fail "mlnode add box-$N"
done
RUST_LOG=info "$BIN/kiln-mlworker" run --node "$RPC" --host "$DEV" --key box-1-ml --ml-node box-1 --keyring-backend test --threads 1 \
  --http "127.0.0.1:$WPORT3" --journal "$WORK/journal3" >>"$WORK/worker3.log" 2>&1 &
WORKER3_PID=$!
RUST_LOG=info "$BIN/kiln-mlworker" run --node "$RPC" --host "$DEV" --key box-2-ml --ml-node box-2 --keyring-backend test --threads 1 \
  --http "127.0.0.1:$WPORT4" --journal "$WORK/journal4" >>"$WORK/worker4.log" 2>&1 &
WORKER4_PID=$!
EN=$(( $(kiln query epoch --output json | json_field '["epoch"]') + 1 ))
split_of() { # epoch -> "id:raw_weight ..." of dev's sprint result, or nothing before it settles
  kiln query sprint-result "$1" "$DEV" --output json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(" ".join((n["ml_node"] or "own") + ":" + str(n["raw_weight"]) for n in r.get("nodes", [])))' 2>/dev/null || true
}
settled_epoch() { kiln query leaderboard --output json 2>/dev/null | json_field '["epoch"]' 2>/dev/null || echo 0; }
# Waits until epoch $1 settles; sets SPLIT to dev's per-node split (empty when
# none of dev's units committed in time that epoch: with four workers on two
# cores a starved epoch happens, and the callers allow a few) — in this shell,
# so a failure's message is not swallowed by a command substitution.
wait_split() {
  SPLIT=""
  for _ in $(seq 1 400); do
    SPLIT=$(split_of "$1"); [ -n "$SPLIT" ] && return 0
    [ "$(settled_epoch)" -ge "$1" ] && { SPLIT=$(split_of "$1"); return 0; }
    kill -0 "$WORKER3_PID" 2>/dev/null || fail "box-1's worker exited: $(tail -n 20 "$WORK/worker3.log")"
    sleep 0.5
  done
  fail "epoch $1 never settled: $(kiln query sprint-result "$1" "$DEV" 2>&1)"
}
both_earn() { python3 - "$1" <<'PY'
import sys
parts = dict(p.split(":") for p in sys.argv[1].split())
sys.exit(0 if {"box-1", "box-2"} <= set(parts) and int(parts["box-1"]) > 0 and int(parts["box-2"]) > 0 else 1)
PY
}
# The nodes are enabled from epoch $EN on: both earn. (Four workers share
# two cores here; an epoch whose short reveal window a starved worker
# misses costs that epoch only, so up to three are allowed.)
E=$EN
while :; do
  wait_split "$E"
  echo "   -> epoch $E settled: ${SPLIT:-no commitment by dev in time}"
  both_earn "$SPLIT" && break
  [ "$E" -lt $((EN + 3)) ] || fail "box-1 and box-2 never both earned in epochs $EN-$E"
  E=$((E + 1))
done
kiln query host dev --keyring-backend test --output json >"$WORK/host2.json"
python3 - "$WORK/host2.json" <<'PY' || fail "kiln query host dev: $(cat "$WORK/host2.json")"
import json, sys
nodes = {n["id"]: n for n in json.load(open(sys.argv[1]))["ml_nodes"]}
assert set(nodes) == {"box-1", "box-2"} and all(n["state"] == "enabled" for n in nodes.values()), nodes
# Lane 1 went to gpu-0 above: a removed node's lane is never handed out again.
assert sorted(n["lane"] for n in nodes.values()) == [2, 3], nodes
PY
grep -q "sprinting as the host's ML node" "$WORK/worker4.log" || fail "box-2's worker did not sprint as its node"
echo "   -> kiln query host dev lists box-1 and box-2, enabled, in lanes 2 and 3 (lane 1 was gpu-0's)"
# The operator's clean stop (README "Retiring an ML node"): disable, wait for
# the next epoch, see its share gone, stop it, remove it.
kiln tx host mlnode disable box-2 --from dev --keyring-backend test --yes --output json | json_field '["code"]' | grep -qx 0 || fail "mlnode disable box-2"
ED=$(( $(kiln query epoch --output json | json_field '["epoch"]') + 1 ))
E=$ED
while :; do
  wait_split "$E"
  SPLIT2=$SPLIT
  case " $SPLIT2" in *" box-2:"*) fail "epoch $E, after box-2 was disabled, still counts it: $SPLIT2" ;; esac
  case " $SPLIT2" in *" box-1:"[1-9]*) break ;; esac
  [ "$E" -lt $((ED + 3)) ] || fail "box-1 never earned in epochs $ED-$E: $SPLIT2"
  E=$((E + 1))
done
grep -q "not enabled in force: no sprint duty" "$WORK/worker4.log" || fail "box-2's worker did not notice it was disabled"
kill "$WORKER4_PID"; wait "$WORKER4_PID" 2>/dev/null || true; WORKER4_PID=""
kiln tx host mlnode remove box-2 --from dev --keyring-backend test --yes --output json | json_field '["code"]' | grep -qx 0 || fail "mlnode remove box-2"
echo "   -> box-2 disabled: epoch $E counts $SPLIT2; box-2 stopped and removed"
kill "$WORKER3_PID"; wait "$WORKER3_PID" 2>/dev/null || true; WORKER3_PID=""
kill "$WORKER2_PID"; wait "$WORKER2_PID" 2>/dev/null || true; WORKER2_PID=""
kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=""

step "kill and restart: the node resumes from disk"
H1=$(curl -sf "$RPC/status" | json_field '["result"]["sync_info"]["latest_block_height"]')
BAL_BEFORE=$(kiln query bank balances "$ALICE" --output json | json_field '["balances"][0]["amount"]')
kill -9 "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true; NODE_PID=""
start_node
wait_height $((H1 + 2))
BAL=$(kiln query bank balances "$ALICE" --output json | json_field '["balances"][0]["amount"]')
[ "$BAL" = "$BAL_BEFORE" ] || fail "state lost across restart: alice held $BAL_BEFORE, now $BAL"

E2E_OK=1
step "all end-to-end checks passed"
