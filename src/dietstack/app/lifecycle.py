"""The whole cloud's lifecycle as the verbs run it: deploy, stop, start and destroy.

Each function takes what the command line parsed, opens the cloud the way its
verb needs (cloud.py) and returns what the command prints; nothing here prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dietstack.apis import cloudapi
from dietstack.app import cloud as clouds
from dietstack.app import nodedeploy, nodes
from dietstack.app.cloud import Cloud
from dietstack.engine import deploy, teardown
from dietstack.engine.converge import UNCHANGED
from dietstack.engine.deployment import Deployment
from dietstack.errors import DietStackError
from dietstack.hosts.hostio import LocalHost
from dietstack.images.catalog import IMAGES, LABEL_IMAGE
from dietstack.ops import power
from dietstack.progress import Progress


def deploy_everything(config_path: Path, verbose: bool) -> tuple[Cloud, float]:
    """Every node brought to its plan, waited on until it serves; and how long it took."""
    progress = Progress(total=len(IMAGES) + 1, verbose=verbose)
    started = time.monotonic()
    cloud = clouds.for_deploy(config_path, progress)
    progress.total += deploy.total_steps(cloud.control.env) * (1 + len(cloud.records))
    cloud = nodes.deploy_all(cloud, progress)
    return cloud, time.monotonic() - started


def plan_lines(config_path: Path) -> tuple[list[str], int]:
    """What `deploy` would change on every node, and why; and how many changes."""
    cloud = clouds.read_only(config_path)
    plans = [("", deploy.plan(cloud.control))]
    for record in cloud.records:
        node, _ = nodedeploy.prepare(cloud, record, Progress(total=0), probe=False)
        plans.append((f"{node.node}: ", deploy.plan(node)))
    lines, changes = [], 0
    for prefix, actions in plans:
        for action in actions:
            changes += action.kind not in UNCHANGED
            lines.append(f"{action.kind:<9} {prefix + action.name:<40} {action.reason}")
    return lines, changes


@dataclass(frozen=True)
class Stopped:
    containers: int
    instances: int
    seconds: float
    #: Nodes whose containers keep running, and why.
    unreachable: list[str]


def stop(config_path: Path, force: bool) -> Stopped:
    """Shut every running instance down through Nova, then stop every node's containers."""
    started = time.monotonic()
    cloud = clouds.deployed(config_path)
    control = cloud.control
    state_dir = control.paths.state_dir
    say = control.progress.say
    if any(state.running for state in control.runtime.containers(deploy.LABEL).values()):
        try:
            conn = cloudapi.admin(control.env)
            instances = power.running_instances(conn)
            # Written down first, so an interrupted stop still knows what ran.
            power.remember(state_dir, instances)
            power.shut_down_instances(conn, instances, say)
        except cloudapi.CLOUD_ERRORS as exc:
            if not force:
                raise DietStackError(
                    f"the instances could not be shut down through Nova ({exc}); "
                    "no container was stopped",
                    hint="`dietstack status` shows what is down and `dietstack deploy` repairs "
                    "it; `dietstack stop --force` stops the containers anyway",
                ) from None
            say(f"Note: instances were not shut down through Nova ({exc})")
    unreachable: list[str] = []

    def keeps_running(why: str) -> None:
        unreachable.append(f"{why}; its containers keep running")

    stopped = 0
    for node in nodedeploy.reachable(cloud, keeps_running):
        stopped += power.stop_containers(node.runtime, node.env, node.node, say)
    stopped += power.stop_containers(control.runtime, control.env, control.node, say)
    total = len(power.remembered(state_dir))
    return Stopped(stopped, total, time.monotonic() - started, unreachable)


@dataclass(frozen=True)
class Started:
    cloud: Cloud
    seconds: float
    instances: int
    #: Instances that did not start again.
    problems: list[str]


def start(config_path: Path, verbose: bool) -> Started:
    """A stopped cloud started as deploy starts it, then the instances that ran before."""
    cloud, elapsed = deploy_everything(config_path, verbose)
    state_dir = cloud.control.paths.state_dir
    instances = power.remembered(state_dir)
    problems: list[str] = []
    if instances:
        conn = cloudapi.admin(cloud.control.env)
        problems = power.start_instances(conn, instances, cloud.control.progress.say)
    power.forget(state_dir)
    return Started(cloud, elapsed, len(instances), problems)


def any_ovn_image(control: Deployment) -> str | None:
    """The ovn image that removes the host's tables: this version's, else any one here
    (a DietStack update makes new tags before its first deploy builds them)."""
    tag = control.image_tags.get("ovn")
    if tag and control.runtime.image_id(tag):
        return tag
    rows = control.runtime.images(LABEL_IMAGE)
    return next((row.tag for row in rows if row.labels.get(LABEL_IMAGE) == "ovn"), None)


@dataclass(frozen=True)
class Destroyed:
    containers: int
    #: Per node: what was removed there, or why nothing was.
    nodes: list[str]
    note: str


def destroy(config_path: Path, data: bool) -> Destroyed:
    """Every node's containers and host tables, and with `data` all the data."""
    cloud = clouds.for_teardown(config_path, Progress(total=0))
    data_dir = cloud.control.settings.data_dir if data else None
    lines = []
    for record in cloud.records:
        try:
            lines.append(f"{record.name}: {nodes.destroy(cloud, record, data_dir)}")
        except DietStackError as exc:
            # The error says what stays: its containers if the node could not be
            # reached, else its data (with the command's last words).
            message = exc.message
            if not message.startswith(f"{record.name}:"):
                message = f"{record.name}: {message}"
            tail = "".join(f"\n  {line}" for line in exc.details.splitlines()[-5:])
            lines.append(message + tail)
    # Read before --data deletes it: the tunnel NIC's address, lent to Open vSwitch.
    control = cloud.control
    nic = control.settings.tunnel_interface
    cidr = str(control.facts.get("tunnel_cidr") or "")
    removed, note = teardown.destroy(control.runtime, data_dir, any_ovn_image(control))
    nodes.give_back_tunnel_address(LocalHost(), nic, cidr)
    return Destroyed(removed, lines, note)
