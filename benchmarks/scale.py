"""Scale benchmark: one control node and nine compute nodes on one machine.

Run as root from the repository root; it tears down any DietStack cloud on this
host first, then builds one of ten nodes from node containers (as the multi-node
tests do, with their own sshd and Docker engine):

    PYTHONPATH=benchmarks:. python benchmarks/scale.py [--computes 9] [--instances 18]
        [--keep] [--existing] [--output benchmarks/results/scale.md]

It records the time of each `node add`, the control node's memory with every
compute node added, RabbitMQ's and the OVN southbound database's connections and
memory, the scheduler's spread of small instances booted in one request and the
time until all are ACTIVE, and the times of `dietstack status` and of `dietstack
deploy` with nothing to change. Without --keep the cloud is destroyed at the end.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import openstack
from tests.integration import nodebox
from tests.integration.conftest import run_dietstack

from deploy import container_memory
from dietstack import releases
from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images import build as image_build
from images import machine

STATE = Path("/var/lib/dietstack-scale")


def timed(*args: str, config: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    result = run_dietstack(*args, config=config)
    return time.monotonic() - started, result


def connections(port: int) -> int:
    """Established TCP connections to a port of this host (the daemons use host networking)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(out.splitlines())


def boot_all(count: int) -> tuple[float, dict[str, int], int]:
    """Boot `count` m1.tiny servers in one request: seconds to all ACTIVE, servers per
    node, and how many failed."""
    admin = openstack.connect(cloud="admin")
    # The default quota (10 instances) is below what the benchmark boots.
    admin.set_compute_quotas("demo", instances=count + 10, cores=2 * count + 10)  # type: ignore[no-untyped-call]
    conn = openstack.connect(cloud="demo")
    image = conn.image.find_image("dietstack-tiny")
    flavor = conn.compute.find_flavor("m1.tiny")
    network = conn.network.find_network("demo-net")
    started = time.monotonic()
    conn.compute.create_server(
        name="bench-scale",
        image_id=image.id,
        flavor_id=flavor.id,
        networks=[{"uuid": network.id}],
        min_count=count,
        max_count=count,
    )
    deadline = started + 1800
    while time.monotonic() < deadline:
        servers = [s for s in conn.compute.servers() if s.name.startswith("bench-scale")]
        states = collections.Counter(s.status for s in servers)
        if len(servers) == count and states["ACTIVE"] + states["ERROR"] == count:
            break
        time.sleep(2)
    seconds = time.monotonic() - started
    placed = collections.Counter(
        s.compute_host
        for s in admin.compute.servers(all_projects=True)
        if s.name.startswith("bench-scale") and s.status == "ACTIVE"
    )
    failed = sum(1 for s in servers if s.status != "ACTIVE")
    for server in servers:
        conn.compute.delete_server(server)
    for server in servers:
        conn.compute.wait_for_delete(server, wait=600)
    return seconds, dict(sorted(placed.items())), failed


def report(figures: dict[str, Any]) -> str:
    adds: list[tuple[str, float]] = figures["adds"]
    memory: dict[str, int] = figures["memory"]
    lines = [
        f"# One control node and {len(adds)} compute nodes ({datetime.date.today()}, {machine()})",
        "",
        "All nodes run on this one machine: the compute nodes are node containers with "
        "their own sshd and Docker engine; instances are emulated (QEMU).",
        "",
        "| node add | seconds |",
        "|---|---|",
        *(f"| {name} | {seconds:.0f} |" for name, seconds in adds),
        "",
        f"- control node memory with {len(adds)} compute nodes: "
        f"{sum(memory.values()) / 1024:.0f} MiB PSS in {len(memory)} containers",
        f"- RabbitMQ: {figures['amqp']} connections, {memory.get('rabbitmq', 0) / 1024:.0f} MiB",
        f"- OVN southbound: {figures['ovsdb']} connections, "
        f"{memory.get('ovn-sb-db', 0) / 1024:.0f} MiB",
        f"- {figures['instances']} m1.tiny instances in one request: all ACTIVE after "
        f"{figures['boot']:.0f} s, {figures['failed']} failed; spread: "
        + ", ".join(f"{host} {count}" for host, count in figures["spread"].items()),
        f"- `dietstack status` with {len(adds) + 1} nodes: {figures['status']:.1f} s",
        f"- `dietstack deploy` with nothing to change: {figures['deploy']:.0f} s",
        "",
        "| control container | PSS MiB |",
        "|---|---|",
        *(
            f"| {name} | {pss / 1024:.0f} |"
            for name, pss in sorted(memory.items(), key=lambda item: -item[1])
        ),
    ]
    return "\n".join(lines) + "\n"


ADDS = STATE / "node-adds.json"


def build_cloud(runtime: DockerRuntime, config: Path, computes: int) -> list[Any]:
    """A fresh control node, then each compute node added in turn; the add times
    are kept beside the cloud as they are measured."""
    for name in runtime.containers(LABEL_CONTAINER):
        runtime.remove(name)
    subprocess.run(["rm", "-rf", str(STATE)], check=True)
    config.parent.mkdir(parents=True)
    nodebox.fresh_control(run_dietstack, config, STATE / "data")
    boxes = nodebox.boxes(computes)
    base = image_build.local_tags(runtime, "auto", releases.GAZPACHO)["base"]
    key = nodebox.start_boxes(base, STATE / "nodes", boxes)
    adds: list[Any] = []
    for box in boxes:
        started = time.monotonic()
        result = nodebox.add_node(run_dietstack, config, key, box)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"node add {box.name} failed:\n{result.stderr[-3000:]}")
        print(f"node add {box.name}: {seconds:.0f} s", flush=True)
        adds.append((box.name, seconds))
        ADDS.write_text(json.dumps(adds))
    return adds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--computes", type=int, default=9)
    parser.add_argument("--instances", type=int, default=18)
    parser.add_argument("--keep", action="store_true", help="leave the cloud up")
    parser.add_argument(
        "--existing",
        action="store_true",
        help="measure the cloud a kept (or interrupted) run left, with its node add times",
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    runtime = DockerRuntime.connect()
    config = STATE / "etc" / "settings.yaml"
    if args.existing:
        adds = [tuple(item) for item in json.loads(ADDS.read_text())]
    else:
        adds = build_cloud(runtime, config, args.computes)
    run_dietstack("image", "add", "tiny", config=config)
    time.sleep(60)
    figures: dict[str, Any] = {
        "adds": adds,
        "memory": {name: pss for name, (_, pss) in container_memory(runtime).items()},
        "amqp": connections(5672),
        "ovsdb": connections(6642),
        "instances": args.instances,
    }
    figures["boot"], figures["spread"], figures["failed"] = boot_all(args.instances)
    figures["status"], _ = timed("status", config=config)
    figures["deploy"], deployed = timed("deploy", config=config)
    if deployed.returncode != 0:
        print(f"deploy failed:\n{deployed.stderr[-3000:]}")
    text = report(figures)
    print(text)
    if args.output:
        args.output.write_text(text)
    if not args.keep:
        run_dietstack("destroy", "--yes", config=config)
        nodebox.remove_all(image=False)


if __name__ == "__main__":
    main()
