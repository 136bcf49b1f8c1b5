#!/usr/bin/env bash
# Installs the `dietstack` command and the `openstack` client on this host, then
# deploys the cloud: settings with safe defaults, generated secrets, every
# container image, every service. Safe to run again: what is there is kept.
#   ./install.sh --restore FILE   installs, then brings back the cloud of a backup
#                                 (`dietstack backup`) instead of deploying a new one
set -euo pipefail
src="$(cd "$(dirname "$0")" && pwd)"
prefix=/opt/dietstack

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run it as root: DietStack manages Docker and host networking" >&2
    exit 1
fi

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "install.sh: DietStack needs Python 3.11 or newer (Debian 12+, Ubuntu 24.04+)" >&2
    exit 1
fi

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if command -v apt-get >/dev/null; then
        echo "install.sh: installing python3-venv from the distribution's packages"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    else
        echo "install.sh: install Python's venv module (python3-venv) and run this again" >&2
        exit 1
    fi
fi

echo "install.sh: installing dietstack into $prefix"
[ -x "$prefix/venv/bin/python" ] || python3 -m venv "$prefix/venv"
constraints="$src/src/dietstack/data/upper-constraints-2026.1.txt"
pip="$prefix/venv/bin/pip"
# uv (pinned) fetches and installs the packages in parallel, where pip takes
# them one at a time; it trusts the host's CA store. Where pip is told where
# packages come from (an index or find-links in pip.conf or PIP_* variables),
# pip installs, as uv would not read that; pip is also the fallback.
pip_settings="$("$pip" config list 2>/dev/null || true)"
if grep -Eq '\.(index-url|extra-index-url|find-links|no-index)=' <<<"$pip_settings"; then
    "$pip" install -q --upgrade "$src[client]" -c "$constraints"
elif ! { "$pip" install -q uv==0.13.9 \
         && UV_NATIVE_TLS=1 "$prefix/venv/bin/uv" pip install -q --python "$prefix/venv/bin/python" \
              --reinstall-package dietstack "$src[client]" -c "$constraints"; }; then
    echo "install.sh: uv could not install; installing with pip"
    "$pip" install -q --upgrade "$src[client]" -c "$constraints"
fi
ln -sf "$prefix/venv/bin/dietstack" /usr/local/bin/dietstack
ln -sf "$prefix/venv/bin/openstack" /usr/local/bin/openstack

settings=/etc/dietstack/settings.yaml
if [ "${1:-}" = "--restore" ]; then
    [ -n "${2:-}" ] || { echo "install.sh: --restore needs the backup file" >&2; exit 1; }
    dietstack restore "$2"
    echo "install.sh: restored. Settings: $settings"
    exit 0
fi
if [ ! -e "$settings" ]; then
    dietstack config init
fi
dietstack deploy
echo "install.sh: done. Settings: $settings; try: openstack --os-cloud demo network list"
