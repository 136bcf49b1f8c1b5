"""`dietstack logs`: which containers a name means, and their logs, merged by line."""

from __future__ import annotations

import threading
from collections.abc import Callable

from dietstack import services
from dietstack.errors import DietStackError
from dietstack.render import Env
from dietstack.runtime import DockerRuntime


def select(env: Env, name: str | None) -> list[str]:
    """The containers of this node that `name` means: one container, every container
    of a service, or (no name) all of them."""
    running = [c for c in services.all_containers(env) if not c.oneshot]
    if name is None:
        return [c.name for c in running]
    chosen = [c.name for c in running if name in (c.name, c.service)]
    if not chosen:
        known = sorted({c.service for c in running} | {c.name for c in running})
        raise DietStackError(
            f"{env.node} has no container or service {name!r}",
            hint=f"use one of: {', '.join(known)}",
        )
    return chosen


def show(
    runtime: DockerRuntime,
    names: list[str],
    follow: bool,
    since: str | None,
    tail: int | None,
    echo: Callable[[str], None],
) -> None:
    """Print the logs; with several containers each line starts with its container."""
    if len(names) == 1:
        for chunk in runtime.logs(names[0], follow, since, tail):
            echo(chunk.decode(errors="replace").rstrip("\n"))
        return
    width = max(map(len, names))
    lock = threading.Lock()

    def copy(name: str) -> None:
        pending = ""
        for chunk in runtime.logs(name, follow, since, tail):
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
