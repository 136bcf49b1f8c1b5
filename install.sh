#!/usr/bin/env bash
# Installs the `dietstack` command on this host and gets the cloud ready:
# settings with safe defaults, generated secrets, and every container image.
# Safe to run again: what is already there is kept.
set -euo pipefail
src="$(cd "$(dirname "$0")" && pwd)"
prefix=/opt/dietstack

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo ./install.sh): DietStack manages Docker and host networking" >&2
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
"$prefix/venv/bin/pip" install -q --upgrade "$src"
ln -sf "$prefix/venv/bin/dietstack" /usr/local/bin/dietstack

settings=/etc/dietstack/settings.yaml
if [ ! -e "$settings" ]; then
    dietstack config init
fi
dietstack images build
echo "install.sh: done. Settings: $settings; see \`dietstack --help\` for what is next."
