"""One node's deployment as a value: its inputs, its host and runtime, its images.

deploy.py plans and applies it; afterup.py is what the control node does once a
service is up; teardown.py removes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dietstack.engine import converge
from dietstack.engine.converge import Desired, NodePaths
from dietstack.engine.settings import Settings
from dietstack.errors import DietStackError
from dietstack.hosts.hostio import Host, LocalHost
from dietstack.hosts.runtime import DockerRuntime
from dietstack.model import Container
from dietstack.progress import Progress
from dietstack.render import Env

LABEL = converge.LABEL_CONTAINER


class StepFailed(DietStackError):
    def __init__(self, node: str, container: str, step: str, log: str, hint: str = "") -> None:
        super().__init__(
            f"{node}: {container}: {step} failed",
            details=f"--- last lines of the {container} log ---\n{log.rstrip()}" if log else "",
            hint=hint
            or "fix the cause shown above and run `dietstack deploy` again; it resumes where "
            "it stopped",
        )


@dataclass(frozen=True)
class Deployment:
    """One deploy of one node: inputs, its host and runtime, and the images to run. A
    value: a changed node (another inventory, its secrets) is a new Deployment."""

    settings: Settings
    #: The secrets this node's containers use (on a compute node: only those).
    secrets: dict[str, str]
    #: Where the node keeps its inputs and data, as paths on that node.
    paths: NodePaths
    runtime: DockerRuntime
    image_tags: dict[str, str]
    image_ids: dict[str, str]
    progress: Progress
    #: What deploy found out about this node (see facts.py); rendered like settings.
    facts: dict[str, str]
    #: Every node of the cloud, the control node first (inventory.py).
    nodes: list[dict[str, Any]] = field(default_factory=list)
    #: Runs this node's commands and writes its files.
    host: Host = field(default_factory=LocalHost)
    #: Settings that are this node's own (a compute node's address and interfaces).
    own_settings: dict[str, Any] = field(default_factory=dict)
    #: Where the user's overrides are read on this host (the node gets a copy).
    overrides_source: Path | None = None
    #: While an upgrade runs old and new services side by side: Nova's compute RPC
    #: version cap ("auto"); "" otherwise (see Env.upgrading).
    compute_rpc_pin: str = ""

    @property
    def node(self) -> str:
        """The name errors give this node: the one Nova and OVN know it by."""
        return self.env.node

    @property
    def remote(self) -> bool:
        """A node other than this host: it gets copies of its secrets and overrides."""
        return not isinstance(self.host, LocalHost)

    @property
    def env(self) -> Env:
        return Env(self.rendered_settings, self.secrets)

    @property
    def rendered_settings(self) -> dict[str, Any]:
        """What the containers render from: settings, this node's facts, the inventory."""
        pins = {"compute_rpc_pin": self.compute_rpc_pin} if self.compute_rpc_pin else {}
        return {
            **self.settings.as_dict(),
            **self.own_settings,
            **self.facts,
            **pins,
            "nodes": self.nodes,
        }

    @property
    def local_overrides(self) -> Path:
        return self.overrides_source or self.paths.overrides_dir

    def desired(self, container: Container) -> Desired:
        tag = self.image_tags[container.image]
        return converge.desired(
            container,
            self.env,
            self.paths,
            tag,
            self.image_ids.get(container.image, tag),
            self.local_overrides,
        )
