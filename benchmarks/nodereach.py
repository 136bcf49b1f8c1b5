"""How a command reaches the compute nodes: no-change `deploy` time and SSH logins
per node, on a multi-node cloud of node containers (tests/integration/nodebox.py).

    PYTHONPATH=benchmarks:. python benchmarks/nodereach.py --config FILE \\
        [--runs 3] [--readd NODE --key FILE] [--output benchmarks/results/nodereach.md]

Logins are counted in each node container's sshd log ("Accepted publickey"). Before
each run the shared SSH connection of the command before is left idle past its 60 s,
so every run opens its connections afresh. With --readd, `node add` of a node that is
in the cloud already is timed and its logins counted the same way.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import time
from pathlib import Path

from deploy import dietstack
from dietstack.engine import inventory
from dietstack.hosts.sshhost import SshTarget
from images import machine

#: ssh's ControlPersist (hosts/sshhost.py) plus a margin.
IDLE_SECONDS = 65


def logins(node: str) -> int:
    logs = subprocess.run(["docker", "logs", node], capture_output=True, text=True)
    return (logs.stdout + logs.stderr).count("Accepted publickey")


def timed(config: Path, nodes: list[str], *args: str) -> tuple[float, dict[str, int]]:
    """Seconds the command took, and the SSH logins it made on each node."""
    time.sleep(IDLE_SECONDS)
    before = {node: logins(node) for node in nodes}
    seconds = dietstack(config, *args)
    return seconds, {node: logins(node) - before[node] for node in nodes}


def readd_args(target: SshTarget, key: Path, tunnel_interface: str) -> list[str]:
    args = ["node", "add", target.host, "--identity", str(key), "--port", str(target.port)]
    return args + (["--tunnel-interface", tunnel_interface] if tunnel_interface else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--readd", default="", help="a node to add again, timed")
    parser.add_argument("--key", type=Path, default=None, help="its SSH private key")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    records = inventory.load(inventory.path_for(args.config), "")
    nodes = [record.name for record in records]
    lines = [
        f"# Reaching the nodes ({datetime.date.today()}, {machine()})",
        "",
        f"{len(nodes)} compute node(s): {', '.join(nodes)}",
        "",
        "| command | seconds | SSH logins per node |",
        "|---|---|---|",
    ]
    for run in range(args.runs):
        seconds, made = timed(args.config, nodes, "deploy")
        lines.append(f"| no-change deploy, run {run + 1} | {seconds:.1f} | {made} |")
    if args.readd:
        record = inventory.named(records, args.readd)
        add = readd_args(record.ssh, args.key or Path(), record.tunnel_interface)
        seconds, made = timed(args.config, nodes, *add)
        lines.append(f"| node add {record.name} (in the cloud already) | {seconds:.1f} | {made} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
