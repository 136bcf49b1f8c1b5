#!/usr/bin/env bash
# Runs every DietStack check: lint, types, unit tests, then the integration tests,
# which build the real images, deploy a real cloud and use it with the
# openstack client. A DietStack cloud already running here is torn down. Installs what the tests
# need (Python venv support, Docker) on Debian/Ubuntu and starts Docker if needed.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" -ne 0 ]; then
    echo "run-tests.sh: run it as root: the tests build images with Docker" >&2
    exit 1
fi

apt_install() {
    echo "run-tests.sh: installing $* from the distribution's packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
command -v dockerd >/dev/null || apt_install docker.io
# The dashboard test drives a real browser: Debian's chromium and its driver, and
# NSS's certutil to make it trust the cloud's CA.
command -v chromedriver >/dev/null || apt_install chromium chromium-driver
command -v certutil >/dev/null || apt_install libnss3-tools
# The full-disk test puts the test cloud's data_dir on a small file system of its own.
command -v mkfs.ext4 >/dev/null || apt_install e2fsprogs
if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl enable --now docker
    else
        mkdir -p /var/log/dietstack
        echo "run-tests.sh: starting dockerd (log: /var/log/dietstack/dockerd.log)"
        nohup dockerd >>/var/log/dietstack/dockerd.log 2>&1 </dev/null &
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "run-tests.sh: Docker did not start" >&2; exit 1; }
fi

venv=.venv-test
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -e '.[test]' -c src/dietstack/data/upper-constraints-2026.1.txt
export PATH="$PWD/$venv/bin:$PATH"

echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy
echo "== unit tests" && pytest -q tests/unit
# Images first: with CI=true that is a cold build on a clean host; then the
# deploy test tears down any cloud here and deploys a fresh one.
echo "== integration tests" && pytest -q -s -m integration --durations=25 \
    tests/integration/test_images.py tests/integration/test_dashboard.py \
    tests/integration/test_trust_local.py tests/integration/test_trust.py \
    tests/integration/test_guest_images.py tests/integration/test_deploy.py \
    tests/integration/test_nodes.py
