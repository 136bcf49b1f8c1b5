"""Plan, then apply: from service descriptions to running containers.

Each container carries a config hash over everything that defines it (its
description, its image and its rendered files); a container whose hash matches
is left alone, so a deploy with nothing changed touches nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dietstack.hosts.dockerdata import LABEL_WATCHED, ContainerState, RunSpec
from dietstack.images.catalog import LABEL_RELEASE
from dietstack.model import Container, Mount
from dietstack.render import CONTAINER_CONFIG_DIR, Env, config_hash, live_hash

LABEL_CONTAINER = "dietstack.container"
LABEL_SERVICE = "dietstack.service"
LABEL_IMAGE_TAG = "dietstack.image-tag"
LABEL_HASH = "dietstack.config-hash"


@dataclass(frozen=True)
class NodePaths:
    """Where this node keeps its inputs and data on the host."""

    secrets_file: Path
    overrides_dir: Path
    data_dir: Path

    @property
    def effective_settings(self) -> Path:
        return self.data_dir / "config" / "settings.yaml"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def container_secrets_dir(self) -> Path:
        """Each container's own secrets, one file each (0700 directory, 0600 files)."""
        return self.data_dir / "config" / "secrets"

    def container_secrets(self, container: str) -> Path:
        return self.container_secrets_dir / f"{container}.yaml"


@dataclass(frozen=True)
class Desired:
    container: Container
    spec: RunSpec

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def config_hash(self) -> str:
        return self.spec.labels[LABEL_HASH]

    @property
    def live_hash(self) -> str:
        """What its live files should hold ("" when it has none)."""
        return live_hash(self.container)


@dataclass(frozen=True)
class Action:
    kind: str  # create | recreate | start | restart | reload | wait | noop | remove | run | skip
    name: str
    reason: str


def host_path(mount: Mount, paths: NodePaths) -> Path:
    return Path(mount.source) if mount.source.startswith("/") else paths.data_dir / mount.source


def mounts(container: Container, paths: NodePaths) -> tuple[tuple[str, str, str], ...]:
    """(host path, container path, Docker's mode: ro or rw, and any propagation)."""
    inputs = (
        (str(paths.effective_settings), f"{CONTAINER_CONFIG_DIR}/settings.yaml", "ro"),
        # Only the secrets this container's own files use: one whose service is
        # broken into reads no other service's passwords.
        (
            str(paths.container_secrets(container.name)),
            f"{CONTAINER_CONFIG_DIR}/secrets.yaml",
            "ro",
        ),
        (str(paths.overrides_dir), f"{CONTAINER_CONFIG_DIR}/overrides", "ro"),
    )
    data = tuple(
        (
            str(host_path(mount, paths)),
            mount.target,
            ",".join(filter(None, ("ro" if mount.read_only else "rw", mount.propagation))),
        )
        for mount in container.volumes
    )
    return inputs + data


def desired(
    container: Container,
    env: Env,
    paths: NodePaths,
    image_tag: str,
    image_id: str,
    overrides: Path | None = None,
) -> Desired:
    """How to run the container on the node; `overrides` is where this host reads the
    user's overrides (the node's own copy, paths.overrides_dir, is what it mounts)."""
    volumes = mounts(container, paths)
    # What it mounts is part of what defines it: a container made when every
    # container mounted the whole secrets file is made anew.
    digest = hashlib.sha256(
        f"{config_hash(container, image_id, overrides or paths.overrides_dir)}{volumes}".encode()
    ).hexdigest()
    spec = RunSpec(
        name=container.name,
        image=image_tag,
        command=(container.name,),
        labels={
            LABEL_CONTAINER: container.name,
            LABEL_SERVICE: container.service,
            LABEL_IMAGE_TAG: image_tag,
            LABEL_HASH: digest,
            LABEL_RELEASE: str(env.settings["release"]),
            **({LABEL_WATCHED: "1"} if container.healthcheck else {}),
        },
        mounts=volumes,
        privileges=container.privileges,
        tmpfs=tuple((tmpfs.target, f"size={tmpfs.size_mib}m") for tmpfs in container.tmpfs),
    )
    return Desired(container, spec)


def plan_container(want: Desired, have: ContainerState | None, live_now: str = "") -> Action:
    """What brings the container to `want`; `live_now` is the hash of the live files
    the running container holds (read from it only when the rest is up to date)."""
    if have is None:
        return Action("create", want.name, "not created yet")
    if have.labels.get(LABEL_IMAGE_TAG) != want.spec.image:
        return Action("recreate", want.name, f"new image {want.spec.image}")
    if have.labels.get(LABEL_HASH) != want.config_hash:
        return Action("recreate", want.name, "configuration changed")
    if not have.running:
        return Action("start", want.name, f"container is {have.status}")
    if want.live_hash and live_now != want.live_hash:
        return Action("reload", want.name, "its live files changed: rewritten in place")
    # Docker restarts only containers that exit; a running one whose service no
    # longer works is restarted here.
    if have.health == "unhealthy":
        return Action("restart", want.name, "container is running but unhealthy")
    if have.health == "starting":
        return Action("wait", want.name, "up to date; its health check has not passed yet")
    return Action("noop", want.name, "up to date")


#: Actions that change nothing (plan counts the others as changes).
UNCHANGED = ("noop", "skip", "wait")


def plan_orphans(wanted: set[str], actual: dict[str, ContainerState]) -> list[Action]:
    """DietStack containers that no service describes any more."""
    return [
        Action("remove", name, "no longer part of the cloud")
        for name in sorted(actual)
        if name not in wanted
    ]


def plan_step(want: Desired, done_hash: str | None) -> Action:
    """A one-shot bootstrap step runs when anything that defines it changed."""
    if done_hash == want.config_hash:
        return Action("skip", want.name, "already done with this configuration")
    if done_hash is None:
        return Action("run", want.name, "never run")
    return Action("run", want.name, "configuration or image changed")
