#!/usr/bin/env bash
# The silt benchmark, one command:
#
#   bench/run.sh [--quick] [--s3 moto|seaweedfs] [--phases brokers,compaction,http,lambda,tables,auth,recompress]
#
# Starts an S3-compatible server, etcd, silt (agent and dev) and tansu on
# 127.0.0.1, measures them and writes bench/results/<YYYY-MM-DD_HHMMSS>/
# (report.md, results.json, *.png); a full run also regenerates
# docs/benchmarks.md. The silt binary comes from $SILT_BIN, by default
# ${CARGO_TARGET_DIR:-/var/tmp/silt-target}/release/silt, built with
# `cargo build --release -p silt-agent` when missing; the lambda phase's
# function with `cargo build --release -p silt-lambda --bins` (every run; a
# no-op when fresh). Every process started is stopped by PID at the end, also
# on failure or Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
log() { printf '[bench] %s\n' "$*" >&2; }

# --- dependencies, through the test suite's installer: etcd (for silt
# agent), the S3 server, cargo-lambda (the lambda phase's emulator) and the
# benchmark's own Python packages (tansu, plots, the recompress phase's codecs)
s3=moto
for a in "$@"; do
    if [ "$a" = "seaweedfs" ] || [ "$a" = "--s3=seaweedfs" ]; then s3=seaweedfs; fi
done
phases="brokers,compaction,http,lambda,tables,auth,recompress"
prev=""
for a in "$@"; do
    case "$a" in --phases=*) phases="${a#--phases=}" ;; esac
    if [ "$prev" = "--phases" ]; then phases="$a"; fi
    prev="$a"
done
lambda=""
case ",$phases," in *,lambda,*) lambda=cargo_lambda ;; esac
"$ROOT/scripts/install-test-deps.sh" etcd "$s3" $lambda -r "$ROOT/bench/requirements.txt"

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

# --- the silt-http Lambda function (phase "lambda"), built as the emulator
# runs it (`cargo lambda watch --release` runs `cargo run --release` of the
# silt-lambda package alone, its own feature set), so that the cold-start
# timing never includes a compile. Always run: cargo does nothing when the
# build is fresh, and a stale build would be rebuilt inside the first request.
# Its profile follows the silt binary's (the test suite's smoke run uses
# debug builds, which it has built already).
profile=--release
case "$(readlink -f "$SILT_BIN")" in */debug/*) profile="" ;; esac
case ",$phases," in
    *,lambda,*)
        log "building the silt-http Lambda function (cargo build $profile -p silt-lambda --bins)"
        (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build $profile -p silt-lambda --bins)
        ;;
esac
export CARGO_TARGET_DIR="$TARGET"

cmd="bench/run.sh"
for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then cmd+=" $a"; else cmd+=" $(printf '%q' "$a")"; fi
done
exec "$PYTHON" "$ROOT/bench/bench.py" --command "$cmd" "$@"
