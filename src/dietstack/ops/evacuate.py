"""`dietstack node evacuate`: a compute node that is gone for good gives its
instances back, rebuilt on the other nodes with Nova's evacuate.

Nova evacuates only from a nova-compute it sees as down, and that must be true: a
node that still runs its guests while they are rebuilt elsewhere would write the
same volumes twice. So the node's service must have stopped reporting on its own;
then it is marked forced down (Nova stops waiting for it) and disabled.

An instance booted from a volume comes back with its disk. One booted from an
image had its disk on the dead node: it is rebuilt from its image (its local data
lost) only when the user says so with --rebuild-local; otherwise it is named and
left. Ports, and so fixed and floating IPs, stay with each instance. When the node
returns, its nova-compute finds the evacuations and removes its stale guests
instead of starting them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dietstack.apis import cloudapi
from dietstack.errors import DietStackError
from dietstack.progress import Progress

REASON = "evacuated by `dietstack node evacuate`: the node is gone"
#: Rebuilding an emulated guest from its image or volume on another node.
EVACUATE_TIMEOUT = 900
POLL_SECONDS = 2
#: Where an evacuated instance ends: as it was, running or stopped.
SETTLED = ("ACTIVE", "SHUTOFF")


@dataclass(frozen=True)
class Evacuated:
    name: str
    target: str
    seconds: float


@dataclass(frozen=True)
class Left:
    name: str
    server_id: str
    reason: str


def boots_from_volume(server: Any) -> bool:
    """Nova lists no image for an instance whose root disk is a volume."""
    image = server.image
    return not (image.get("id") if isinstance(image, dict) else getattr(image, "id", None))


def gone_service(conn: Any, host: str) -> Any:
    """`host`'s nova-compute, once Nova sees it down; refused while it reports."""
    service = cloudapi.compute_service(conn, host)
    if service is None:
        raise DietStackError(
            f"Nova has no nova-compute on {host}", hint="`dietstack node list` shows the nodes"
        )
    if service.state == "up" and not service.is_forced_down:
        raise DietStackError(
            f"{host}'s nova-compute still reports to Nova: evacuating a node whose guests "
            "may still run would start them twice; nothing was changed",
            hint=f"if the node works, move its instances with `dietstack node drain {host}`; "
            "if it is gone, wait until `dietstack node list` shows it down (about two minutes "
            "after it stopped)",
        )
    return service


def evacuate(
    conn: Any, host: str, rebuild_local: bool, progress: Progress
) -> tuple[list[Evacuated], list[Left]]:
    with cloudapi.api_errors("nova-api", f"reading {host}'s nova-compute and instances"):
        service = gone_service(conn, host)
        servers = cloudapi.instances_on(conn, host)
        others = [s for s in conn.compute.services(binary="nova-compute") if _takes(s, host)]
    if servers and not others:
        raise DietStackError(
            f"no other node can take {host}'s {len(servers)} instance(s); nothing was changed",
            hint="add a node (`dietstack node add`) or undrain one first",
        )
    progress.total = 1 + len(servers)
    progress.step(f"{host}: marking nova-compute forced down and disabled")
    with cloudapi.api_errors("nova-api", f"marking {host}'s nova-compute forced down"):
        conn.compute.update_service_forced_down(service, forced=True)
        conn.compute.disable_service(service, disabled_reason=REASON)
    progress.done(f"{len(servers)} instance(s) to rebuild elsewhere")
    done: list[Evacuated] = []
    left: list[Left] = []
    for index, server in enumerate(servers, start=1):
        progress.step(f"{host}: {server.name} ({index}/{len(servers)})")
        result = evacuate_one(conn, server, host, rebuild_local, progress.activity)
        if isinstance(result, Evacuated):
            done.append(result)
            progress.done(f"rebuilt on {result.target}")
        else:
            left.append(result)
            progress.done(f"left: {result.reason}")
    return done, left


def _takes(service: Any, host: str) -> bool:
    return bool(service.host != host and service.status == "enabled" and service.state == "up")


def evacuate_one(
    conn: Any, server: Any, host: str, rebuild_local: bool, show: Callable[[str], None]
) -> Evacuated | Left:
    if not boots_from_volume(server) and not rebuild_local:
        return Left(
            server.name,
            server.id,
            "booted from an image, its disk was on the node; --rebuild-local rebuilds it "
            "from its image (what was written to that disk is lost)",
        )
    if server.status not in (*SETTLED, "ERROR"):
        return Left(
            server.name,
            server.id,
            f"it is {server.status} ({server.task_state or 'no task'}); wait until it "
            "settles, then evacuate again",
        )
    started = time.monotonic()
    try:
        conn.compute.evacuate_server(server)
        current = _wait_rebuilt(conn, server, host, show)
    except (*cloudapi.API_ERRORS, EvacuationFailed) as exc:
        return Left(server.name, server.id, str(exc))
    if server.status == "ACTIVE" and current.status == "SHUTOFF":
        # Since compute API 2.95 Nova leaves an evacuated instance stopped; one
        # that ran before runs again.
        try:
            conn.compute.start_server(current)
            current = _wait_status(conn, server, "ACTIVE", show)
        except (*cloudapi.API_ERRORS, EvacuationFailed) as exc:
            return Left(
                server.name,
                server.id,
                f"rebuilt on {current.compute_host} but not started ({exc}); "
                f"`openstack server start {server.id}`",
            )
    return Evacuated(server.name, current.compute_host, time.monotonic() - started)


class EvacuationFailed(Exception):
    pass


def _wait_rebuilt(conn: Any, server: Any, host: str, show: Callable[[str], None]) -> Any:
    deadline = time.monotonic() + EVACUATE_TIMEOUT
    while time.monotonic() < deadline:
        current = conn.compute.get_server(server.id)
        show(f"{current.status} {current.task_state or ''} on {current.compute_host}")
        if current.status == "ERROR" and not current.task_state:
            fault = (current.fault or {}).get("message", "no fault recorded")
            raise EvacuationFailed(f"it went into ERROR: {fault}")
        if current.status in SETTLED and not current.task_state and current.compute_host != host:
            return current
        time.sleep(POLL_SECONDS)
    raise EvacuationFailed(f"not rebuilt after {EVACUATE_TIMEOUT} s")


def _wait_status(conn: Any, server: Any, wanted: str, show: Callable[[str], None]) -> Any:
    deadline = time.monotonic() + EVACUATE_TIMEOUT
    while time.monotonic() < deadline:
        current = conn.compute.get_server(server.id)
        show(f"{current.status} {current.task_state or ''}")
        if current.status == wanted and not current.task_state:
            return current
        if current.status == "ERROR":
            fault = (current.fault or {}).get("message", "no fault recorded")
            raise EvacuationFailed(f"it went into ERROR: {fault}")
        time.sleep(POLL_SECONDS)
    raise EvacuationFailed(f"not {wanted} after {EVACUATE_TIMEOUT} s")
