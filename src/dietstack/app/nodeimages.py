"""The compute role's images, sent from the control node to a node (a save/load stream
over the node's forwarded Docker socket: no registry)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from dietstack import services
from dietstack.app.cloud import control_record
from dietstack.engine import secrets
from dietstack.engine.deploy import Deployment
from dietstack.hosts.runtime import DockerRuntime
from dietstack.model import COMPUTE
from dietstack.render import Env


def compute_images(control: Deployment) -> list[str]:
    """The images a compute node runs (its role's containers and the firewall)."""
    own = control_record(control.facts, str(control.settings.management_ip))
    settings = {
        **control.rendered_settings,
        "nodes": [{"name": "compute", "management_ip": "192.0.2.254", "roles": [COMPUTE]}, own],
        "node_name": "compute",
        "management_ip": "192.0.2.254",
    }
    # Only image names are read: stand-in secrets, since this made-up node has no
    # certificate of its own.
    env = Env(settings, secrets.placeholder())
    return sorted({container.image for container in services.all_containers(env)})


def _counted(stream: Iterator[bytes], total: list[int]) -> Iterator[bytes]:
    for chunk in stream:
        total[0] += len(chunk)
        yield chunk


def ship_images(
    control: Deployment, runtime: DockerRuntime, say: Callable[[str], None]
) -> tuple[int, float]:
    """Copy the compute role's images to the node; images the node has already are
    skipped. Returns bytes sent and seconds."""
    sent, started = 0, time.monotonic()
    for name in compute_images(control):
        tag = control.image_tags[name]
        if runtime.image_id(tag) == control.image_ids.get(name):
            say(f"      {runtime.node}: {tag} is there already")
            continue
        count = [0]
        began = time.monotonic()
        runtime.load_image(_counted(control.runtime.save_image(tag), count))
        sent += count[0]
        say(
            f"      {runtime.node}: sent {tag}: {count[0] / 1024**2:.0f} MB in "
            f"{time.monotonic() - began:.0f} s"
        )
    return sent, time.monotonic() - started
