"""`dietstack logs`: which containers a name means, and their logs, merged by line."""

from __future__ import annotations

import datetime
import re
import threading
import time
from collections.abc import Callable

from dietstack import services
from dietstack.errors import DietStackError
from dietstack.hosts.runtime import DockerRuntime
from dietstack.render import Env


def select(env: Env, name: str | None) -> list[str]:
    """The containers of this node that `name` means: one container, every container
    of a service, or (no name) all of them."""
    running = [c for c in services.all_containers(env) if not c.oneshot]
    if name is None:
        return [c.name for c in running]
    # A service served by another's process (Placement in nova-api) means that container.
    served_by = {s.name: s.served_by for s in services.for_node(env) if s.served_by}
    host = served_by.get(name)
    chosen = [c.name for c in running if name in (c.name, c.service) or c.name == host]
    if not chosen:
        known = sorted({c.service for c in running} | {c.name for c in running} | set(served_by))
        raise DietStackError(
            f"{env.node} has no container or service {name!r}",
            hint=f"use one of: {', '.join(known)}",
        )
    return chosen


def since_time(since: str) -> int | datetime.datetime:
    """`--since` as Docker takes it: a duration back from now (90s, 10m, 2h, 1d) as a
    Unix time, or an ISO date/time."""
    match = re.fullmatch(r"(\d+)([smhd])", since.strip())
    if match:
        seconds = int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return int(time.time()) - seconds
    try:
        return datetime.datetime.fromisoformat(since.strip())
    except ValueError:
        raise DietStackError(
            f"--since {since!r} is not a time",
            hint="give a duration such as 90s, 10m, 2h, 1d, or a time such as 2026-12-01T08:00",
        ) from None


def show(
    runtime: DockerRuntime,
    names: list[str],
    follow: bool,
    since: str | None,
    tail: int | None,
    echo: Callable[[str], None],
) -> None:
    """Print the logs; with several containers each line starts with its container.
    A bad `since` is refused before anything is shown (threads could not report it)."""
    start = since_time(since) if since else None
    if len(names) == 1:
        for chunk in runtime.logs(names[0], follow, start, tail):
            echo(chunk.decode(errors="replace").rstrip("\n"))
        return
    width = max(map(len, names))
    lock = threading.Lock()

    def copy(name: str) -> None:
        pending = ""
        for chunk in runtime.logs(name, follow, start, tail):
            pending += chunk.decode(errors="replace")
            *lines, pending = pending.split("\n")
            with lock:
                for line in lines:
                    echo(f"{name:<{width}} | {line}")
        if pending:
            with lock:
                echo(f"{name:<{width}} | {pending}")

    if not follow:
        for name in names:
            copy(name)
        return
    threads = [threading.Thread(target=copy, args=(name,), daemon=True) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
