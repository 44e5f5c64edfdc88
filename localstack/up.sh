#!/usr/bin/env bash
# Starts etcd and an S3-compatible server for silt on 127.0.0.1 and prints the
# environment a silt agent needs (see localstack/README.md):
#
#   eval "$(localstack/up.sh)"                                  # 1 etcd member + moto
#   eval "$(localstack/up.sh --etcd-members 3 --s3 seaweedfs)"  # 3 members + SeaweedFS
#
# Everything lives in --dir (default: $SILT_STACK_DIR or /tmp/silt-stack);
# other shells can `source DIR/env.sh`. Stop with localstack/down.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
args=("$@")
case " $* " in
    *" --dir "* | *" --dir="*) ;;
    *) args+=(--dir "${SILT_STACK_DIR:-/tmp/silt-stack}") ;;
esac
exec "${PYTHON:-python3}" "$HERE/stack.py" up "${args[@]}"
