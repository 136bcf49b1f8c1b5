"""Checks before deploy changes anything: ports, memory and disk.

Every problem found is reported at once, each with what to do about it.
"""

from __future__ import annotations

import errno
import shutil
import socket
from pathlib import Path

from dietstack import services
from dietstack.errors import DietStackError
from dietstack.render import Env
from dietstack.runtime import ContainerState

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


def port_problems(env: Env, ours: dict[str, ContainerState]) -> list[str]:
    problems = []
    for container in services.all_containers(env):
        state = ours.get(container.name)
        if state is not None and state.running:
            continue  # our own container holds its port
        for port in container.ports:
            if port_in_use(env.ip, port) or port_in_use("127.0.0.1", port):
                problems.append(
                    f"port {port} (for {container.name}) is already in use on this host; "
                    f"stop the program using it (`ss -ltnp 'sport = :{port}'` shows which)"
                )
    return problems


def memory_total(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def resource_problems(data_dir: Path) -> list[str]:
    problems = []
    memory = memory_total()
    if memory and memory < MIN_MEMORY:
        problems.append(
            f"this host has {memory / 1024**3:.1f} GiB of memory; DietStack needs at least "
            f"{MIN_MEMORY / 1024**3:.1f} GiB (8 GiB to leave room for VMs)"
        )
    probe = data_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < MIN_DISK:
        problems.append(
            f"{probe} has {free / 1024**3:.1f} GiB free; DietStack needs at least "
            f"{MIN_DISK / 1024**3:.0f} GiB for its data (set data_dir to a bigger disk)"
        )
    return problems


def check_host(env: Env, data_dir: Path, ours: dict[str, ContainerState]) -> None:
    problems = resource_problems(data_dir) + port_problems(env, ours)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise DietStackError(
            f"this host is not ready for DietStack; nothing was changed:\n{listing}",
            hint="fix the problems above and run `dietstack deploy` again",
        )
