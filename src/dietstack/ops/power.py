"""`dietstack stop` and `dietstack start`: the whole cloud down for the night, and back.

stop shuts the running instances down through Nova first (the guest gets the ACPI
power button; Nova waits for it, then pulls the plug), writes down which ones ran,
then stops every container in reverse order: the compute nodes first, while the
control node's services still answer them, then the control node, its firewall last.
Docker's restart policy (unless-stopped) keeps stopped containers stopped across a
reboot, so a stopped cloud stays down until `dietstack start`.

start is deploy's own converge (stopped containers start in order, each waited on
until healthy, then until Nova's services report in), followed by starting exactly
the instances stop wrote down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import openstack.exceptions

from dietstack import services
from dietstack.engine.converge import LABEL_CONTAINER, LABEL_SERVICE
from dietstack.errors import DietStackError
from dietstack.hosts import files
from dietstack.hosts.dockerdata import ContainerState
from dietstack.hosts.runtime import DockerRuntime
from dietstack.render import Env

#: Which instances ran when the cloud was stopped (in the control node's state dir).
STOPPED_FILE = "stopped-instances.json"
#: Nova's own clean shutdown waits up to 60 s (shutdown_timeout) before it powers off.
SHUTDOWN_TIMEOUT = 240
START_TIMEOUT = 300
#: How long a daemon may take to exit on SIGTERM (MariaDB flushes its buffers).
CONTAINER_STOP_SECONDS = 30


def stopped_file(state_dir: Path) -> Path:
    return state_dir / STOPPED_FILE


def remembered(state_dir: Path) -> list[str]:
    try:
        data = json.loads(stopped_file(state_dir).read_text())
    except FileNotFoundError:
        return []
    except json.JSONDecodeError:
        raise DietStackError(
            f"{stopped_file(state_dir)} is damaged (not JSON)",
            hint="start the instances by hand (`openstack server start ID`), then delete it",
        ) from None
    return [str(ident) for ident in data.get("instances", [])]


def remember(state_dir: Path, instances: Iterable[str]) -> None:
    """Add to what is written down: a second stop (nothing running) keeps the list."""
    known = remembered(state_dir)
    merged = known + [ident for ident in instances if ident not in known]
    files.write_atomic(stopped_file(state_dir), json.dumps({"instances": merged}, indent=2) + "\n")


def forget(state_dir: Path) -> None:
    stopped_file(state_dir).unlink(missing_ok=True)


# --- instances -------------------------------------------------------------------


def wait_for_status(
    conn: Any, instances: list[str], wanted: str, timeout: float, what: str
) -> list[str]:
    """Wait until every instance has `wanted` status; returns those that failed
    (status ERROR, or gone)."""
    deadline = time.monotonic() + timeout
    waiting, failed = list(instances), []
    while waiting:
        for ident in list(waiting):
            try:
                status = conn.compute.get_server(ident).status
            except openstack.exceptions.NotFoundException:
                status = "gone"
            if status == wanted:
                waiting.remove(ident)
            elif status in ("ERROR", "gone"):
                waiting.remove(ident)
                failed.append(f"{ident} ({status})")
        if waiting and time.monotonic() > deadline:
            raise DietStackError(
                f"timed out after {timeout:.0f} s waiting for {len(waiting)} instance(s) to "
                f"{what}: {', '.join(waiting)}",
                hint="`openstack server show ID` tells why; run the command again",
            )
        if waiting:
            time.sleep(2)
    return failed


def running_instances(conn: Any) -> list[str]:
    """Every running instance of every project."""
    return [server.id for server in conn.compute.servers(all_projects=True, status="ACTIVE")]


def shut_down_instances(conn: Any, instances: list[str], say: Callable[[str], None]) -> None:
    """Shut the instances down through Nova and wait until they are off."""
    if not instances:
        say("No instance is running.")
        return
    say(f"Shutting down {len(instances)} instance(s) through Nova")
    for ident in instances:
        conn.compute.stop_server(ident)
    failed = wait_for_status(conn, instances, "SHUTOFF", SHUTDOWN_TIMEOUT, "shut down")
    if failed:
        say(f"Note: these did not shut down cleanly: {', '.join(failed)}")


def start_instances(conn: Any, instances: list[str], say: Callable[[str], None]) -> list[str]:
    """Start the instances stop wrote down (those still there and shut off); returns
    the ones that could not be started."""
    shut_off, problems = [], []
    for ident in instances:
        try:
            server = conn.compute.get_server(ident)
        except openstack.exceptions.NotFoundException:
            problems.append(f"{ident} (deleted meanwhile)")
            continue
        if server.status == "SHUTOFF":
            shut_off.append(ident)
    if not shut_off:
        return problems
    say(f"Starting the {len(shut_off)} instance(s) that ran before `dietstack stop`")
    for ident in shut_off:
        conn.compute.start_server(ident)
    return problems + wait_for_status(conn, shut_off, "ACTIVE", START_TIMEOUT, "start")


# --- containers ------------------------------------------------------------------


def stop_order(env: Env, found: dict[str, ContainerState]) -> list[str]:
    """The node's running containers, last started first: by service (firewall last),
    then by their order in the service."""
    services_order = [service.name for service in services.SERVICES]
    containers_order = [container.name for container in services.all_containers(env)]

    def rank(name: str) -> tuple[int, int]:
        service = found[name].labels.get(LABEL_SERVICE, "")
        by_service = services_order.index(service) if service in services_order else 0
        by_name = containers_order.index(name) if name in containers_order else 0
        return by_service, by_name

    running = [name for name, state in found.items() if state.running]
    return sorted(running, key=rank, reverse=True)


def stop_containers(runtime: DockerRuntime, env: Env, node: str, say: Callable[[str], None]) -> int:
    """Stop the node's DietStack containers in reverse order; returns how many."""
    order = stop_order(env, runtime.containers(LABEL_CONTAINER))
    for index, name in enumerate(order, 1):
        started = time.monotonic()
        runtime.stop(name, timeout=CONTAINER_STOP_SECONDS)
        say(f"[{index}/{len(order)}] {node}: stopped {name} ({time.monotonic() - started:.1f} s)")
    return len(order)
