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

# What deploy installs from the distribution's packages when it is missing (Docker,
# and debootstrap for the base image) is fetched now, beside DietStack's own
# installation below: the two do not depend on each other.
packages_log=/var/log/dietstack/install-packages.log
packages_pid=""
if command -v apt-get >/dev/null; then
    packages=""
    command -v dockerd >/dev/null || packages=" docker.io"
    command -v debootstrap >/dev/null || packages="$packages debootstrap"
    [ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || packages="$packages debian-archive-keyring"
    if [ -n "$packages" ]; then
        echo "install.sh: installing$packages from the distribution's packages, in the background (log: $packages_log)"
        mkdir -p "$(dirname "$packages_log")"
        (
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q
            # Debian 13 ships Docker's command line in a package of its own.
            case " $packages " in *" docker.io "*)
                apt-cache show docker-cli >/dev/null 2>&1 && packages="$packages docker-cli";;
            esac
            apt-get install -y -q $packages
        ) >"$packages_log" 2>&1 </dev/null &
        packages_pid=$!
    fi
fi
wait_for_packages() {
    [ -n "$packages_pid" ] || return 0
    if ! wait "$packages_pid"; then
        echo "install.sh: installing$packages in the background failed; deploy tries again. Its log ends:"
        tail -n 5 "$packages_log" | sed 's/^/    /'
    fi
    packages_pid=""
}

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

wait_for_packages

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
