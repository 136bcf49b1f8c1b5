"""Compute-node benchmark: memory of a multi-node cloud, per node, and `node add` times.

Run as root on the control node of a deployed cloud (its settings file given):

    python benchmarks/nodes.py --config /etc/dietstack/settings.yaml [--readd NODE]
        [--output benchmarks/results/nodes.md]

It reads the PSS of every process of every DietStack container on the control
node (from /proc) and on each compute node (through the same SSH host adapter
deploy uses, from the node's /proc). With --readd it removes NODE and adds it
again twice: once with its images deleted first (they are shipped) and once
with them present, and reports both times.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

from deploy import container_memory, dietstack
from dietstack.app.cloud import KNOWN_HOSTS, Links
from dietstack.engine import inventory
from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.engine.inventory import NodeRecord
from dietstack.hosts import hostio
from dietstack.hosts.runtime import DockerRuntime
from images import machine


def node_memory(record: NodeRecord, links: Links) -> dict[str, int]:
    """PSS in KiB of each DietStack container on a node, read from its own /proc."""
    host, runtime = links.host(record.ssh, record.name), links.runtime(record.ssh, record.name)
    usage = {}
    for name in sorted(runtime.containers(LABEL_CONTAINER)):
        total = 0
        for pid in node_pids(host, runtime, name):
            text = host.read_text(Path(f"/proc/{pid}/smaps_rollup")) or ""
            for line in text.splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        usage[name] = total
    return usage


def node_pids(host: hostio.Host, runtime: DockerRuntime, name: str) -> list[int]:
    """The container's processes as the node sees them (its own PID namespace)."""
    code, output = host.call(["docker", "top", name, "-o", "pid"])
    return [int(line) for line in output.split()[1:] if line.isdigit()] if code == 0 else []


def readd_times(
    config: Path, record: NodeRecord, links: Links, runtime: DockerRuntime
) -> tuple[float, float, int]:
    """`node add` with the node's images deleted first, and with them present; and the
    control node's PSS (KiB) while the node is out."""
    ssh = record.ssh
    args = ["--user", ssh.user, "--port", str(ssh.port)]
    if ssh.identity:
        args += ["--identity", ssh.identity]
    if record.tunnel_interface:
        args += ["--tunnel-interface", record.tunnel_interface]
    times = []
    without = 0
    for drop_images in (True, False):
        dietstack(config, "node", "remove", record.name)
        time.sleep(30)
        without = sum(pss for _, pss in container_memory(runtime).values())
        if drop_images:
            host = links.host(record.ssh, record.name)
            host.call(["sh", "-c", "docker images -q 'dietstack/*' | xargs -r docker rmi -f"])
        times.append(dietstack(config, "node", "add", ssh.host, *args))
    return times[0], times[1], without


def report(
    control: dict[str, int],
    per_node: dict[str, dict[str, int]],
    readd: tuple[float, float, int] | None,
) -> str:
    lines = [
        f"# Compute nodes ({datetime.date.today()}, {machine()})",
        "",
        "| node | containers | PSS MiB |",
        "|---|---|---|",
        f"| control node | {len(control)} | {sum(control.values()) / 1024:.0f} |",
    ]
    for name, usage in per_node.items():
        lines.append(f"| {name} | {len(usage)} | {sum(usage.values()) / 1024:.0f} |")
    if readd:
        lines += [
            "",
            f"`node add`, images absent (shipped): {readd[0]:.0f} s; "
            f"images present: {readd[1]:.0f} s",
            "",
            f"control node PSS with {len(per_node)} compute node(s): "
            f"{sum(control.values()) / 1024:.0f} MiB; with {len(per_node) - 1}: "
            f"{readd[2] / 1024:.0f} MiB",
        ]
    for name, usage in per_node.items():
        lines += ["", f"## {name}", "", "| container | PSS MiB |", "|---|---|"]
        for container, pss in sorted(usage.items(), key=lambda item: -item[1]):
            lines.append(f"| {container} | {pss / 1024:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--readd", default="", help="a node to remove and add again, timed")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    links = Links(args.config.parent / KNOWN_HOSTS)
    records = inventory.load(inventory.path_for(args.config), "")
    runtime = DockerRuntime.connect()
    readd = None
    if args.readd:
        record = inventory.named(records, args.readd)
        readd = readd_times(args.config, record, links, runtime)
        time.sleep(30)
    control = {name: pss for name, (_, pss) in container_memory(runtime).items()}
    per_node = {record.name: node_memory(record, links) for record in records}
    text = report(control, per_node, readd)
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
