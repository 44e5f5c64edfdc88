#!/usr/bin/env bash
# The silt benchmark, one command:
#
#   bench/run.sh [--quick] [--s3 moto|seaweedfs]
#
# Starts an S3-compatible server, etcd, silt (agent and dev) and tansu on
# 127.0.0.1, measures them and writes bench/results/<YYYY-MM-DD_HHMMSS>/
# (report.md, results.json, *.png); a full run also regenerates
# docs/benchmarks.md. The silt binary comes from $SILT_BIN, by default
# ${CARGO_TARGET_DIR:-/var/tmp/silt-target}/release/silt, built with
# `cargo build --release -p silt-agent` when missing. Every process started
# is stopped by PID at the end, also on failure or Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
log() { printf '[bench] %s\n' "$*" >&2; }

# --- dependencies, through the test suite's installer: etcd (for silt
# agent), the S3 server, and the benchmark's own Python packages (tansu, plots)
s3=moto
for a in "$@"; do
    if [ "$a" = "seaweedfs" ] || [ "$a" = "--s3=seaweedfs" ]; then s3=seaweedfs; fi
done
"$ROOT/scripts/install-test-deps.sh" etcd "$s3" -r "$ROOT/bench/requirements.txt"

# --- the silt binary
TARGET="${CARGO_TARGET_DIR:-/var/tmp/silt-target}"
if [ -z "${SILT_BIN:-}" ]; then
    SILT_BIN="$TARGET/release/silt"
    if [ ! -x "$SILT_BIN" ]; then
        log "building $SILT_BIN (cargo build --release -p silt-agent)"
        (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p silt-agent)
    fi
fi
export SILT_BIN

cmd="bench/run.sh"
for a in "$@"; do cmd+=" $(printf '%q' "$a")"; done
exec "$PYTHON" "$ROOT/bench/bench.py" --command "$cmd" "$@"
