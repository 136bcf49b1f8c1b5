"""Day-2 benchmark: stop and start with running instances, backup and restore.

Run as root from the repository root on a deployed all-in-one cloud with the tiny
image (`dietstack image add tiny`). It stops, starts, backs up, DESTROYS THE DATA
and restores the cloud named by --config:

    PYTHONPATH=benchmarks:. python benchmarks/day2.py [--config /etc/dietstack/settings.yaml]
        [--instances 2] [--output benchmarks/results/day2.md]

Each figure is the wall time of the `dietstack` command a user runs: stop (with
--instances tiny servers running), start (until the cloud serves and those
servers are ACTIVE again), backup without and with --volumes (one 1 GB volume-backed
server), and restore after `destroy --data` (a whole deploy included).
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

from tests.integration.conftest import run_dietstack
from tests.integration.test_deploy import demo_server, openstack, wait_for_status

from images import machine


def timed(config: Path, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    result = run_dietstack(*args, config=config)
    if result.returncode:
        raise SystemExit(f"dietstack {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return time.monotonic() - started, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/dietstack/settings.yaml"))
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    config = args.config
    names = [f"bench-day2-{n}" for n in range(args.instances)]
    for name in names:
        demo_server(name)
    stop, _ = timed(config, "stop")
    start, _ = timed(config, "start")
    for name in names:
        openstack("demo", "server", "delete", "--wait", name)
    root = openstack(
        "demo",
        "volume",
        "create",
        "--image",
        "dietstack-tiny",
        "--size",
        "1",
        "bench-root",
        "-f",
        "json",
    )["id"]
    wait_for_status("volume", root, "available")
    demo_server("bench-bfv", "--volume", root)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        plain, volumes = Path(scratch) / "plain.tar.gz", Path(scratch) / "volumes.tar.gz"
        backup, _ = timed(config, "backup", str(plain))
        backup_volumes, _ = timed(config, "backup", "--volumes", str(volumes))
        timed(config, "destroy", "--data", "--yes")
        restore, _ = timed(config, "restore", str(volumes))
        sizes = plain.stat().st_size / 2**20, volumes.stat().st_size / 2**20
    status = openstack("demo", "server", "show", "bench-bfv", "-f", "json")["status"]
    openstack("demo", "server", "delete", "--wait", "bench-bfv")
    wait_for_status("volume", root, "available")
    openstack("demo", "volume", "delete", root)
    text = "\n".join(
        [
            f"# Day-2 operations ({datetime.date.today()}, {machine()})",
            "",
            "| command | time | size |",
            "|---|---|---|",
            f"| `dietstack stop` ({args.instances} tiny servers running) | {stop:.0f} s | |",
            f"| `dietstack start` (they run again) | {start:.0f} s | |",
            f"| `dietstack backup` (tiny image, one 1 GB volume) | {backup:.0f} s "
            f"| {sizes[0]:.1f} MiB |",
            f"| `dietstack backup --volumes` | {backup_volumes:.0f} s | {sizes[1]:.1f} MiB |",
            f"| `dietstack restore` after `destroy --data` | {restore:.0f} s | |",
            "",
            f"After the restore the volume-backed server was {status}.",
            "",
        ]
    )
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
