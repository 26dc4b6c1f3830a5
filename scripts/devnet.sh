#!/usr/bin/env bash
# Starts a single-node Kiln devnet from the release build (make devnet builds
# it first). The home is $KILN_HOME (default ~/.kiln); the first start creates
# the `dev` key (test keyring) and a genesis funding it. Extra arguments go to
# `kilnd devnet` (e.g. --block-time 500ms, --rpc 127.0.0.1:26657).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${KILN_BIN_DIR:-$(pwd)/target/release}
export KILN_HOME=${KILN_HOME:-$HOME/.kiln}
cat <<MSG
Kiln devnet — home $KILN_HOME, RPC http://127.0.0.1:26657
In another terminal, for example:
  $BIN/kiln status
  $BIN/kiln keys add alice
  $BIN/kiln tx bank send dev \$($BIN/kiln keys show alice --address) 10kiln --keyring-backend test
Stop with Ctrl-C; run again to resume from disk.
MSG
exec "$BIN/kilnd" devnet "$@"
