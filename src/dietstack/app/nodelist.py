"""`dietstack node list`: every node with its health, Nova and OVN state and load.

It only looks: facts are the recorded ones and no node is changed (cloud.read_only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dietstack import services
from dietstack.apis import cloudapi
from dietstack.app.cloud import Cloud
from dietstack.app.nodedeploy import prepare
from dietstack.engine.nodeidentity import NodeRenamed
from dietstack.engine.preflight import read_meminfo
from dietstack.errors import DietStackError, NodeUnreachable
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import status
from dietstack.progress import Progress
from dietstack.render import Env


@dataclass(frozen=True)
class NodeRow:
    name: str
    address: str
    roles: str
    containers: str
    nova_compute: str
    chassis: str
    instances: str
    free_ram: str
    #: Why the node could not be looked at, when it could not.
    problem: str = ""


def _containers_healthy(runtime: DockerRuntime, env: Env) -> str:
    """How many of the node's containers are healthy, as `status` judges them."""
    wanted = [c for c in services.all_containers(env) if not c.oneshot]
    healthy = sum(1 for row in status.container_rows(runtime, env) if row.ok)
    return f"{healthy}/{len(wanted)}"


def _api_columns(conn: Any, servers: list[Any], name: str) -> tuple[str, str, str]:
    service = cloudapi.compute_service(conn, name)
    state = "-" if service is None else f"{service.status}/{service.state}"
    chassis = "up" if cloudapi.chassis_alive(conn, name) else "down"
    count = sum(1 for s in servers if s.compute_host == name)
    return state, chassis, str(count)


def rows(cloud: Cloud) -> list[NodeRow]:
    conn = cloudapi.admin(cloud.control.env)
    servers = list(conn.compute.servers(all_projects=True))
    control = cloud.control
    free = read_meminfo(control.host).get("MemAvailable", 0)
    result = [
        NodeRow(
            control.node,
            control.env.ip,
            "control,compute",
            _containers_healthy(control.runtime, control.env),
            *_api_columns(conn, servers, control.node),
            f"{free / 1024**3:.1f} GiB",
        )
    ]
    for record in cloud.records:
        columns = _api_columns(conn, servers, record.name)
        try:
            node, _ = prepare(cloud, record, Progress(total=0), probe=False)
        except DietStackError as exc:
            row = NodeRow(
                record.name, record.management_ip, "compute", health_word(exc), *columns, "-",
                problem=exc.message,
            )  # fmt: skip
            result.append(row)
            continue
        free = read_meminfo(node.host).get("MemAvailable", 0)
        healthy = _containers_healthy(node.runtime, node.env)
        result.append(
            NodeRow(
                record.name,
                record.management_ip,
                "compute",
                healthy,
                *columns,
                f"{free / 1024**3:.1f} GiB",
            )
        )
    return result


def health_word(exc: DietStackError) -> str:
    """What the HEALTHY column says of a node that could not be looked at."""
    if isinstance(exc, NodeRenamed):
        return "renamed"
    return "unreachable" if isinstance(exc, NodeUnreachable) else "error"


def render_rows(found: list[NodeRow]) -> str:
    header = ("NODE", "ADDRESS", "ROLES", "HEALTHY", "NOVA-COMPUTE", "CHASSIS", "VMS", "FREE RAM")
    table = [header] + [
        (
            r.name,
            r.address,
            r.roles,
            r.containers,
            r.nova_compute,
            r.chassis,
            r.instances,
            r.free_ram,
        )
        for r in found
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    return "\n".join(lines + [f"{r.name}: {r.problem}" for r in found if r.problem])
