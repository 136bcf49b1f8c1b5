"""The verbs that only look: status, logs, images list. They open the cloud read
only (cloud.read_only): no package, module, file or container changes on any host.
Nothing here prints; the command line does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dietstack import releases
from dietstack.app import cloud as clouds
from dietstack.app import nodedeploy
from dietstack.engine import certexpiry, diskspace
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images import build as image_build
from dietstack.images.catalog import BY_NAME, LABEL_IMAGE
from dietstack.ops import logview, status
from dietstack.progress import Progress


def status_report(config_path: Path, complain: Callable[[str], None]) -> status.Report:
    """Every container of every node, the endpoints and Nova's services."""
    cloud = clouds.read_only(config_path)
    control = cloud.control
    # The admin password asks Nova which of its daemons serve; it is never shown.
    nodes = nodedeploy.reachable(cloud, complain) if cloud.inputs.secrets else []
    report = status.collect(control.runtime, control.env, [(n.runtime, n.env) for n in nodes])
    space = [line for node in (control, *nodes) for line in diskspace.node_warnings(node)]
    return replace(report, warnings=certexpiry.warnings(cloud.inputs.secrets) + space)


def log_source(
    config_path: Path, name: str | None, node_name: str | None
) -> tuple[DockerRuntime, list[str]]:
    """The runtime of the node asked for and the containers `name` means there."""
    cloud = clouds.read_only(config_path)
    runtime, env = cloud.control.runtime, cloud.control.env
    if node_name and node_name != env.node:
        node, _ = nodedeploy.prepare(cloud, cloud.record(node_name), Progress(total=0), False)
        runtime, env = node.runtime, node.env
    return runtime, logview.select(env, name)


def image_rows(config_path: Path) -> list[str]:
    """DietStack's images on this host; `current` ones are what deploy runs."""
    effective = clouds.read_inputs(config_path).settings
    runtime = clouds.engine_or_explain()
    rows = runtime.images(LABEL_IMAGE)
    release = releases.named(effective.release)
    planned = image_build.plan_local(runtime, effective.base_image, release)
    current = {item.tag for item in planned}
    lines = []
    for row in rows:
        name = row.labels.get(LABEL_IMAGE, "?")
        if name not in BY_NAME:
            continue
        size = f"{row.size / 1024**2:.0f} MB"
        state = "current" if row.tag in current else "old"
        lines.append(f"{name:<11} {row.tag:<42} {size:>9}  {row.created:<19}  {state}")
    return lines
