"""`dietstack status`: every container and every API endpoint, in one table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import requests

from dietstack import services
from dietstack.apis import cloudapi
from dietstack.engine import servicecheck
from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.engine.servicecheck import ServiceRow
from dietstack.hosts.dockerdata import ContainerState
from dietstack.hosts.runtime import DockerRuntime
from dietstack.render import Env
from dietstack.services import horizon


@dataclass(frozen=True)
class ContainerRow:
    name: str
    state: str
    health: str

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in ("healthy", "-")


@dataclass(frozen=True)
class EndpointRow:
    name: str
    url: str
    answer: str
    latency_ms: float | None

    @property
    def ok(self) -> bool:
        return self.latency_ms is not None and not self.answer.startswith("HTTP 5")


@dataclass(frozen=True)
class Report:
    containers: list[ContainerRow]
    endpoints: list[EndpointRow]
    services: list[ServiceRow]
    #: Certificates close to their end (they do not make the cloud unhealthy yet).
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        rows: list[ContainerRow | EndpointRow | ServiceRow] = [
            *self.containers,
            *self.endpoints,
            *self.services,
        ]
        return all(row.ok for row in rows)


def probe(url: str, verify: str) -> tuple[str, float | None]:
    """What the endpoint answers, its certificate verified with the cloud's CA."""
    started = time.monotonic()
    try:
        response = requests.get(url, timeout=5, verify=verify)
    except requests.RequestException as exc:
        return f"unreachable ({exc.__class__.__name__})", None
    return f"HTTP {response.status_code}", (time.monotonic() - started) * 1000


def container_rows(
    runtime: DockerRuntime,
    env: Env,
    prefix: str = "",
    actual: dict[str, ContainerState] | None = None,
) -> list[ContainerRow]:
    """A row per container of the node; `actual` is its containers when listed already."""
    if actual is None:
        actual = runtime.containers(LABEL_CONTAINER)
    rows = []
    for container in services.all_containers(env):
        if container.oneshot:
            continue
        state = actual.get(container.name)
        if state is None:
            rows.append(ContainerRow(container.name, "missing", "-"))
            continue
        health = state.health or "-"
        if health == "starting" and container.healthcheck is not None:
            # Its watcher has no verdict yet: run the same check now.
            passed = runtime.exec(container.name, list(container.healthcheck.test))[0] == 0
            health = "healthy" if passed else "starting"
        rows.append(ContainerRow(container.name, state.status, health))
    return [replace(row, name=prefix + row.name) for row in rows]


#: Nodes read and endpoints probed at once: each waits on the network, not on a core.
AT_ONCE = 8


def collect(
    runtime: DockerRuntime, env: Env, nodes: Sequence[tuple[DockerRuntime, Env]] = ()
) -> Report:
    """The control node's containers, endpoints and Nova's, Cinder's and Heat's
    services, then each node's: the nodes and endpoints are asked side by side, and
    each project's service list once for all nodes."""
    listed = servicecheck.fetch(env)
    with ThreadPoolExecutor(AT_ONCE) as pool:
        endpoints = pool.map(lambda target: _probe_row(*target), endpoint_targets(env))
        each = [(runtime, env, ""), *((r, e, f"{e.node}: ") for r, e in nodes)]
        parts = pool.map(lambda node: _node_part(listed, *node), each)
        done = list(parts)
    rows = [row for part in done for row in part[0]]
    service_rows = [row for part in done for row in part[1]]
    return Report(rows, list(endpoints), service_rows)


def endpoint_targets(env: Env) -> list[tuple[str, str, str]]:
    """(name, URL, CA file) of every API endpoint and the dashboard."""
    verify = cloudapi.ca_file(env)
    targets = [
        (
            endpoint.service_type,
            env.url(endpoint.port, endpoint.path.split("%")[0].rstrip("/") or "/"),
            verify,
        )
        for service in services.SERVICES
        for endpoint in service.endpoints
    ]
    return [*targets, ("dashboard", horizon.url(env, horizon.LOGIN_PATH), verify)]


def _probe_row(name: str, url: str, verify: str) -> EndpointRow:
    return EndpointRow(name, url, *probe(url, verify))


def _node_part(
    listed: servicecheck.Listed, runtime: DockerRuntime, node: Env, prefix: str
) -> tuple[list[ContainerRow], list[ServiceRow]]:
    """One node's container rows and service rows, their names after `prefix`."""
    actual = runtime.containers(LABEL_CONTAINER)
    containers = container_rows(runtime, node, prefix, actual)
    served = servicecheck.node_rows(listed, node, actual)
    return containers, [replace(row, name=prefix + row.name) for row in served]


NOT_OK = {
    "starting": "started, not serving yet",
    "unknown": "its API cannot tell",
}


def render(report: Report) -> str:
    lines = [f"{'CONTAINER':<44} {'STATE':<10} HEALTH"]
    for row in report.containers:
        mark = "" if row.ok else "   <-- down"
        lines.append(f"{row.name:<44} {row.state:<10} {row.health}{mark}")
    lines.append("")
    lines.append(f"{'ENDPOINT':<16} {'URL':<40} {'ANSWER':<22} LATENCY")
    for endpoint in report.endpoints:
        latency = f"{endpoint.latency_ms:.0f} ms" if endpoint.latency_ms is not None else "-"
        mark = "" if endpoint.ok else "   <-- down"
        lines.append(
            f"{endpoint.name:<16} {endpoint.url:<40} {endpoint.answer:<22} {latency}{mark}"
        )
    lines.append("")
    lines.append(f"{'SERVICE':<44} STATE")
    for service in report.services:
        mark = "" if service.ok else f"   <-- {NOT_OK.get(service.state, 'down')}"
        lines.append(f"{service.name:<44} {service.state}{mark}")
    lines.append("")
    lines.append("All services are up." if report.healthy else "Some services are down.")
    lines.extend(f"Warning: {warning}" for warning in report.warnings)
    return "\n".join(lines)
