"""VM benchmark on a deployed cloud: server create -> ACTIVE and -> answering ping on
a floating IP (median of 5), volume create + attach, and the idle memory of the
whole cloud (compute included) with no VM running.

Run as root on the machine to measure, after `dietstack deploy`:

    python benchmarks/vm.py [--runs 5] [--output benchmarks/results/vm.md]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path

from deploy import container_memory, memory_table
from dietstack.apis import cloudrest
from dietstack.app.cloud import deployed_env
from dietstack.engine import cloudsetup, settings
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import verifysteps
from dietstack.ops.verifysteps import Verification
from images import machine


def one_vm(v: Verification, number: int) -> tuple[float, float, float]:
    """Seconds to ACTIVE, to ping on a floating IP, and for volume create + attach."""
    started = time.monotonic()
    verifysteps.boot(v, f"bench-{number}")
    active = time.monotonic() - started
    verifysteps.floating_ip(v)
    pinged = time.monotonic() - started
    return active, pinged, attach_volume(v)


def attach_volume(v: Verification) -> float:
    project = v.demo.current_project_id
    base = v.url(8776, f"/v3/{project}")
    started = time.monotonic()
    body = {"volume": {"size": 1}}
    created = cloudrest.post(v.demo, f"{base}/volumes", body, "cinder-api")["volume"]
    volume_url = f"{base}/volumes/{created['id']}"

    def status(wanted: str) -> bool:
        volume = cloudrest.get(v.demo, volume_url, "cinder-api")["volume"]
        return bool(volume["status"] == wanted)

    verifysteps.wait_for("available", lambda: status("available"), 120, 0.5)
    attach = v.url(8774, f"/v2.1/servers/{v.server_id}/os-volume_attachments")
    cloudrest.post(v.demo, attach, {"volumeAttachment": {"volumeId": created["id"]}}, "nova-api")
    verifysteps.wait_for("in-use", lambda: status("in-use"), 180, 0.5)
    seconds = time.monotonic() - started
    cloudrest.delete(v.demo, f"{attach}/{created['id']}", "nova-api")
    verifysteps.wait_for("available", lambda: status("available"), 180, 1)
    cloudrest.delete(v.demo, volume_url, "cinder-api")
    return seconds


def cleanup(v: Verification) -> None:
    for step in reversed(v.cleanups):
        step()
    v.cleanups.clear()
    servers = v.url(8774, "/v2.1/servers")
    verifysteps.wait_for(
        "servers to be deleted",
        lambda: not cloudrest.get(v.demo, servers, "nova-api")["servers"],
        180,
        2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=int, default=60)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/vm.md"))
    parser.add_argument("--config", type=Path, default=settings.DEFAULT_PATH)
    args = parser.parse_args()
    env = deployed_env(args.config)
    results = []
    for number in range(args.runs):
        v = Verification(env, cloudsetup.demo_connection(env))
        try:
            results.append(one_vm(v, number))
        finally:
            cleanup(v)
    time.sleep(args.settle)
    memory = container_memory(DockerRuntime.connect())
    active = statistics.median(r[0] for r in results)
    pinged = statistics.median(r[1] for r in results)
    attached = statistics.median(r[2] for r in results)
    pss = sum(p for _, p in memory.values()) / 1024
    rss = sum(r for r, _ in memory.values()) / 1024
    lines = [
        f"# VM benchmark ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}; hypervisor `{env.hypervisor}` (QEMU emulation where KVM "
        f"guests do not run), OVS datapath `{env.ovs_datapath}`.",
        "",
        f"| measure (median of {args.runs}) | result |",
        "|---|---|",
        f"| server create -> ACTIVE (tiny image, m1.tiny) | {active:.1f} s |",
        f"| server create -> floating IP answers ping from the host | {pinged:.1f} s |",
        f"| 1 GB volume create + attach (NFS) | {attached:.1f} s |",
        f"| idle memory of the whole cloud, no VM (PSS) | {pss:.0f} MiB (goal <= 2560 MiB) |",
        f"| idle memory, RSS counted per process | {rss:.0f} MiB |",
        "",
        "| run | ACTIVE s | ping s | volume s |",
        "|---|---|---|---|",
        *(f"| {i + 1} | {a:.1f} | {p:.1f} | {vol:.1f} |" for i, (a, p, vol) in enumerate(results)),
        "",
        *memory_table(memory),
    ]
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
