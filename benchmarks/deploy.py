"""Deploy benchmark: deploy time from images present, no-change redeploy time and
the idle memory of every container.

Run as root on the machine to measure; it tears down the DietStack cloud on
this host and deploys a fresh one into a new data directory:

    python benchmarks/deploy.py [--settle 120] [--output benchmarks/results/deploy.md]

Memory is read from /proc for every process of each container: RSS (what `ps`
shows; pages shared between processes count once per process) and PSS (shared
pages divided among the processes sharing them, so the PSS total is what the
cloud really takes).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.hosts.runtime import DockerRuntime
from images import machine

GOALS = {"deploy": 180.0, "redeploy": 20.0}


def dietstack(config: Path, *args: str) -> float:
    command = shutil.which("dietstack")
    argv = [command] if command else [sys.executable, "-m", "dietstack"]
    started = time.monotonic()
    subprocess.run([*argv, "--config", str(config), *args], check=True)
    return time.monotonic() - started


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; zeros if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    values = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) if rest.split() else 0
    return values.get("Rss", 0), values.get("Pss", 0)


def container_memory(runtime: DockerRuntime) -> dict[str, tuple[int, int]]:
    usage = {}
    for name in sorted(runtime.containers(LABEL_CONTAINER)):
        totals = [memory_kib(pid) for pid in runtime.pids(name)]
        usage[name] = (sum(r for r, _ in totals), sum(p for _, p in totals))
    return usage


def memory_table(memory: dict[str, tuple[int, int]]) -> list[str]:
    """A Markdown table of every container's RSS and PSS, largest PSS first."""
    return [
        "| container | RSS MiB | PSS MiB |",
        "|---|---|---|",
        *(
            f"| {name} | {rss / 1024:.0f} | {pss / 1024:.0f} |"
            for name, (rss, pss) in sorted(memory.items(), key=lambda item: -item[1][1])
        ),
    ]


def report(deploy: float, redeploy: float, memory: dict[str, tuple[int, int]], settle: int) -> str:
    rss_total = sum(r for r, _ in memory.values())
    pss_total = sum(p for _, p in memory.values())
    lines = [
        f"# Deploy benchmark ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}.",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
        f"| deploy, images present, empty data directory | {deploy:.0f} s | <= 180 s |",
        f"| redeploy with nothing changed | {redeploy:.1f} s | <= 20 s |",
        f"| idle memory, all containers (PSS) | {pss_total / 1024:.0f} MiB | - |",
        f"| idle memory, all containers (RSS, shared pages counted per process) | "
        f"{rss_total / 1024:.0f} MiB | - |",
        "",
        f"Idle memory per container, {settle} s after the deploy finished:",
        "",
        *memory_table(memory),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=int, default=120, help="seconds to wait before memory")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/deploy.md"))
    args = parser.parse_args()
    runtime = DockerRuntime.connect()
    for name in runtime.containers(LABEL_CONTAINER):
        runtime.remove(name)
    workdir = Path(tempfile.mkdtemp(prefix="dietstack-bench-"))
    config = workdir / "etc" / "settings.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"data_dir": str(workdir / "data")}))
    dietstack(config, "images", "build")
    deploy = dietstack(config, "deploy")
    redeploy = dietstack(config, "deploy")
    time.sleep(args.settle)
    text = report(deploy, redeploy, container_memory(runtime), args.settle)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
