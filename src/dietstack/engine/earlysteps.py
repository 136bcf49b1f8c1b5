"""Bootstrap steps started ahead of their turn.

A service's bootstrap step (its database migrations) needs only MariaDB with the
service's database and user in it, yet the plan puts it right before the
service's containers, after every service before it is up. On a first deploy
the migrations are about a third of the time, mostly waiting on MariaDB or on
one core: once MariaDB is set up, every planned bootstrap is started in the
background, EARLY_AT_ONCE at a time, in plan order.

Apply still goes through the plan in order: at a bootstrap step it takes that
step's result (waiting for it if it is still running), records it, or fails the
deploy there with the step's log, exactly as if the step had run then. A step
the deploy never reaches (an earlier step failed) is not recorded, so the next
deploy runs it again; migrations are idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from dietstack.hosts.dockerdata import RunSpec

#: Bootstraps running at once beside the plan's own steps: two keep a small
#: host's cores busy without piling every migration onto MariaDB together.
EARLY_AT_ONCE = 2


class Runner(Protocol):
    """Runs one-shot steps: the runtime adapter (DockerRuntime.run_oneshot)."""

    def run_oneshot(self, spec: RunSpec) -> tuple[int, str]: ...


class EarlySteps:
    """Bootstrap steps under way or done ahead of their turn, by container name."""

    def __init__(self, runtime: Runner) -> None:
        self._runtime = runtime
        self._pool: ThreadPoolExecutor | None = None
        self._started: dict[str, Future[tuple[int, str]]] = {}

    def start(self, specs: Iterable[RunSpec]) -> None:
        """Start these steps in the background (at most EARLY_AT_ONCE run at once)."""
        for spec in specs:
            if spec.name in self._started:
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(EARLY_AT_ONCE, thread_name_prefix="bootstrap")
            self._started[spec.name] = self._pool.submit(self._runtime.run_oneshot, spec)

    def run(self, spec: RunSpec) -> tuple[int, str]:
        """The step's exit code and log: from its early run if it has one (waiting
        for it to end), else from running it now."""
        future = self._started.pop(spec.name, None)
        if future is None:
            return self._runtime.run_oneshot(spec)
        return future.result()

    def under_way(self) -> list[str]:
        """The steps running now."""
        return [name for name, future in self._started.items() if future.running()]

    def close(self) -> None:
        """Steps not yet begun are dropped; those under way are waited for, so no
        migration is left running when deploy ends."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._started.clear()
