"""Host preparation: make sure the tools DietStack relies on are installed and running.

On Debian and Ubuntu missing pieces are installed from the distribution's own
packages (after saying so); elsewhere the error says what to install. Used by
`images build` and `deploy` alike, so one command works on a bare host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from dietstack.errors import DietStackError, DockerUnavailable
from dietstack.hosts import hostio
from dietstack.hosts.hostio import Host, LocalHost
from dietstack.hosts.runtime import DockerRuntime

Say = Callable[[str], None]

DOCKERD_LOG = Path("/var/log/dietstack/dockerd.log")
CA_BUNDLES = (
    Path("/etc/ssl/certs/ca-certificates.crt"),  # Debian, Ubuntu
    Path("/etc/pki/tls/certs/ca-bundle.crt"),  # Fedora, RHEL
)
#: A cold build of all images needs about this much room in Docker's data directory.
BUILD_SPACE_BYTES = 6 * 1024**3


def is_debian_like(os_release: Path = Path("/etc/os-release")) -> bool:
    try:
        text = os_release.read_text()
    except OSError:
        return False
    return os_release_is_debian_like(text)


def os_release_is_debian_like(text: str) -> bool:
    """Whether an /etc/os-release text names Debian, Ubuntu or a derivative."""
    fields = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    ids = {fields.get("ID", "").strip('"')} | set(fields.get("ID_LIKE", "").strip('"').split())
    return bool(ids & {"debian", "ubuntu"})


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise DietStackError(f"{what} needs root", hint="run the command again as root")


def run_or_fail(
    command: list[str],
    what: str,
    hint: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run a command; its output, or an error showing the tail of what it printed."""
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise DietStackError(f"{what} failed", details=tail, hint=hint)
    return result.stdout


def apt_install(packages: list[str], why: str, say: Say) -> None:
    """Install Debian packages, or explain what to install where apt is not the way."""
    if not is_debian_like() or shutil.which("apt-get") is None:
        raise DietStackError(
            f"{why}: {', '.join(packages)} is not installed",
            hint=f"install {' and '.join(packages)} with your distribution's package manager",
        )
    _require_root(f"installing {', '.join(packages)}")
    say(f"{why}: installing {' '.join(packages)} from the distribution's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", *packages],
    ):
        run_or_fail(
            command,
            f"`{' '.join(command)}`",
            "check that the host reaches its Debian/Ubuntu package mirror, then retry",
            env=env,
        )


def ensure_command(command: str, package: str, why: str, say: Say) -> None:
    if shutil.which(command) is None:
        apt_install([package], why, say)


#: Installs Docker from the distribution's packages (Debian 13 splits out docker-cli).
INSTALL_DOCKER = (
    "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
    'pkgs=docker.io; apt-cache show docker-cli >/dev/null 2>&1 && pkgs="$pkgs docker-cli"; '
    "apt-get install -y -q $pkgs"
)
#: Starts the engine; without systemd, from a shell that exits at once, so dockerd is
#: nobody's child (a long-running caller would otherwise keep it as a zombie).
START_DOCKER = (
    "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then "
    "systemctl enable --now docker; else "
    f"mkdir -p {DOCKERD_LOG.parent}; setsid nohup dockerd >>{DOCKERD_LOG} 2>&1 </dev/null & fi"
)


def _install_docker(node: Host, say: Say) -> None:
    if isinstance(node, LocalHost):
        _require_root("installing the Docker engine")
    os_release = node.read_text(Path("/etc/os-release")) or ""
    has_apt = node.call(["sh", "-c", "command -v apt-get"])[0] == 0
    if not (os_release_is_debian_like(os_release) and has_apt):
        raise DietStackError(
            f"{node.name}: the Docker engine is not installed",
            hint="install Docker (docker.io) with the distribution's package manager",
        )
    say(f"{node.name}: installing Docker from the distribution's packages")
    hostio.run(
        node,
        ["sh", "-c", INSTALL_DOCKER],
        "installing docker.io",
        "check that the host reaches its Debian/Ubuntu package mirror, then run the command again",
    )


def ensure_docker_on(
    node: Host, say: Say, connect: Callable[[], DockerRuntime], wait_seconds: float = 60
) -> DockerRuntime:
    """A connected runtime of the node's engine, installing and starting Docker first
    when needed; the same steps for this host and for a node over SSH."""
    try:
        return connect()
    except DockerUnavailable as exc:
        if "permission denied" in exc.message:
            raise
    if node.call(["sh", "-c", "command -v dockerd"])[0] != 0:
        _install_docker(node, say)
    if isinstance(node, LocalHost):
        _require_root("starting the Docker engine")
    say(f"{node.name}: the Docker engine is not running: starting it (log: {DOCKERD_LOG})")
    hostio.run(node, ["sh", "-c", START_DOCKER], "starting dockerd", f"see {DOCKERD_LOG}")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return connect()
        except DockerUnavailable:
            if time.monotonic() > deadline:
                raise DockerUnavailable(
                    f"{node.name}: started the Docker engine, but it did not answer within "
                    f"{wait_seconds:.0f} s",
                    hint=f"look at {DOCKERD_LOG} or `journalctl -u docker` there for why",
                ) from None
            time.sleep(1)


def ensure_docker(say: Say, wait_seconds: float = 60) -> DockerRuntime:
    """This host's engine, installed and started when needed."""
    return ensure_docker_on(LocalHost(), say, DockerRuntime.connect, wait_seconds)


def ca_bundle() -> bytes:
    """The host's trusted CA bundle, handed to builds that download from PyPI."""
    for path in CA_BUNDLES:
        if path.is_file():
            return path.read_bytes()
    return b""


def check_free_space(path: Path, needed: int, what: str) -> None:
    probe = path if path.exists() else path.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DietStackError(
            f"not enough disk space for {what}: {free / 1024**3:.1f} GiB free in {probe}, "
            f"about {needed / 1024**3:.0f} GiB needed",
            hint="free some space (for example `docker system prune` removes unused images) "
            "and run the command again",
        )


def _unescape(field: str) -> str:
    """mountinfo writes spaces, tabs, newlines and backslashes as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def mount_of(path: Path, mountinfo: str) -> tuple[str, bool]:
    """The mount point that holds `path`, and whether its propagation is shared."""
    best, shared = "/", False
    for line in mountinfo.splitlines():
        fields = line.split()
        point = _unescape(fields[4])
        optional = fields[6 : fields.index("-")]
        inside = path == Path(point) or Path(point) in path.parents
        # A later line for the same point is a mount stacked on top: it wins.
        if inside and len(point) >= len(best):
            best, shared = point, any(tag.startswith("shared:") for tag in optional)
    return best, shared


def ensure_shared_mount(node: Host, path: Path) -> None:
    """Make `path` sit on a shared mount of the node, as Docker needs for mount
    propagation.

    systemd makes every mount shared; without it, `path` is bind-mounted onto
    itself and marked shared (again after a reboot: deploy re-checks it)."""
    point, shared = mount_of(path, node.read_text(Path("/proc/self/mountinfo")) or "")
    if shared:
        return
    commands = [] if point == str(path) else [["mount", "--bind", str(path), str(path)]]
    commands.append(["mount", "--make-rshared", str(path)])
    for command in commands:
        hostio.run(
            node,
            command,
            f"making {path} a shared mount ({' '.join(command)})",
            hint="DietStack needs to run as root on a host that allows mounts",
        )
