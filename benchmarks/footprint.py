"""Footprint and speed benchmark of a deployed all-in-one cloud, in one run.

Run as root from the repository root after `dietstack deploy` and
`dietstack image add tiny`:

    PYTHONPATH=benchmarks:. python benchmarks/footprint.py [--config PATH] [--runs 5]
        [--settle 90] [--output benchmarks/results/footprint.md]

It stops the cloud (`dietstack stop`) to read the host's MemAvailable without it,
starts it again, runs `dietstack verify` once (timed), lets it settle, then reads
the PSS of every process of every container and MemAvailable again: the idle
cloud, with no VM. Then it times a no-change `dietstack deploy`, and boots
--runs tiny servers one after another, each timed from create to ACTIVE, to its
console showing the DHCP address, and to its floating IP answering ping.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import time
from pathlib import Path

from day2 import timed
from deploy import container_memory, memory_table
from dietstack.app.cloud import deployed_env
from dietstack.engine import cloudsetup, settings
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import verifysteps
from dietstack.ops.verifysteps import Verification
from images import machine

GOAL_PSS_MIB = 2048
GOALS = {"ACTIVE": 10.0, "verify": 60.0, "deploy": 5.0}


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("/proc/meminfo has no MemAvailable")


def one_server(v: Verification, number: int) -> tuple[float, float, float]:
    """Seconds from create to ACTIVE, to the console's DHCP line, to ping on a floating IP."""
    started = time.monotonic()
    verifysteps.boot(v, f"bench-footprint-{number}")
    active = time.monotonic() - started
    verifysteps.wait_for(
        "the console to show the DHCP address",
        lambda: f"{verifysteps.MARK} ip=" in verifysteps.console(v),
        timeout=240,
        interval=0.5,
    )
    dhcp = time.monotonic() - started
    verifysteps.floating_ip(v)
    return active, dhcp, time.monotonic() - started


def boot_servers(config: Path, runs: int) -> list[tuple[float, float, float]]:
    env = deployed_env(config)
    results = []
    for number in range(runs):
        v = Verification(env, cloudsetup.demo_connection(env))
        try:
            results.append(one_server(v, number))
        finally:
            for cleanup in reversed(v.cleanups):
                cleanup()
    return results


def report(
    figures: dict[str, float],
    memory: dict[str, tuple[int, int]],
    runs: list[tuple[float, float, float]],
    settle: int,
) -> str:
    pss = sum(p for _, p in memory.values()) / 1024
    active, dhcp, pinged = (statistics.median(r[i] for r in runs) for i in range(3))
    lines = [
        f"# Footprint and speed benchmark ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}. All-in-one cloud, dashboard included, idle {settle} s "
        "after one `dietstack verify`, no VM.",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
        f"| idle memory, every process of every container (PSS) | {pss:.0f} MiB "
        f"in {len(memory)} containers | <= {GOAL_PSS_MIB} MiB |",
        f"| host MemAvailable drop, cloud stopped -> idle | {figures['drop']:.0f} MiB | - |",
        f"| `dietstack verify` (first run after start) | {figures['verify']:.1f} s "
        f"| <= {GOALS['verify']:.0f} s |",
        f"| `dietstack deploy`, nothing to change | {figures['deploy']:.1f} s "
        f"| <= {GOALS['deploy']:.0f} s |",
        f"| server create -> ACTIVE (median of {len(runs)}) | {active:.1f} s "
        f"| <= {GOALS['ACTIVE']:.0f} s |",
        f"| server create -> console shows the DHCP address (median) | {dhcp:.1f} s | - |",
        f"| server create -> floating IP answers ping (median) | {pinged:.1f} s | - |",
        "",
        "| server | ACTIVE s | DHCP on console s | ping s |",
        "|---|---|---|---|",
        *(f"| {i + 1} | {a:.1f} | {d:.1f} | {p:.1f} |" for i, (a, d, p) in enumerate(runs)),
        "",
        *memory_table(memory),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=settings.DEFAULT_PATH)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=int, default=90)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/footprint.md"))
    args = parser.parse_args()
    timed(args.config, "stop")
    subprocess.run(["sync"], check=True)
    time.sleep(10)
    without = mem_available_mib()
    timed(args.config, "start")
    figures = {"verify": timed(args.config, "verify")[0]}
    time.sleep(args.settle)
    memory = container_memory(DockerRuntime.connect())
    figures["drop"] = without - mem_available_mib()
    figures["deploy"] = timed(args.config, "deploy")[0]
    runs = boot_servers(args.config, args.runs)
    text = report(figures, memory, runs, args.settle)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
