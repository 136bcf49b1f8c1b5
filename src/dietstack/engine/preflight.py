"""Checks before deploy changes anything: ports, memory, disk and NFS.

Memory, disk and NFS are read through the host adapter, so `node add` checks a
node (nodechecks.py) with the same functions.

Every problem found is reported at once, each with what to do about it.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from dietstack import services
from dietstack.engine import converge, publictls
from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.errors import DietStackError
from dietstack.hosts import facts, hostio
from dietstack.hosts.dockerdata import ContainerState
from dietstack.hosts.hostio import Host, LocalHost
from dietstack.hosts.runtime import DockerRuntime
from dietstack.render import Env

#: State of a listening socket in /proc/net/tcp.
TCP_LISTEN = "0A"

MIN_MEMORY = 3.5 * 1024**3
MIN_DISK = 5 * 1024**3


def port_in_use(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def listening_ports(pids: Iterable[int], proc: Path = Path("/proc")) -> set[int]:
    """TCP ports these processes listen on. Our containers share the host's network,
    so the host's socket tables list their sockets too."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in (proc / str(pid) / "fd").iterdir()]
        except OSError:
            continue  # the process has gone
        inodes.update(link[len("socket:[") : -1] for link in links if link.startswith("socket:["))
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN and inode in inodes:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def ports_of_retired_containers(
    runtime: DockerRuntime, env: Env, ours: dict[str, ContainerState]
) -> set[int]:
    """Ports held by our containers that no service describes any more: deploy
    removes those first, so their ports are free for the new containers."""
    wanted = {container.name for container in services.all_containers(env)}
    retired = [a.name for a in converge.plan_orphans(wanted, ours) if ours[a.name].running]
    return listening_ports(pid for name in retired for pid in runtime.pids(name))


def port_clashes(env: Env) -> list[str]:
    """TCP ports that two containers of this node both declare. Only dashboard_port
    is chosen by the user, so a clash means it was set to a port DietStack uses."""
    owners: dict[int, str] = {}
    problems = []
    for container in services.all_containers(env):
        for declared in container.ports:
            for number in declared.numbers if declared.protocol == "tcp" else ():
                first = owners.setdefault(number, container.name)
                if first == container.name:
                    continue
                problems.append(
                    f"dashboard_port: {number} is also the port of {first}, so {container.name}"
                    " could not listen on it; set dashboard_port to a free port, e.g. 8080"
                    if "horizon" in (first, container.name)
                    else f"port {number} is declared by both {first} and {container.name}"
                )
    return problems


def port_problems(
    env: Env, ours: dict[str, ContainerState], retired_ports: frozenset[int] = frozenset()
) -> list[str]:
    problems = []
    for container in services.all_containers(env):
        state = ours.get(container.name)
        if state is not None and state.running:
            continue  # our own container holds its port
        for declared in container.ports:
            port = declared.number
            if not declared.opened_at_start or declared.protocol != "tcp" or port in retired_ports:
                continue
            if port_in_use(env.ip, port) or port_in_use("127.0.0.1", port):
                problems.append(
                    f"port {port} (for {container.name}) is already in use on this host; "
                    f"stop the program using it (`ss -ltnp 'sport = :{port}'` shows which)"
                )
    return problems


# --- memory, disk and NFS: read through the host adapter, for this host and for nodes ---


def read_meminfo(host: Host) -> dict[str, int]:
    """/proc/meminfo's values, in bytes."""
    text = host.read_text(Path("/proc/meminfo")) or ""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            values[key] = int(rest.split()[0]) * 1024
    return values


def existing_parent(host: Host, path: Path) -> Path:
    """The path, or its nearest parent that exists (what a new directory would be on)."""
    probe = path
    while probe != probe.parent and not hostio.exists(host, probe):
        probe = probe.parent
    return probe


def free_space(host: Host, path: Path) -> tuple[Path, int] | None:
    """Where `path` would live and how many bytes are free there (None: unknown)."""
    where = existing_parent(host, path)
    code, output = host.call(["df", "-P", "-B1", str(where)])
    if code != 0 or len(output.splitlines()) < 2:
        return None
    return where, int(output.splitlines()[-1].split()[3])


def resource_problems(host: Host, data_dir: Path) -> list[str]:
    problems = []
    memory = read_meminfo(host).get("MemTotal", 0)
    if memory and memory < MIN_MEMORY:
        problems.append(
            f"this host has {memory / 1024**3:.1f} GiB of memory; DietStack needs at least "
            f"{MIN_MEMORY / 1024**3:.1f} GiB (8 GiB to leave room for VMs)"
        )
    space = free_space(host, data_dir)
    if space is not None and space[1] < MIN_DISK:
        where, free = space
        problems.append(
            f"{where} has {free / 1024**3:.1f} GiB free; DietStack needs at least "
            f"{MIN_DISK / 1024**3:.0f} GiB for its data (set data_dir to a bigger disk)"
        )
    return problems


def nfs_problems(host: Host, env: Env) -> list[str]:
    share = str(env.settings.get("nfs_share") or "")
    if share and not facts.nfs_client(host):
        return [
            f"nfs_share: {share} must be mounted over NFS, but this host's kernel has no "
            "NFS client (no `nfs` filesystem, `modprobe nfs` fails); install the kernel's "
            "NFS modules, or leave nfs_share empty so this host serves the volumes itself"
        ]
    return []


#: What this host trusts, when the user names no CA of their own certificate.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def user_certificate(env: Env) -> publictls.UserCertificate | None:
    """The user's own certificate as the settings name it (None: DietStack's CA signs)."""
    certificate = str(env.settings.get("tls_certificate") or "")
    if not certificate:
        return None
    trusted = Path(str(env.settings.get("tls_ca_certificate") or "") or HOST_CA_BUNDLE)
    return publictls.UserCertificate(
        key=Path(str(env.settings["tls_private_key"])).read_text(),
        certificate=Path(certificate).read_text(),
        trust=trusted.read_text() if trusted.is_file() else "",
    )


def tls_problems(env: Env) -> list[str]:
    """Everything wrong with the user's own certificate (none when DietStack's CA signs)."""
    own = user_certificate(env)
    if own is None:
        return []
    if not own.trust:
        return [
            "tls_ca_certificate: this host has no CA bundle to check tls_certificate by; "
            "name the CA file that signed it"
        ]
    # The catalog names the management address, browsers dashboard_names; the host's
    # bare name is not required of a certificate of the user's.
    names = publictls.Names.of([env.control_ip, *(env.settings.get("dashboard_names") or ())])
    problems, _ = publictls.check_user_certificate(own.certificate, own.key, names, own.trust)
    return problems


def check_host(env: Env, data_dir: Path, runtime: DockerRuntime) -> None:
    local = LocalHost()
    ours = runtime.containers(LABEL_CONTAINER)
    retired = frozenset(ports_of_retired_containers(runtime, env, ours))
    problems = (
        resource_problems(local, data_dir)
        + port_clashes(env)
        + port_problems(env, ours, retired)
        + nfs_problems(local, env)
        + tls_problems(env)
    )
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise DietStackError(
            f"this host is not ready for DietStack; nothing was changed:\n{listing}",
            hint="fix the problems above and run `dietstack deploy` again",
        )
