"""Health checks that end a container whose service no longer works.

Docker marks a container unhealthy when its check keeps failing, but its restart
policy only applies to containers that exit: a daemon whose workers have all
died, while the parent waits on, would stay "running (unhealthy)" for ever. So
Docker runs each check through this wrapper, which counts failures in a row;
once the container has been unhealthy for a while it sends the container's first
process (tini) SIGTERM, which passes it on to the service. If that does not end
it, the next failure kills every process of the container. Docker then restarts
it, with its back-off between attempts.

Failures during the start period do not count, as Docker does not count them.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

#: Failures in a row, beyond Docker's own retries, before the container is ended:
#: it stays visibly unhealthy for a couple of intervals first (a service may be
#: waiting on a dependency that restarts).
GRACE = 2
STATE = Path("/run/dietstack-health.json")


def pid1_started(proc: Path = Path("/proc")) -> int:
    """When the container's first process started (clock ticks since boot): it
    tells one run of the container from the next."""
    fields = (proc / "1" / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19])


def seconds_up(proc: Path = Path("/proc")) -> float:
    uptime = float((proc / "uptime").read_text().split()[0])
    return uptime - pid1_started(proc) / os.sysconf("SC_CLK_TCK")


def failures_so_far(run: int, state: Path) -> int:
    """Failures in a row of this run of the container."""
    try:
        saved = json.loads(state.read_text())
        return int(saved["failures"]) if saved.get("run") == run else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def save(run: int, failures: int, state: Path) -> None:
    try:
        state.write_text(json.dumps({"run": run, "failures": failures}))
    except OSError as exc:
        print(f"cannot count failures in {state}: {exc}")


def end_container(failures: int, retries: int) -> None:
    if failures == retries + GRACE:
        print(f"unhealthy {failures} times in a row: ending the container so Docker restarts it")
        os.kill(1, signal.SIGTERM)
    elif failures > retries + GRACE:
        print(f"still running after SIGTERM ({failures} failures): killing its processes")
        # Every process of the container but its first and this one.
        os.kill(-1, signal.SIGKILL)


def supervise(
    retries: int, start_period: int, check: Callable[[], int], state: Path = STATE
) -> int:
    """Run the health check; returns its exit code (Docker's verdict)."""
    run = pid1_started()
    counting = seconds_up() >= start_period
    failures = failures_so_far(run, state) + 1
    if counting:
        # Counted before the check runs: Docker kills a check that takes too long.
        save(run, failures, state)
    code = check()
    if code == 0:
        save(run, 0, state)
    elif counting:
        end_container(failures, retries)
    return code
