"""The records the Docker adapter (runtime.py) speaks in, and how Docker's answers
become them.

Plain data, and functions of what Docker answered: nothing here talks to Docker,
so planning (converge.py) and the checks need no Docker client.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dietstack.errors import DietStackError
from dietstack.model import Privileges

#: How a build's error shows among its output lines (build_lines).
ERROR_PREFIX = "ERROR: "


@dataclass(frozen=True)
class RunSpec:
    """How to run one container, in Docker's terms."""

    name: str
    image: str
    command: tuple[str, ...]
    labels: dict[str, str]
    #: (host path, container path, mode: "ro", "rw", optionally ",rshared" or ",rslave")
    mounts: tuple[tuple[str, str, str], ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    healthcheck: tuple[str, ...] = ()
    health_timing: tuple[int, int, int, int] = (60, 10, 3, 120)
    privileges: Privileges = field(default_factory=Privileges)
    #: (container path, Docker's tmpfs options such as "size=64m")
    tmpfs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ContainerState:
    name: str
    status: str
    health: str | None
    labels: dict[str, str]
    exit_code: int
    #: When the container last started (Docker's RFC 3339 time, UTC); "" if never.
    started_at: str = ""

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class ImageInfo:
    tag: str
    id: str
    size: int
    created: str
    labels: dict[str, str]


def docker_healthcheck(spec: RunSpec) -> dict[str, Any] | None:
    """The spec's health check as Docker's API takes it (times in nanoseconds)."""
    if not spec.healthcheck:
        return None
    interval, timeout, retries, start_period = spec.health_timing
    second = 1_000_000_000
    return {
        "test": ["CMD", *spec.healthcheck],
        "interval": interval * second,
        "timeout": timeout * second,
        "retries": retries,
        "start_period": start_period * second,
    }


def container_state(container: Any) -> ContainerState:
    state = container.attrs.get("State", {})
    return ContainerState(
        name=container.name,
        status=str(state.get("Status", "unknown")),
        health=(state.get("Health") or {}).get("Status"),
        labels=dict(container.labels or {}),
        exit_code=int(state.get("ExitCode", 0)),
        started_at=str(state.get("StartedAt") or ""),
    )


def build_lines(stream: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Text lines of a build's JSON progress stream; errors become a final line."""
    for chunk in stream:
        if "error" in chunk:
            yield f"{ERROR_PREFIX}{chunk['error'].strip()}"
            continue
        for line in str(chunk.get("stream", "")).splitlines():
            if line.strip():
                yield line.rstrip()


def data_root(info: dict[str, Any], on: str) -> Path:
    """Where an engine keeps its data, from its `info`: the node's own word, so only
    an absolute path of printable characters is taken."""
    root = info.get("DockerRootDir", "/var/lib/docker")
    if not isinstance(root, str) or not root.startswith("/") or not root.isprintable():
        raise DietStackError(f"{on}Docker reports an unusable data directory")
    return Path(root)
