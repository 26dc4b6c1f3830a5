#!/usr/bin/env bash
# The whole test suite, as `make test` (and CI, through .ci/run) runs it:
# set-up first (scripts/setup.sh installs what is missing), then the build
# and the tests. Each phase is timed; the summary is printed at the end even
# when a phase fails, so a CI log's tail says where the time went and which
# phase stopped the run.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CARGO=cargo

SUMMARY=()
START=$(date +%s)
FAILED=""
PHASE_LOG=$(mktemp -t kiln-test-phase.XXXXXX)

summary() {
  local total=$(( $(date +%s) - START ))
  printf '\n\033[1;34m[test]\033[0m phase times:\n'
  for line in "${SUMMARY[@]}"; do printf '  %s\n' "$line"; done
  printf '  %-44s %5ds\n' "total" "$total"
  if [ -n "$FAILED" ]; then
    # The failing phase's own verdict lines, again: logs printed after them
    # (e2e's node log, nextest's output) push them out of a CI log's tail.
    if [ -s "$PHASE_LOG" ]; then
      printf '\033[1;31m[test] what the failing phase reported:\033[0m\n'
      sed 's/\x1b\[[0-9;]*m//g' "$PHASE_LOG" |
        grep -E 'FAIL|panicked|^error|assertion|Error:' | tail -n 12 | cut -c1-400 | sed 's/^/  | /'
    fi
    printf '\033[1;31m[test] FAILED in: %s\033[0m\n' "$FAILED"
  fi
  rm -f "$PHASE_LOG"
}
trap summary EXIT

# phase NAME COMMAND... : runs one phase, records its time and outcome; the
# first failing phase ends the run (later phases would only repeat its noise).
phase() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  printf '\033[1;34m[test]\033[0m %s\n' "$name"
  "$@" 2>&1 | tee "$PHASE_LOG"
  local status=${PIPESTATUS[0]}
  local took=$(( $(date +%s) - t0 ))
  if [ "$status" = 0 ]; then
    SUMMARY+=("$(printf '%-44s %5ds  ok' "$name" "$took")")
  else
    SUMMARY+=("$(printf '%-44s %5ds  FAILED (exit %d)' "$name" "$took" "$status")")
    FAILED=$name
    exit "$status"
  fi
}

disk_free() { df -h . | awk 'NR==2 {print "[test] disk free: " $4}'; }

phase "set-up (scripts/setup.sh)" ./scripts/setup.sh
disk_free
phase "build (workspace, tests and binaries)" $CARGO build --workspace --tests --bins
disk_free
if cargo nextest --version >/dev/null 2>&1; then
  phase "unit and integration tests (nextest)" $CARGO nextest run --workspace --no-fail-fast
else
  phase "unit and integration tests (cargo test)" $CARGO test --workspace --no-fail-fast
fi
# The chain builds the sprint protocol without floats: prove that build works.
phase "sprint protocol without floats" $CARGO test -p kiln-sprint-protocol --no-default-features
phase "end-to-end devnet (scripts/e2e.sh)" ./scripts/e2e.sh
phase "upgrade on 4 CometBFT validators" ./scripts/upgrade_testnet.sh
