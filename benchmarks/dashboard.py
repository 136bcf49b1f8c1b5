"""Dashboard benchmark: the horizon container's idle memory and the load time of
the instances page in a real browser.

Run as root from the repository root on a deployed cloud (it changes nothing):

    PYTHONPATH=benchmarks:. python benchmarks/dashboard.py [--config /etc/dietstack/settings.yaml]
        [--loads 10] [--output benchmarks/results/dashboard.md]

Memory is PSS summed over the container's processes, read when the dashboard has
served nothing for --settle seconds after the page loads (so it includes the
templates and clients a page pulls in). The load time is the browser's own
navigation timing (request start to the load event) of /project/instances/,
logged in as demo, one fresh navigation per sample.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.integration import browser
from tests.integration.conftest import run_dietstack

from deploy import container_memory
from dietstack.apis import cloudapi
from dietstack.hosts.runtime import DockerRuntime
from images import machine

PAGE = "/project/instances/"


def password(config: Path, user: str) -> str:
    result = run_dietstack("password", user, config=config)
    if result.returncode:
        raise SystemExit(result.stderr)
    return result.stdout.strip()


def base_url(config: Path) -> str:
    result = run_dietstack("status", config=config)
    for line in result.stdout.splitlines():
        if line.startswith("dashboard "):
            return line.split()[1].removesuffix("/auth/login/")
    raise SystemExit("`dietstack status` shows no dashboard row")


def load_times(ui: browser.Dashboard, loads: int) -> list[float]:
    seconds = []
    for _ in range(loads):
        ui.driver.get(ui.base_url + PAGE)
        ui.wait("the instances page", ui.loaded)
        timing = ui.driver.execute_script(
            "const t = performance.getEntriesByType('navigation')[0];"
            "return [t.requestStart, t.loadEventEnd];"
        )
        seconds.append((timing[1] - timing[0]) / 1000)
    return seconds


def pss_mib(runtime: DockerRuntime) -> float:
    return container_memory(runtime)["horizon"][1] / 1024


def report(before: float, after: float, times: list[float], settle: int) -> str:
    return "\n".join(
        [
            f"# Dashboard ({datetime.date.today()}, {machine()})",
            "",
            "| figure | value | goal |",
            "|---|---|---|",
            f"| horizon PSS, idle after start | {before:.0f} MiB | |",
            f"| horizon PSS, idle {settle} s after the page loads | {after:.0f} MiB | ≤ 150 MiB |",
            f"| {PAGE} load, median of {len(times)} | {statistics.median(times):.2f} s | |",
            f"| {PAGE} load, min-max | {min(times):.2f}-{max(times):.2f} s | |",
            "",
            "One uWSGI worker with 4 threads; load time is the browser's navigation "
            "timing (request start to load event), logged in as demo with an empty project.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/dietstack/settings.yaml"))
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--settle", type=int, default=30)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    runtime = DockerRuntime.connect()
    # A restarted dashboard shows what it costs before anyone used it.
    subprocess.run(["docker", "restart", "horizon"], check=True, capture_output=True)
    url = base_url(args.config)
    time.sleep(args.settle)
    before = pss_mib(runtime)
    with (
        tempfile.TemporaryDirectory() as shots,
        browser.chromium(url, Path(shots), str(cloudapi.CA_FILE)) as ui,
    ):
        ui.login("demo", password(args.config, "demo"))
        times = load_times(ui, args.loads)
    time.sleep(args.settle)
    text = report(before, pss_mib(runtime), times, args.settle)
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
