"""Idle CPU benchmark: what a deployed cloud burns while nobody uses it.

Run as root from the repository root on a node with a deployed cloud (no VM, no
user, after a settle):

    PYTHONPATH=benchmarks:src python benchmarks/idle.py [--seconds 300] [--settle 120]
        [--label NAME] [--node ds-node-1 ...] [--output benchmarks/results/idle.md]

Over the window it reads, at its start and end:
- each DietStack container's CPU time, from its cgroup (its watcher's health
  checks included);
- Docker's own daemons: dockerd, containerd and every containerd-shim, with the
  children they have reaped (each `docker exec` is a `runc exec`, charged here);
- the whole machine, from /proc/stat (everything that is not idle: the
  containers, Docker, the kernel's share of the firewall and the datapath);
- every other process of the machine by name (not the cloud's: an agent of the
  machine's own, kernel threads), so the whole-machine figure can be read;
- with `--node NAME` (repeatable), a compute node that is a node container on this
  machine, as a whole: the node container's cgroup (its Docker engine, its sshd)
  and the cgroup named after the node, where its Docker engine puts its
  containers (the node containers' recipe sets that cgroup parent). These are
  then left out of the figures above, but for the whole machine's.
Shares are in percent of one core, averaged over the window.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.hosts.runtime import DockerRuntime
from images import machine

GOAL_PERCENT = 5.0
DOCKER_DAEMONS = ("dockerd", "containerd", "containerd-shim-runc-v2", "containerd-shim")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    at: float
    containers: dict[str, float]
    docker: float
    machine_busy: float
    others: dict[tuple[int, str], float]
    nodes: dict[str, float]


def cgroup_cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by the cgroup of process `pid` (cgroup v1 or v2)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            usage = Path(f"/sys/fs/cgroup/cpuacct{path}/cpuacct.usage")
            if usage.exists():
                return int(usage.read_text()) / 1e9
        if controllers == "":
            stat = Path(f"/sys/fs/cgroup{path}/cpu.stat")
            if stat.exists():
                for row in stat.read_text().splitlines():
                    if row.startswith("usage_usec "):
                        return int(row.split()[1]) / 1e6
    return None


def cgroup_tree_cpu_seconds(path: str) -> float:
    """CPU seconds used so far by the cgroup at `path` and everything under it."""
    v1 = Path(f"/sys/fs/cgroup/cpuacct{path}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    v2 = Path(f"/sys/fs/cgroup{path}/cpu.stat")
    if v2.exists():
        for row in v2.read_text().splitlines():
            if row.startswith("usage_usec "):
                return int(row.split()[1]) / 1e6
    return 0.0


def process_cpu_seconds(pid: int, with_children: bool = True) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17 of stat (11-14 after the name).
    used = int(fields[11]) + int(fields[12])
    if with_children:
        used += int(fields[13]) + int(fields[14])
    return used / TICKS


def docker_pids(inside: tuple[str, ...] = ()) -> list[int]:
    """Docker's daemons and shims, but not those inside the containers `inside`
    (full ids: node containers, measured as a whole)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        if any(ident in cgroup for ident in inside):
            continue  # a node's own Docker engine
        if name in DOCKER_DAEMONS or name.startswith("containerd-shim"):
            pids.append(int(entry.name))
    return pids


def other_processes(nodes: tuple[str, ...] = ()) -> dict[tuple[int, str], float]:
    """CPU seconds of each process outside every container, Docker's daemons and
    the `nodes`' containers (its own, not its children's: those are counted where
    they ran)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroup = (entry / "cgroup").read_text()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if "docker" in cgroup or name in DOCKER_DAEMONS or name.startswith("containerd-shim"):
            continue
        if any(f":/{node}/" in cgroup for node in nodes):
            continue
        pid = int(entry.name)
        found[(pid, name)] = process_cpu_seconds(pid, with_children=False)
    return found


def machine_busy_seconds() -> float:
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user
    return (sum(fields) - idle - guest) / TICKS


def container_cpu_seconds(runtime: DockerRuntime, name: str) -> float | None:
    pids = runtime.pids(name)
    return cgroup_cpu_seconds(pids[0]) if pids else None


def sample(runtime: DockerRuntime, label: str, nodes: dict[str, str]) -> Sample:
    """`nodes`: node container name -> its full id."""
    containers = {}
    for name, state in runtime.containers(label).items():
        used = container_cpu_seconds(runtime, name) if state.running else None
        if used is not None:
            containers[name] = used
    in_nodes = {
        name: (container_cpu_seconds(runtime, name) or 0.0) + cgroup_tree_cpu_seconds(f"/{name}")
        for name in nodes
    }
    docker = sum(process_cpu_seconds(pid) for pid in docker_pids(tuple(nodes.values())))
    return Sample(
        time.monotonic(),
        containers,
        docker,
        machine_busy_seconds(),
        other_processes(tuple(nodes)),
        in_nodes,
    )


def shares(start: Sample, end: Sample) -> tuple[dict[str, float], float, float]:
    """Percent of one core per container, for Docker's daemons, for the machine."""
    window = end.at - start.at

    def percent(seconds: float) -> float:
        return 100 * seconds / window

    per_container = {
        name: percent(end.containers[name] - used)
        for name, used in start.containers.items()
        if name in end.containers
    }
    return (
        per_container,
        percent(end.docker - start.docker),
        percent(end.machine_busy - start.machine_busy),
    )


def node_shares(start: Sample, end: Sample) -> dict[str, float]:
    """Percent of one core per node container, everything in it."""
    window = end.at - start.at
    return {
        name: 100 * (end.nodes[name] - used) / window
        for name, used in start.nodes.items()
        if name in end.nodes
    }


def others_by_name(start: Sample, end: Sample) -> dict[str, float]:
    """Percent of one core of the other processes that lived through the window, by name."""
    window = end.at - start.at
    by_name: dict[str, float] = {}
    for key, used in end.others.items():
        if key in start.others:
            by_name[key[1]] = by_name.get(key[1], 0.0) + 100 * (used - start.others[key]) / window
    return by_name


def report(
    per_container: dict[str, float],
    docker: float,
    whole: float,
    seconds: int,
    label: str,
    others: dict[str, float],
    nodes: dict[str, float],
) -> str:
    containers = sum(per_container.values())
    busiest = sorted(others.items(), key=lambda item: -item[1])[:5]
    lines = [
        f"# Idle CPU benchmark ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}. Window: {seconds} s, containers labelled `{label}`.",
        "Shares are percent of one core, averaged over the window.",
        "",
        "| measure | % of one core | goal |",
        "|---|---|---|",
        f"| whole machine (/proc/stat) | {whole:.1f} | <= {GOAL_PERCENT:.0f} |",
        f"| the containers (cgroups) | {containers:.1f} | - |",
        f"| Docker's daemons and shims (with reaped `runc`) | {docker:.1f} | - |",
        f"| the cloud: its containers and Docker | {containers + docker:.1f} | - |",
        f"| other processes of the machine (not the cloud's) | {sum(others.values()):.1f} | - |",
        "",
        "The busiest other processes: "
        + ", ".join(f"{name} {share:.2f}" for name, share in busiest)
        + ". The rest of the whole-machine figure is the kernel's own work (interrupts,"
        " the firewall's and the switch's packets) and processes too short to sample.",
        "",
        "| container | % of one core |",
        "|---|---|",
        *(
            f"| {name} | {share:.2f} |"
            for name, share in sorted(per_container.items(), key=lambda item: -item[1])
        ),
    ]
    if nodes:
        lines += [
            "",
            "Compute nodes (node containers on this machine), each as a whole: its",
            "containers, its Docker engine and its sshd. Left out of the figures above",
            "but for the whole machine's.",
            "",
            "| compute node | % of one core |",
            "|---|---|",
            *(f"| {name} | {share:.2f} |" for name, share in sorted(nodes.items())),
        ]
    return "\n".join(lines) + "\n"


def full_id(container: str) -> str:
    inspected = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", container], capture_output=True, text=True
    )
    if inspected.returncode != 0:
        raise SystemExit(f"no container {container}: {inspected.stderr.strip()}")
    return inspected.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--settle", type=int, default=0, help="wait this long first")
    parser.add_argument("--label", default=LABEL_CONTAINER, help="which containers to list")
    parser.add_argument("--output", type=Path)
    parser.add_argument(
        "--node", action="append", default=[], help="a node container to measure as a whole"
    )
    args = parser.parse_args()
    runtime = DockerRuntime.connect()
    nodes = {name: full_id(name) for name in args.node}
    if args.settle:
        print(f"settling for {args.settle} s")
        time.sleep(args.settle)
    print(f"measuring for {args.seconds} s")
    start = sample(runtime, args.label, nodes)
    time.sleep(args.seconds)
    end = sample(runtime, args.label, nodes)
    per_container, docker, whole = shares(start, end)
    others = others_by_name(start, end)
    text = report(
        per_container, docker, whole, args.seconds, args.label, others, node_shares(start, end)
    )
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
