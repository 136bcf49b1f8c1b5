"""Are Nova's, Cinder's and Heat's daemons serving, not just running?

A daemon's container is healthy as soon as it talks to RabbitMQ, but nova-compute
only takes work once it has set up its host, and a build scheduled to it before
that fails. Where two daemons share one process (the scheduler and the conductor,
Cinder's scheduler and volume service, Heat's APIs and engine) the container's
health speaks for both,
and only their own reports tell one from the other. Each daemon reports to its
project's service list every few seconds once it serves: a report newer than its
container's start means it is serving again (after a deploy, a reboot or a
restart of the Docker engine). The reports travel through RabbitMQ: when RabbitMQ
started again (new certificates), a daemon whose report is older than that may
still be reconnecting, and the scheduler takes it for down a minute later, so
such a report does not count either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dietstack import services
from dietstack.apis import cloudapi, cloudrest
from dietstack.errors import DietStackError
from dietstack.hosts.dockerdata import ContainerState, parse_time
from dietstack.render import Env
from dietstack.services import cinder, heat, nova

#: The daemons that report to their project's service list, and the container each
#: runs in (a scheduler runs in the process of its project's conductor or volume service,
#: Heat's engine in its APIs' process).
REPORTING = {
    "nova-conductor": "nova-conductor",
    "nova-scheduler": "nova-conductor",
    "nova-compute": "nova-compute",
    "cinder-scheduler": "cinder-volume",
    "cinder-volume": "cinder-volume",
    "heat-engine": "heat-api",
}


@dataclass(frozen=True)
class ServiceRow:
    name: str
    state: str  # serving | starting | down | missing

    @property
    def ok(self) -> bool:
        return self.state == "serving"


def _host(host: object) -> str:
    """The node of a service's host: cinder-volume reports as HOST@BACKEND."""
    return str(host).split("@", 1)[0]


def _reported_at(service: dict[str, Any]) -> datetime:
    """A row's last report: its creation until its first update (Heat creates an
    engine's row when it starts and updates it a minute later)."""
    return parse_time(service.get("updated_at") or service.get("created_at") or "1970-01-01")


def rows(
    listed: list[dict[str, Any]],
    containers: dict[str, ContainerState],
    node: str,
    expected: tuple[str, ...] = tuple(REPORTING),
    bus_started: str = "",
) -> list[ServiceRow]:
    """One row per reporting daemon the node runs, from the services' lists;
    `bus_started` is when RabbitMQ's container started ("" to leave it out)."""
    result = []
    for name in expected:
        container = containers.get(REPORTING.get(name, name))
        reports = [s for s in listed if s.get("binary") == name and _host(s.get("host")) == node]
        if container is None or not container.started_at or not reports:
            result.append(ServiceRow(name, "missing"))
            continue
        started = parse_time(container.started_at)
        if bus_started:
            started = max(started, parse_time(bus_started))
        newest = max(reports, key=_reported_at)
        reported = _reported_at(newest)
        # Heat's list names it "status", Nova's and Cinder's "state".
        if (newest.get("state") or newest.get("status")) != "up":
            state = "down"
        elif reported < started:
            state = "starting"
        else:
            state = "serving"
        result.append(ServiceRow(name, state))
    return result


def expected(node: Env) -> tuple[str, ...]:
    """The reporting daemons this node runs."""
    names = {container.name for container in services.all_containers(node)}
    return tuple(binary for binary, name in REPORTING.items() if name in names)


#: Each project's service list: (its daemons' prefix, port, path, API container).
#: Heat's is answered by the engine itself, so a dead engine leaves only Heat unknown.
LISTS = (
    ("nova-", nova.PORT, "/v2.1/os-services", "nova-api"),
    ("cinder-", cinder.PORT, "/v3/{project}/os-services", "cinder-api"),
    ("heat-", heat.PORT, "/v1/{project}/services", "heat-api"),
)


#: Each project's service list by its daemons' prefix; None where it could not be read.
Listed = dict[str, list[dict[str, Any]] | None]


def fetch(admin: Env, names: Iterable[str] = tuple(REPORTING)) -> Listed:
    """The service lists of the projects of these daemons, asked once with the
    admin's Env (the control node's): one list answers for every node."""
    wanted = [entry for entry in LISTS if any(name.startswith(entry[0]) for name in names)]
    try:
        conn = cloudapi.admin(admin)
    except DietStackError:
        return {prefix: None for prefix, *_ in wanted}
    listed: Listed = {}
    for prefix, port, path, api in wanted:
        url = admin.url(port, path.format(project=conn.current_project_id))
        try:
            listed[prefix] = cloudrest.get(conn, url, api).get("services", [])
        except DietStackError:
            listed[prefix] = None
    return listed


def node_rows(
    listed: Listed, node: Env, containers: dict[str, ContainerState], bus_started: str = ""
) -> list[ServiceRow]:
    """Rows for one node from the lists; a project's rows are "unknown" where its
    list (or Keystone) could not tell."""
    names = expected(node)
    result: dict[str, ServiceRow] = {}
    for prefix, *_ in LISTS:
        mine = tuple(name for name in names if name.startswith(prefix))
        if not mine:
            continue
        reported = listed.get(prefix)
        if reported is None:
            result |= {name: ServiceRow(name, "unknown") for name in mine}
            continue
        result |= {
            row.name: row for row in rows(reported, containers, node.node, mine, bus_started)
        }
    return [result[name] for name in names]


def collect(
    admin: Env, node: Env, containers: dict[str, ContainerState], bus_started: str = ""
) -> list[ServiceRow]:
    """Rows for one node, its projects' lists asked now (see fetch and node_rows)."""
    return node_rows(fetch(admin, expected(node)), node, containers, bus_started)
