"""`dietstack node drain` and `undrain`: empty a node of instances, and take it back.

Draining disables the node's nova-compute (the scheduler sends nothing new there),
then moves every instance away one at a time: running and paused ones by live
migration (block migration where disks are local, chosen by Nova), stopped ones
by cold migration. Nova's scheduler picks where each goes. An instance that cannot
move stays, named with the reason; the node stays disabled either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openstack.exceptions

from dietstack.apis import cloudapi
from dietstack.errors import DietStackError
from dietstack.progress import Progress

#: What `openstack compute service list --long` shows as the reason.
REASON = "drained by `dietstack node drain`"
#: One instance's move, emulated guests included (block migration copies its disk).
MOVE_TIMEOUT = 900
POLL_SECONDS = 2
LIVE = ("ACTIVE", "PAUSED")
COLD = ("SHUTOFF",)


@dataclass(frozen=True)
class Moved:
    name: str
    target: str
    how: str
    seconds: float


@dataclass(frozen=True)
class Stuck:
    name: str
    server_id: str
    reason: str


def other_hosts(conn: Any, host: str) -> list[str]:
    """Enabled, running nova-computes other than `host`: where instances can go."""
    return [
        service.host
        for service in conn.compute.services(binary="nova-compute")
        if service.host != host and service.status == "enabled" and service.state == "up"
    ]


def drain(conn: Any, host: str, progress: Progress) -> tuple[list[Moved], list[Stuck]]:
    service = cloudapi.compute_service(conn, host)
    if service is None:
        raise DietStackError(
            f"Nova has no nova-compute on {host}", hint="`dietstack node list` shows the nodes"
        )
    targets = other_hosts(conn, host)
    servers = cloudapi.instances_on(conn, host)
    if servers and not targets:
        raise DietStackError(
            f"no other node can take {host}'s {len(servers)} instance(s); nothing was changed",
            hint="add a node (`dietstack node add`) or undrain one first",
        )
    progress.total = 1 + len(servers)
    progress.step(f"{host}: disabling nova-compute (nothing new is scheduled there)")
    conn.compute.disable_service(service, disabled_reason=REASON)
    progress.done(f"disabled; {len(servers)} instance(s) to move to {', '.join(targets)}")
    moved: list[Moved] = []
    stuck: list[Stuck] = []
    for index, server in enumerate(servers, start=1):
        progress.step(f"{host}: moving {server.name} ({index}/{len(servers)}, {server.status})")
        result = move(conn, server, host, progress.activity)
        if isinstance(result, Moved):
            moved.append(result)
            progress.done(f"{result.how} migration to {result.target}")
        else:
            stuck.append(result)
            progress.done(f"stays: {result.reason}")
    return moved, stuck


def undrain(conn: Any, host: str) -> None:
    service = cloudapi.compute_service(conn, host)
    if service is None:
        raise DietStackError(
            f"Nova has no nova-compute on {host}", hint="`dietstack node list` shows the nodes"
        )
    # A node evacuated while it was gone, back again (its stale guests removed by
    # its own nova-compute): Nova waits for it again.
    if getattr(service, "is_forced_down", False):
        conn.compute.update_service_forced_down(service, forced=False)
    conn.compute.enable_service(service)


def move(conn: Any, server: Any, host: str, show: Callable[[str], None]) -> Moved | Stuck:
    """Move one instance off `host`, live if it runs, cold if it is stopped."""
    started = time.monotonic()
    if server.status not in (*LIVE, *COLD):
        reason = f"it is {server.status}; only running, paused and stopped instances move"
        return Stuck(server.name, server.id, reason)
    earlier = {migration.id for migration in _migrations(conn, server)}
    try:
        if server.status in LIVE:
            how = "live"
            conn.compute.live_migrate_server(server, host=None, block_migration="auto")
            current = _wait_settled(conn, server, earlier, LIVE, show)
        else:
            how = "cold"
            conn.compute.migrate_server(server)
            current = _wait_settled(conn, server, earlier, ("VERIFY_RESIZE", *COLD), show)
            if current.status == "VERIFY_RESIZE":
                conn.compute.confirm_server_resize(current)
                current = _wait_settled(conn, server, earlier, COLD, show)
    except (openstack.exceptions.SDKException, MoveFailed) as exc:
        return Stuck(server.name, server.id, str(exc))
    if current.compute_host == host:
        return Stuck(server.name, server.id, "Nova left it where it was")
    return Moved(server.name, current.compute_host, how, time.monotonic() - started)


class MoveFailed(Exception):
    pass


#: Migration states Nova ends a failed move in.
FAILED = ("error", "failed", "cancelled")
DONE = ("completed", "confirmed", "finished")


def _migrations(conn: Any, server: Any) -> list[Any]:
    return list(conn.compute.migrations(instance_uuid=server.id))


def _wait_settled(
    conn: Any, server: Any, earlier: set[Any], settled: tuple[str, ...], show: Callable[[str], None]
) -> Any:
    """The server once its new migration has ended and no task runs on it."""
    deadline = time.monotonic() + MOVE_TIMEOUT
    while time.monotonic() < deadline:
        current = conn.compute.get_server(server.id)
        new = [m for m in _migrations(conn, server) if m.id not in earlier]
        state = new[0].status if new else "requested"
        show(f"{current.status} {current.task_state or ''} migration {state}")
        if current.status == "ERROR":
            fault = (current.fault or {}).get("message", "no fault recorded")
            raise MoveFailed(f"it went into ERROR: {fault}")
        if state in FAILED:
            raise MoveFailed(_why(conn, current, new[0]))
        idle = not current.task_state and current.status in settled
        if idle and (state in DONE or current.status == "VERIFY_RESIZE"):
            return current
        time.sleep(POLL_SECONDS)
    raise MoveFailed(f"not moved after {MOVE_TIMEOUT} s")


def _why(conn: Any, server: Any, migration: Any) -> str:
    """Nova's account of a failed move: the migration, and the failing event's message."""
    reason = f"migration to {migration.dest_compute or 'another node'} {migration.status}"
    try:
        actions = list(conn.compute.server_actions(server))
        if actions:
            latest = max(actions, key=lambda action: action.start_time or "")
            detail = conn.compute.get_server_action(latest.request_id, server)
            failed = [e for e in detail.events or () if e.get("result") == "Error"]
            if failed:
                lines = (failed[-1].get("traceback") or "").strip().splitlines()
                reason += f": {lines[-1] if lines else failed[-1].get('event')}"
    except openstack.exceptions.SDKException:
        pass
    return reason
