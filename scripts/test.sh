#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need (kcat, etcd, moto,
# SeaweedFS, the Python Kafka clients), builds the workspace once, runs the Rust unit, property and
# end-to-end tests, then the client end-to-end tests against real processes.
#
#   scripts/test.sh            everything
#   SILT_E2E_RECORDS=5000 scripts/test.sh   smaller client runs
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# A build directory outside the clone lets repeated runs reuse the build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/silt-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
scripts/install-test-deps.sh

step "checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building"
cargo build --workspace --all-targets --locked
# The Lambda functions as the emulator builds them (`cargo run` of the
# silt-lambda package alone: its own feature set), so that no test waits
# for a compile.
cargo build -p silt-lambda --bins --locked

step "Rust tests (unit, property, metadata conformance, end-to-end)"
cargo test --workspace --locked

step "local stack: etcd (1 and 3 members), moto, SeaweedFS"
python3 -m pytest -q localstack/test_stack.py

step "client end-to-end tests: silt dev and silt agent clusters (kcat, confluent-kafka, kafka-python)"
export SILT_BIN="$CARGO_TARGET_DIR/debug/silt"
cd tests/e2e
python3 -m pytest -q

step "Terraform, offline: fmt, checkov, wiring, and the rendered agent command line run against the local stack"
cd "$ROOT"
python3 -m pytest -q tests/terraform

step "fault campaign, quick mode: agents and etcd killed and paused, object-store faults; checker finds 0 anomalies"
cd "$ROOT"
python3 -m pytest -q tests/chaos

step "benchmark smoke run: bench/run.sh --quick produces every figure (no timing asserted)"
cd "$ROOT"
python3 -m pytest -q bench/test_bench_smoke.py
