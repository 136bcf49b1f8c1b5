"""Upgrade benchmark of an all-in-one cloud: OpenStack 2026.1 to 2026.2 in one run.

Run as root from the repository root on a deployed 2026.1 all-in-one cloud, after
`dietstack image add tiny`:

    PYTHONPATH=benchmarks:. python benchmarks/upgrade.py [--config PATH] [--settle 90]
        [--output benchmarks/results/upgrade.md]

It boots a tiny server with a floating IP, lets the cloud settle and reads the PSS
of every container (2026.1, idle but for that server); then runs `dietstack
upgrade` while pinging the floating IP every 0.2 s and asking every API every
0.5 s; notes whether the guest's QEMU process is the one from before (the guest was
never restarted); lets the cloud settle and reads the PSS again (2026.2).
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

from tests.integration.upgrading import ApiWatch

from deploy import container_memory
from dietstack.apis import cloudapi
from dietstack.app.cloud import deployed_env
from dietstack.engine import cloudsetup, settings
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import verifysteps
from dietstack.ops.icmp import PingWatch, ping
from dietstack.ops.verifysteps import Verification
from images import machine


def qemu_pids(runtime: DockerRuntime) -> list[str]:
    code, out = runtime.exec("libvirt", ["sh", "-c", "pgrep -f qemu-system || true"])
    return sorted(out.split()) if code == 0 else []


def pss_by_container(runtime: DockerRuntime) -> dict[str, float]:
    return {name: pss / 1024 for name, (_, pss) in container_memory(runtime).items()}


def report(
    figures: dict[str, object],
    before: dict[str, float],
    after: dict[str, float],
    gaps: dict[str, float],
    upgrade_out: str,
) -> str:
    steps = [line for line in upgrade_out.splitlines() if line.startswith("  ") and "s" in line]
    lines = [
        f"# Upgrade benchmark ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}. An all-in-one cloud with one tiny server (floating IP).",
        "",
        "| measure | result |",
        "|---|---|",
        f"| `dietstack upgrade` 2026.1 -> 2026.2, whole | {figures['upgrade']:.0f} s |",
        f"| longest gap in the server's ping (every 0.2 s) | {figures['ping_gap']:.1f} s |",
        f"| the guest's QEMU process the same before and after | {figures['same_qemu']} |",
        f"| idle PSS, all containers, 2026.1 | {sum(before.values()):.0f} MiB |",
        f"| idle PSS, all containers, 2026.2 | {sum(after.values()):.0f} MiB |",
        "",
        "Time per step, as `dietstack upgrade` printed it:",
        "",
        "```",
        *steps,
        "```",
        "",
        "Longest time each API gave no answer (asked every 0.5 s; 0 = always answered):",
        "",
        "| API | seconds |",
        "|---|---|",
        *(f"| {name} | {gap:.1f} |" for name, gap in sorted(gaps.items())),
        "",
        "Idle PSS per container that changed by 5 MiB or more (MiB):",
        "",
        "| container | 2026.1 | 2026.2 |",
        "|---|---|---|",
        *(
            f"| {name} | {before.get(name, 0):.0f} | {after.get(name, 0):.0f} |"
            for name in sorted(set(before) | set(after))
            if abs(before.get(name, 0) - after.get(name, 0)) >= 5
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=settings.DEFAULT_PATH)
    parser.add_argument("--settle", type=int, default=90)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/upgrade.md"))
    args = parser.parse_args()
    runtime = DockerRuntime.connect()
    env = deployed_env(args.config)
    v = Verification(env, cloudsetup.demo_connection(env))
    try:
        verifysteps.boot(v, "bench-upgrade")
        verifysteps.floating_ip(v)
        address = str(v.floating_ip)
        verifysteps.wait_for("the floating IP to answer", lambda: ping(address), 180)
        time.sleep(args.settle)
        before = pss_by_container(runtime)
        guests = qemu_pids(runtime)
        started = time.monotonic()
        with ExitStack() as watches:
            watch = watches.enter_context(PingWatch(address))
            apis = watches.enter_context(ApiWatch(env, cloudapi.ca_file(env)))
            done = subprocess.run(
                ["dietstack", "--config", str(args.config), "upgrade"],
                capture_output=True,
                text=True,
            )
        figures: dict[str, object] = {"upgrade": time.monotonic() - started}
        print(done.stdout[-4000:], done.stderr[-3000:])
        if done.returncode != 0:
            raise SystemExit("the upgrade failed")
        figures["ping_gap"] = watch.longest_gap()
        figures["same_qemu"] = "yes" if qemu_pids(runtime) == guests and guests else "no"
        time.sleep(args.settle)
        after = pss_by_container(runtime)
    finally:
        for cleanup in reversed(v.cleanups):
            cleanup()
    text = report(figures, before, after, apis.longest_gaps(), done.stdout)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
