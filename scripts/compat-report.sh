#!/usr/bin/env bash
# Regenerates docs/compatibility.md: runs the client compatibility matrix
# (tests/e2e/test_compat_matrix.py) against `silt dev` and writes its report
# there; in the test suite the report goes to a temporary directory.
#
#   scripts/compat-report.sh        # silt from $SILT_BIN (default: the debug build)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/tests/e2e"
SILT_COMPAT_REPORT="$ROOT/docs/compatibility.md" exec "${PYTHON:-python3}" -m pytest -q test_compat_matrix.py
