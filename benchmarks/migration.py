"""Migration benchmark: live migration time and ping gap of a tiny instance, and the
time to drain a node running two instances.

Run as root on the control node of a deployed cloud with at least two compute
nodes (its settings file given), from the repository root:

    PYTHONPATH=benchmarks python benchmarks/migration.py --config FILE \\
        --nodes NODE_A NODE_B [--rounds 5] [--output benchmarks/results/migration.md]

A tiny instance of the demo project with a floating IP is live-migrated back and
forth between NODE_A and NODE_B `rounds` times. Each round is timed from the API
call to the instance being ACTIVE on the other node with no task left; the ping
gap is the longest silence of the floating IP (pinged every 0.2 s from this host)
during that time. Then two instances are booted on NODE_A and `dietstack node
drain NODE_A` is timed (NODE_A is undrained afterwards).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path
from typing import Any

import openstack

from deploy import dietstack
from dietstack.ops.icmp import PingWatch, ping
from images import machine

IMAGE = "dietstack-tiny"
FLAVOR = "m1.tiny"
NETWORK = "demo-net"


def demo_as_admin() -> Any:
    """The admin, in the demo project: may place servers on a chosen node."""
    admin = openstack.connect(cloud="admin")
    demo = admin.identity.find_project("demo")
    role = admin.identity.find_role("admin")
    user = admin.identity.find_user("admin")
    admin.identity.assign_project_role_to_user(demo, user, role)
    return openstack.connect(cloud="admin", project_name="demo")


def boot(conn: Any, name: str, node: str) -> Any:
    server = conn.compute.create_server(
        name=name,
        image_id=conn.image.find_image(IMAGE).id,
        flavor_id=conn.compute.find_flavor(FLAVOR).id,
        networks=[{"uuid": conn.network.find_network(NETWORK).id}],
        availability_zone=f"nova:{node}",
    )
    return conn.compute.wait_for_server(server, wait=600)


def with_floating_ip(conn: Any, server: Any) -> Any:
    public = conn.network.find_network("public")
    port = next(iter(conn.network.ports(device_id=server.id)))
    floating = conn.network.create_ip(floating_network_id=public.id, port_id=port.id)
    deadline = time.monotonic() + 180
    while not ping(floating.floating_ip_address):
        if time.monotonic() > deadline:
            raise SystemExit(f"{floating.floating_ip_address} never answered ping")
        time.sleep(1)
    return floating


def live_migrate(conn: Any, server: Any, target: str) -> float:
    started = time.monotonic()
    conn.compute.live_migrate_server(server, host=target, block_migration="auto")
    while True:
        current = conn.compute.get_server(server.id)
        if current.status == "ERROR":
            raise SystemExit(f"{server.name} went into ERROR migrating to {target}")
        if current.compute_host == target and not current.task_state:
            return time.monotonic() - started
        time.sleep(0.5)


def migration_rounds(conn: Any, nodes: list[str], rounds: int) -> list[tuple[float, float]]:
    server = boot(conn, "bench-migrate", nodes[0])
    floating = None
    try:
        floating = with_floating_ip(conn, server)
        address = floating.floating_ip_address
        results = []
        for number in range(rounds):
            target = nodes[(number + 1) % 2]
            with PingWatch(address) as watch:
                seconds = live_migrate(conn, server, target)
                time.sleep(3)
            results.append((seconds, watch.longest_gap()))
            print(
                f"round {number + 1}: to {target} in {seconds:.1f} s, "
                f"ping gap {watch.longest_gap():.1f} s"
            )
        return results
    finally:
        if floating is not None:
            conn.network.delete_ip(floating)
        cleanup(conn, [server])


def drain_time(conn: Any, config: Path, node: str) -> float:
    servers = [boot(conn, f"bench-drain-{number}", node) for number in (1, 2)]
    try:
        return dietstack(config, "node", "drain", node)
    finally:
        dietstack(config, "node", "undrain", node)
        cleanup(conn, servers)


def cleanup(conn: Any, servers: list[Any]) -> None:
    for server in servers:
        conn.compute.delete_server(server)
    for server in servers:
        conn.compute.wait_for_delete(server, wait=300)


def report(rounds: list[tuple[float, float]], drain: float, nodes: list[str]) -> str:
    times = [seconds for seconds, _ in rounds]
    gaps = [gap for _, gap in rounds]
    lines = [
        f"# Migration ({datetime.date.today()}, {machine()})",
        "",
        f"A tiny instance ({FLAVOR}, local disk: block migration) live-migrated between "
        f"{nodes[0]} and {nodes[1]}, {len(rounds)} times; QEMU emulation.",
        "",
        "| round | seconds | longest ping gap (s; a ping every 0.2 s, 1 s timeout: 1.2 = one"
        " lost) |",
        "|---|---|---|",
        *(f"| {n} | {t:.1f} | {g:.1f} |" for n, (t, g) in enumerate(rounds, start=1)),
        "",
        f"Median: {statistics.median(times):.1f} s per migration, "
        f"ping gap {statistics.median(gaps):.1f} s.",
        "",
        f"`dietstack node drain {nodes[0]}` with 2 running tiny instances: {drain:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--nodes", nargs=2, required=True, metavar="NODE")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    conn = demo_as_admin()
    rounds = migration_rounds(conn, args.nodes, args.rounds)
    drain = drain_time(conn, args.config, args.nodes[0])
    text = report(rounds, drain, args.nodes)
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
