#!/usr/bin/env bash
# Stops what localstack/up.sh started (by PID); data stays in the directory.
#
#   localstack/down.sh                  # --dir defaults to $SILT_STACK_DIR or /tmp/silt-stack
#   localstack/down.sh --dir /tmp/other
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
args=("$@")
case " $* " in
    *" --dir "* | *" --dir="*) ;;
    *) args+=(--dir "${SILT_STACK_DIR:-/tmp/silt-stack}") ;;
esac
exec "${PYTHON:-python3}" "$HERE/stack.py" down "${args[@]}"
