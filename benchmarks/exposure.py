"""Which ports of this host answer an instance and a stranger on the LAN.

On a deployed cloud: every TCP port DietStack's containers listen on (plus the
first port of each range opened on demand) is tried at every address of this
host, once from a server of the demo project on demo-net, once from a network
namespace routed through this host that is not a node. Writes what answered.

    python benchmarks/exposure.py [--output benchmarks/results/exposure.md]
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from tests.integration.stranger import lan_stranger, probe_from

from dietstack.app.cloud import deployed_env
from dietstack.engine import cloudsetup, settings
from dietstack.hosts import hostnet
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import exposure, verifysteps
from dietstack.render import Env
from images import machine


def from_instance(env: Env, targets: list[exposure.Target]) -> list[exposure.Target]:
    v = verifysteps.Verification(env, cloudsetup.demo_connection(env), probe=targets)
    try:
        verifysteps.boot(v, "bench-exposure")
        return verifysteps.probe_report(v, timeout=300)
    finally:
        for cleanup in reversed(v.cleanups):
            cleanup()


def describe(env: Env, seen: list[exposure.Target], listening: dict[int, str]) -> list[str]:
    forbidden = exposure.forbidden(env, seen, listening)
    ordered = sorted(seen, key=lambda t: (t.address, t.port))
    lines = [f"- answered: {' '.join(map(str, ordered)) or 'nothing'}"]
    lines.append(f"- not user-facing among them: {'; '.join(forbidden) or 'none'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/exposure.md"))
    args = parser.parse_args()
    env = deployed_env(settings.DEFAULT_PATH)
    runtime = DockerRuntime.connect()
    listening = exposure.listening(runtime)
    addresses = exposure.host_addresses(hostnet.probe())
    targets = exposure.targets(env, listening, addresses)
    with lan_stranger("ds-bench-stranger", "ds-bench-lan") as namespace:
        stranger = probe_from(namespace, targets)
    instance = from_instance(env, targets)
    lines = [
        f"# Exposure of the host's ports ({datetime.date.today()})",
        "",
        f"Machine: {machine()}.",
        "",
        f"{len(targets)} targets: TCP ports {' '.join(map(str, sorted({t.port for t in targets})))}"
        f" at {', '.join(addresses)}.",
        "",
        "## From a server of the demo project (demo-net, through its router and br-ex)",
        *describe(env, instance, listening),
        "",
        "## From a stranger on the LAN (198.51.100.2, routed by this host, not a node)",
        *describe(env, stranger, listening),
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
