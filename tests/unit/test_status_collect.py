"""`dietstack status` asks each project's service list once for the whole cloud, and
reads the nodes side by side, their rows in the inventory's order."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dietstack import services
from dietstack.apis import cloudapi
from dietstack.app import nodedeploy
from dietstack.app.cloud import Cloud
from dietstack.engine import servicecheck
from dietstack.errors import DietStackError
from dietstack.hosts.dockerdata import ContainerState
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import status
from dietstack.render import Env

from .helpers import make_env

STARTED = "2026-11-25T20:35:40.000000Z"
REPORTED = "2026-11-25T20:36:00.000000"
CONTROL = {"name": "node1", "management_ip": "192.168.1.20", "roles": ["control", "compute"]}


def compute_env(name: str, address: str) -> Env:
    node = {"name": name, "management_ip": address, "roles": ["compute"]}
    return make_env(node_name=name, nodes=[CONTROL, node])


class SlowNode:
    """A node's Docker engine that takes `delay` seconds per question."""

    def __init__(self, env: Env, delay: float, overlap: list[int]) -> None:
        self.env, self.delay, self.overlap = env, delay, overlap
        self.lock = threading.Lock()

    def containers(self, label: str) -> dict[str, ContainerState]:
        self.overlap.append(1)
        time.sleep(self.delay)
        self.overlap.append(-1)
        names = [c.name for c in services.all_containers(self.env) if not c.oneshot]
        return {n: ContainerState(n, "running", "healthy", {}, 0, STARTED) for n in names}

    def exec(self, name: str, command: list[str]) -> tuple[int, str]:
        return 0, ""


def most_at_once(events: list[int]) -> int:
    running = most = 0
    for event in events:
        running += event
        most = max(most, running)
    return most


def test_status_lists_services_once_and_reads_nodes_side_by_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control_env = make_env(nodes=[CONTROL])
    nodes = [compute_env(f"compute-{n}", f"192.168.1.{30 + n}") for n in range(1, 3)]
    asked: list[str] = []

    def fetch(admin: Env, names: Any = ()) -> servicecheck.Listed:
        asked.append(admin.node)
        every = [control_env, *nodes]
        return {
            "nova-": [
                {"binary": binary, "host": env.node, "state": "up", "updated_at": REPORTED}
                for env in every
                for binary in servicecheck.expected(env)
                if binary.startswith("nova-")
            ],
            "cinder-": None,  # Cinder's API did not answer
            "heat-": [],
        }

    monkeypatch.setattr(servicecheck, "fetch", fetch)
    monkeypatch.setattr(status, "probe", lambda url, verify: ("HTTP 200", 1.0))
    monkeypatch.setattr(cloudapi, "ca_file", lambda env: "/etc/openstack/dietstack-ca.pem")
    events: list[int] = []
    runtimes = [SlowNode(env, 0.2, events) for env in (control_env, *nodes)]

    def runtime(made: SlowNode) -> DockerRuntime:
        return made  # type: ignore[return-value]

    started = time.monotonic()
    report = status.collect(
        runtime(runtimes[0]),
        control_env,
        [(runtime(made), made.env) for made in runtimes[1:]],
    )
    elapsed = time.monotonic() - started

    assert asked == ["node1"]
    assert most_at_once(events) > 1, "the nodes were read one after the other"
    assert len(events) == 2 * len(runtimes), "a node's containers were listed more than once"
    assert elapsed < 0.2 * 2 * len(runtimes)
    services = {row.name: row.state for row in report.services}
    assert services["nova-conductor"] == "serving"
    assert services["cinder-volume"] == "unknown"
    assert services["heat-engine"] == "missing"
    assert [services[f"compute-{n}: nova-compute"] for n in (1, 2)] == ["serving"] * 2
    prefixes = [row.name.split(": ")[0] for row in report.containers if ": " in row.name]
    assert prefixes == sorted(prefixes) and set(prefixes) == {"compute-1", "compute-2"}
    assert report.containers[0].name == "firewall"
    assert [row.name for row in report.endpoints][-1] == "dashboard"


def test_nodes_are_reached_side_by_side_and_a_lost_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = [SimpleNamespace(name=f"compute-{n}") for n in range(1, 5)]
    events: list[int] = []

    def prepare(cloud: object, record: Any, progress: object, probe: bool) -> tuple[str, Any]:
        events.append(1)
        time.sleep(0.2)
        events.append(-1)
        if record.name == "compute-2":
            raise DietStackError("ssh: connect to host 192.168.1.32 port 22: No route to host")
        return f"deployment of {record.name}", record

    monkeypatch.setattr(nodedeploy, "prepare", prepare)
    complaints: list[str] = []
    found = nodedeploy.reachable(cast(Cloud, SimpleNamespace(records=records)), complaints.append)
    assert [str(node) for node in found] == [f"deployment of compute-{n}" for n in (1, 3, 4)]
    assert complaints == ["compute-2: ssh: connect to host 192.168.1.32 port 22: No route to host"]
    assert most_at_once(events) == len(records)
