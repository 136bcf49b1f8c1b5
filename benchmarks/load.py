"""Load benchmark: many users at once, driven by Rally (rally-openstack from PyPI).

Run as root from the repository root on a deployed cloud with the tiny image
(`dietstack image add tiny`):

    PYTHONPATH=benchmarks:. python benchmarks/load.py [--config FILE] [--scale 1.0]
        [--only auth,boot,volume,dashboard] [--output benchmarks/results/load.md]

Scenarios (iterations times --scale):
- Keystone password authentication, concurrency 10, 500 iterations;
- a tiny server booted and deleted, concurrency 4, 40 iterations;
- a 1 GB volume created, attached to a server, detached and deleted, concurrency 4,
  20 iterations;
- the dashboard's instances page loaded by 5 headless browsers at once, 10 times each.

Rally is installed once into /var/lib/dietstack-bench/rally (outside data_dir) and
uses its own users and projects (its `users` context), made and removed per run.
The report gives each scenario's failed iterations and p50/p95 duration, and the
control node's total container memory (PSS) at its peak, sampled every 5 s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration import browser
from tests.integration.conftest import run_dietstack

from deploy import container_memory
from dietstack.apis import cloudapi
from dietstack.app import cloud as clouds
from dietstack.app.cloud import deployed_env
from dietstack.engine import settings
from dietstack.hosts.runtime import DockerRuntime
from images import machine

HOME = Path("/var/lib/dietstack-bench/rally")
RALLY_OPENSTACK = "rally-openstack==3.0.0"
IMAGE, FLAVOR = "dietstack-tiny", "m1.tiny"


@dataclass
class Outcome:
    name: str
    concurrency: int
    durations: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    peak_mib: float = 0.0

    def row(self) -> str:
        ordered = sorted(self.durations)
        p50 = statistics.median(ordered) if ordered else float("nan")
        p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)] if ordered else float("nan")
        total = len(self.durations) + len(self.failures)
        return (
            f"| {self.name} | {self.concurrency} | {total} | {len(self.failures)} | "
            f"{p50:.2f} | {p95:.2f} | {self.peak_mib:.0f} |"
        )


def rally(*args: str) -> str:
    command = [str(HOME / "venv" / "bin" / "rally"), "--config-file", str(HOME / "rally.conf")]
    done = subprocess.run([*command, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(
            f"rally {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done.stdout


def install() -> None:
    if not (HOME / "venv" / "bin" / "rally").exists():
        print(f"installing {RALLY_OPENSTACK} into {HOME / 'venv'} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(HOME / "venv")], check=True)
        pip = str(HOME / "venv" / "bin" / "pip")
        subprocess.run([pip, "install", "-q", RALLY_OPENSTACK], check=True)
    if not (HOME / "rally.sqlite").exists():
        conf = f"[database]\nconnection = sqlite:///{HOME}/rally.sqlite\n"
        (HOME / "rally.conf").write_text(conf)
        rally("db", "create")


def environment(config: Path) -> None:
    """Rally's environment for this cloud, as admin, verifying with the cloud's CA."""
    env = deployed_env(config)
    spec = {
        "openstack": {
            "auth_url": env.keystone_url,
            "region_name": "RegionOne",
            "https_cacert": cloudapi.ca_file(env),
            "admin": {
                "username": "admin",
                "password": env.secrets["admin_password"],
                "user_domain_name": "Default",
                "project_name": "admin",
                "project_domain_name": "Default",
            },
        }
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(spec, handle)
        handle.flush()
        subprocess.run(
            [str(HOME / "venv" / "bin" / "rally"), "--config-file", str(HOME / "rally.conf"),
             "env", "delete", "--env", "dietstack", "--force"],
            capture_output=True,
        )  # fmt: skip
        rally("env", "create", "--name", "dietstack", "--spec", handle.name)
    rally("env", "check", "--env", "dietstack")


def task(scenario: str, args: dict[str, Any], times: int, concurrency: int) -> dict[str, Any]:
    network = {"network": {"start_cidr": "10.150.0.0/16", "networks_per_tenant": 1}}
    needs_network = scenario != "Authenticate.keystone"
    return {
        "version": 2,
        "title": scenario,
        "subtasks": [
            {
                "title": scenario,
                "workloads": [
                    {
                        "scenario": {scenario: args},
                        "runner": {"constant": {"times": times, "concurrency": concurrency}},
                        "contexts": {
                            "users": {"tenants": 2, "users_per_tenant": 1},
                            **(network if needs_network else {}),
                        },
                    }
                ],
            }
        ],
    }


@contextmanager
def peak_memory(runtime: DockerRuntime) -> Iterator[Callable[[], float]]:
    """The highest total PSS of the control node's containers while the block runs."""
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total = sum(pss for _, pss in container_memory(runtime).values()) / 1024
            peak[0] = max(peak[0], total)
            stop.wait(5)

    worker = threading.Thread(target=sample, daemon=True)
    worker.start()
    try:
        yield lambda: peak[0]
    finally:
        stop.set()
        worker.join()


def run_rally(name: str, body: dict[str, Any], runtime: DockerRuntime) -> Outcome:
    concurrency = body["subtasks"][0]["workloads"][0]["runner"]["constant"]["concurrency"]
    outcome = Outcome(name, concurrency)
    with tempfile.TemporaryDirectory() as work, peak_memory(runtime) as peak:
        task_file = Path(work) / "task.json"
        task_file.write_text(json.dumps(body))
        print(f"== {name}", flush=True)
        started = rally("task", "start", str(task_file), "--env", "dietstack")
        found = re.search(r"Task\s+([0-9a-f-]{36})", started)
        if not found:
            raise SystemExit(f"rally printed no task id:\n{started[-2000:]}")
        uuid = found.group(1)
        report = Path(work) / "report.json"
        rally("task", "report", uuid, "--json", "--out", str(report))
        outcome.peak_mib = peak()
        data = json.loads(report.read_text())
    for iteration in data["tasks"][0]["subtasks"][0]["workloads"][0]["data"]:
        if iteration.get("error"):
            outcome.failures.append(" ".join(map(str, iteration["error"][:2])))
        else:
            outcome.durations.append(float(iteration["duration"]))
    return outcome


def dashboard(config: Path, runtime: DockerRuntime, browsers: int, loads: int) -> Outcome:
    """The instances page, `browsers` logged-in browsers loading it at the same time."""
    from dashboard import PAGE, base_url, password

    outcome = Outcome(f"dashboard {PAGE}", browsers)
    url, secret = base_url(config), password(config, "demo")
    lock = threading.Lock()

    def one(index: int) -> None:
        with (
            tempfile.TemporaryDirectory() as shots,
            browser.chromium(url, Path(shots), str(cloudapi.CA_FILE)) as ui,
        ):
            ui.login("demo", secret)
            for _ in range(loads):
                try:
                    ui.driver.get(ui.base_url + PAGE)
                    ui.wait("the instances page", ui.loaded)
                    timing = ui.driver.execute_script(
                        "const t = performance.getEntriesByType('navigation')[0];"
                        "return [t.requestStart, t.loadEventEnd];"
                    )
                    with lock:
                        outcome.durations.append((timing[1] - timing[0]) / 1000)
                except Exception as exc:  # a failed load is a result, not a crash
                    with lock:
                        outcome.failures.append(f"browser {index}: {exc}")

    with peak_memory(runtime) as peak:
        workers = [threading.Thread(target=one, args=(i,)) for i in range(browsers)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        outcome.peak_mib = peak()
    return outcome


def scenarios(scale: float) -> dict[str, tuple[str, dict[str, Any], int, int]]:
    image, flavor = {"name": IMAGE}, {"name": FLAVOR}
    return {
        "auth": ("Authenticate.keystone", {}, round(500 * scale), 10),
        "boot": (
            "NovaServers.boot_and_delete_server",
            {"image": image, "flavor": flavor},
            round(40 * scale),
            4,
        ),
        # Each iteration boots a server, then creates, attaches, detaches and deletes
        # a volume, then deletes the server.
        "volume": (
            "CinderVolumes.create_and_attach_volume",
            {"size": 1, "image": image, "flavor": flavor},
            round(20 * scale),
            4,
        ),
    }


def cloud(config: Path) -> str:
    env = deployed_env(config)
    compute = len(clouds.read_only(config).records)
    shape = f"control node and {compute} compute nodes" if compute else "all-in-one"
    return f"OpenStack {env.settings['release']}, {shape}, TLS on ({config})"


def report(outcomes: list[Outcome], config: Path) -> str:
    lines = [
        f"# Load benchmark ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}. Cloud: {cloud(config)}. Driver: {RALLY_OPENSTACK}.",
        "",
        "| scenario | concurrency | iterations | failed | p50 s | p95 s | control PSS peak MiB |",
        "|---|---|---|---|---|---|---|",
        *(outcome.row() for outcome in outcomes),
        "",
    ]
    for outcome in outcomes:
        if outcome.failures:
            lines += [f"Failures of {outcome.name} (first 5):", ""]
            lines += [f"- {failure[:300]}" for failure in outcome.failures[:5]] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=settings.DEFAULT_PATH)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default="auth,boot,volume,dashboard")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/load.md"))
    args = parser.parse_args()
    if run_dietstack("status", config=args.config).returncode:
        raise SystemExit("the cloud is not fully up: `dietstack status` says what is not")
    runtime = DockerRuntime.connect()
    wanted = args.only.split(",")
    outcomes = []
    install()
    environment(args.config)
    for key, (scenario, scenario_args, times, concurrency) in scenarios(args.scale).items():
        if key in wanted:
            body = task(scenario, scenario_args, max(1, times), concurrency)
            outcomes.append(run_rally(scenario, body, runtime))
    if "dashboard" in wanted:
        outcomes.append(dashboard(args.config, runtime, 5, max(1, round(10 * args.scale))))
    text = report(outcomes, args.config)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
