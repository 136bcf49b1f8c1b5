"""The records the Docker adapter (runtime.py) speaks in, and how Docker's answers
become them.

Plain data, and functions of what Docker answered: nothing here talks to Docker,
so planning (converge.py) and the checks need no Docker client.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dietstack.errors import DietStackError, DockerUnavailable
from dietstack.model import Privileges

#: How a build's error shows among its output lines (build_lines).
ERROR_PREFIX = "ERROR: "
#: On a container whose watcher keeps its health (model.Healthcheck, start/heal.py).
LABEL_WATCHED = "dietstack.watched"
#: The header of Docker's answer to a stat of a container path (HEAD .../archive).
PATH_STAT = "X-Docker-Container-Path-Stat"


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


def parse_time(text: str) -> datetime:
    """Nova's naive UTC times and Docker's RFC 3339 ones (nanoseconds, "Z")."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def watched_health(encoded_stat: str | None, started_at: str = "") -> str:
    """A watcher's verdict from Docker's stat of its link (PATH_STAT; None: no link
    yet). A link older than the container's start is the last run's verdict, which
    the new run has not removed yet. What a container says of itself is only ever
    one of three words here."""
    try:
        link_stat = json.loads(base64.b64decode(encoded_stat or "", validate=True))
        if not isinstance(link_stat, dict):
            return "starting"
        if started_at and parse_time(str(link_stat["mtime"])) < parse_time(started_at):
            return "starting"
    except (ValueError, KeyError):
        return "starting"
    target = str(link_stat.get("linkTarget") or "").rsplit("/", 1)[-1]
    status = target.split(" ", 1)[0]
    return status if status in ("healthy", "unhealthy", "starting") else "starting"


def container_state(container: Any, watched: str | None = None) -> ContainerState:
    """`watched`: the watcher's verdict, for a container that has one (LABEL_WATCHED);
    others keep what Docker's own check said (containers made before the watchers)."""
    state = container.attrs.get("State", {})
    return ContainerState(
        name=container.name,
        status=str(state.get("Status", "unknown")),
        health=watched or (state.get("Health") or {}).get("Status"),
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


def unavailable(exc: Exception) -> DockerUnavailable:
    text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        return DockerUnavailable(
            "Docker is running but this user may not use it (permission denied on its socket)",
            hint="run dietstack as root, or add yourself to the `docker` group and log in again",
        )
    return DockerUnavailable(
        "cannot reach the Docker engine: is it running?",
        hint="start it with `systemctl start docker` (or `dockerd &`); `dietstack images "
        "build` and `dietstack deploy` install and start it on Debian and Ubuntu",
        details=f"({text.splitlines()[0] if text else type(exc).__name__})",
    )
