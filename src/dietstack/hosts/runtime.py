"""The one module that talks to Docker.

Everything else asks it for what it needs in DietStack's own terms; Docker's
exceptions become DietStackErrors that say what to do (its records: dockerdata.py).
"""

from __future__ import annotations

import collections
import datetime
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions

from dietstack.errors import BuildFailed, DietStackError, DockerUnavailable
from dietstack.hosts.dockerdata import (
    ERROR_PREFIX,
    LABEL_WATCHED,
    PATH_STAT,
    ContainerState,
    ImageInfo,
    RunSpec,
    build_lines,
    container_state,
    data_root,
    unavailable,
    watched_health,
)
from dietstack.model import HEALTH_LINK

# The records were defined here before dockerdata.py; importing them from here still works.
__all__ = ["API_TIMEOUT", "LOG_TAIL", "ContainerState", "DockerRuntime", "ImageInfo", "RunSpec"]

# Builds and imports can be silent for minutes (compiling, unpacking).
API_TIMEOUT = 3600
LOG_TAIL = 25


class DockerRuntime:
    """DietStack's view of one node's Docker engine."""

    def __init__(self, client: Any, node: str = "") -> None:
        self._client = client
        #: The node whose engine this is, for messages ("" for this host).
        self.node = node

    @classmethod
    def connect(cls, base_url: str | None = None, node: str = "") -> DockerRuntime:
        """This host's engine, or a node's through a forwarded socket (`base_url`)."""
        try:
            if base_url is None:
                client = docker.from_env(timeout=API_TIMEOUT)
            else:
                client = docker.DockerClient(base_url=base_url, timeout=API_TIMEOUT)
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            if node:
                raise DockerUnavailable(
                    f"{node}: cannot reach the node's Docker engine",
                    hint=f"run `dietstack node add` for {node} again: it starts Docker there",
                    details=f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                ) from None
            raise unavailable(exc) from None
        return cls(client, node)

    def _on(self) -> str:
        """The node an error happened on, as a message prefix."""
        return f"{self.node}: " if self.node else ""

    # --- shipping images to a node ----------------------------------------------

    def save_image(self, ref: str) -> Iterator[bytes]:
        """The image as a `docker save` tar stream."""
        try:
            return iter(self._client.api.get_image(ref, chunk_size=1024 * 1024))
        except docker.errors.APIError as exc:
            raise DietStackError(f"{self._on()}Docker could not save {ref}: {exc}") from None

    def load_image(self, stream: Iterable[bytes]) -> None:
        try:
            collections.deque(self._client.api.load_image(stream, quiet=True), maxlen=0)
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise DietStackError(f"{self._on()}Docker could not load an image: {exc}") from None

    # --- facts -----------------------------------------------------------------

    def root_dir(self) -> Path:
        try:
            return data_root(self._client.info(), self._on())
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise DietStackError(f"{self._on()}Docker did not tell its data root: {exc}") from None

    def image_id(self, ref: str) -> str | None:
        try:
            return str(self._client.images.get(ref).id)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise DietStackError(f"Docker could not look up image {ref}: {exc}") from None

    def images(self, label: str) -> list[ImageInfo]:
        """Every tagged image carrying `label`, one row per tag."""
        rows = []
        for image in self._client.images.list(filters={"label": label}):
            attrs = image.attrs
            for tag in image.tags:
                rows.append(
                    ImageInfo(
                        tag=tag,
                        id=str(image.id),
                        size=int(attrs.get("Size", 0)),
                        created=str(attrs.get("Created", ""))[:19].replace("T", " "),
                        labels=dict(image.labels or {}),
                    )
                )
        return sorted(rows, key=lambda row: row.tag)

    def image_layer_dirs(self, ref: str) -> list[Path]:
        """Where the overlay2 storage driver keeps this image's layers on disk."""
        data = self._client.images.get(ref).attrs.get("GraphDriver", {}).get("Data") or {}
        dirs = [data.get("UpperDir", "")] + str(data.get("LowerDir", "")).split(":")
        return [Path(d) for d in dirs if d]

    # --- actions ---------------------------------------------------------------

    def build(
        self,
        context_dir: Path,
        tag: str,
        buildargs: dict[str, str],
        labels: dict[str, str],
        on_line: Callable[[str], None],
    ) -> None:
        """Build an image; on failure raise BuildFailed carrying the tail of the output."""
        tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        failed = False
        try:
            stream = self._client.api.build(
                path=str(context_dir),
                tag=tag,
                buildargs=buildargs,
                labels=labels,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for line in build_lines(stream):
                failed = failed or line.startswith(ERROR_PREFIX)
                tail.append(line)
                on_line(line)
        except docker.errors.APIError as exc:
            failed = True
            tail.append(str(exc.explanation or exc))
        except requests.exceptions.RequestException as exc:
            raise unavailable(exc) from None
        if not failed and self.image_id(tag) is not None:
            return
        raise BuildFailed(f"building {tag} failed", details="\n".join(tail))

    def pull(self, ref: str, timeout: float) -> str | None:
        """Pull an image; returns None on success, else why it failed (short)."""
        outcome: list[str | None] = []

        def attempt() -> None:
            try:
                self._client.images.pull(ref)
                outcome.append(None)
            except docker.errors.APIError as exc:
                outcome.append(str(exc.explanation or exc).splitlines()[0][:160])
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                outcome.append(str(exc).splitlines()[0][:200])

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(timeout)
        if not outcome:
            return f"no answer within {timeout:.0f} s"
        return outcome[0]

    def import_rootfs(self, tar_stream: IO[bytes], tag: str, labels: dict[str, str]) -> None:
        repository, _, version = tag.partition(":")
        changes = [f"LABEL {key}={value}" for key, value in labels.items()]
        try:
            self._client.api.import_image_from_stream(
                tar_stream, repository=repository, tag=version, changes=changes
            )
        except docker.errors.APIError as exc:
            raise DietStackError(f"Docker could not import {tag}: {exc.explanation}") from None

    def remove_images(self, label: str) -> int:
        """Remove every image carrying `label`, build stages included; returns how many."""
        images = {
            image.id: image
            for image in self._client.images.list(all=True, filters={"label": label})
        }
        # Images made before they were labelled are still found by their name.
        for image in self._client.images.list():
            if any(tag.startswith("dietstack/") for tag in image.tags):
                images[image.id] = image
        removed = 0
        # Children before parents: newest first.
        oldest_first = sorted(images.values(), key=lambda i: str(i.attrs.get("Created", "")))
        for image in reversed(oldest_first):
            try:
                self._client.images.remove(image.id, force=True)
                removed += 1
            except docker.errors.ImageNotFound:
                continue
            except docker.errors.APIError as exc:
                raise DietStackError(f"Docker could not remove image {image.id}: {exc}") from None
        return removed

    # --- containers ------------------------------------------------------------

    def containers(self, label: str) -> dict[str, ContainerState]:
        """Every container (running or not) carrying `label`, by name."""
        listed = self._client.containers.list(all=True, filters={"label": label})
        return {c.name: container_state(c, self._watched(c)) for c in listed}

    def state(self, name: str) -> ContainerState | None:
        try:
            container = self._client.containers.get(name)
            return container_state(container, self._watched(container))
        except docker.errors.NotFound:
            return None

    def _watched(self, container: Any) -> str | None:
        """Its watcher's verdict (None: no watcher runs), from Docker's stat of its
        link: no process is started, where reading a file would start one."""
        if LABEL_WATCHED not in (container.labels or {}) or container.status != "running":
            return None
        api = self._client.api
        url = api._url("/containers/{0}/archive", container.id)
        try:
            answer = api.head(url, params={"path": HEALTH_LINK})
        except requests.exceptions.RequestException:
            return watched_health(None)  # gone or restarting since it was listed
        started = str(container.attrs.get("State", {}).get("StartedAt") or "")
        return watched_health(answer.headers.get(PATH_STAT) if answer.ok else None, started)

    def _create(self, spec: RunSpec, restart: bool) -> Any:
        privileges = spec.privileges
        return self._client.containers.create(
            spec.image,
            list(spec.command),
            name=spec.name,
            labels=spec.labels,
            network_mode="host",
            restart_policy={"Name": "unless-stopped"} if restart else None,
            volumes={src: {"bind": dst, "mode": mode} for src, dst, mode in spec.mounts},
            tmpfs=dict(spec.tmpfs) or None,
            environment=spec.environment,
            cap_add=list(privileges.capabilities) or None,
            cap_drop=list(privileges.dropped_capabilities) or None,
            devices=list(privileges.devices) or None,
            device_cgroup_rules=list(privileges.device_cgroup_rules) or None,
            security_opt=list(privileges.security_opt) or None,
            pid_mode="host" if privileges.pid_host else None,
            log_config={"Type": "json-file", "Config": {"max-size": "20m", "max-file": "3"}},
        )

    def create_and_start(self, spec: RunSpec) -> None:
        try:
            self._create(spec, restart=True).start()
        except docker.errors.APIError as exc:
            raise DietStackError(
                f"{self._on()}Docker could not start container {spec.name}: "
                f"{exc.explanation or exc}"
            ) from None

    def start(self, name: str) -> None:
        """Start a stopped container; one Docker keeps restarting is restarted now,
        so it tries again at once rather than after its back-off delay."""
        try:
            container = self._client.containers.get(name)
            if container.status == "restarting":
                container.restart()
            else:
                container.start()
        except docker.errors.APIError as exc:
            raise DietStackError(
                f"{self._on()}Docker could not start {name}: {exc.explanation}"
            ) from None

    def stop(self, name: str, timeout: int = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        try:
            self._client.containers.get(name).stop(timeout=timeout)
        except docker.errors.APIError as exc:
            raise DietStackError(
                f"{self._on()}Docker could not stop {name}: {exc.explanation}"
            ) from None

    def remove(self, name: str) -> None:
        try:
            self._client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise DietStackError(
                f"{self._on()}Docker could not remove {name}: {exc.explanation}"
            ) from None

    def pids(self, name: str) -> list[int]:
        """Host process IDs of everything running in a container."""
        try:
            top = self._client.containers.get(name).top(ps_args="-o pid")
        except docker.errors.APIError:
            return []
        return [int(row[0]) for row in top.get("Processes") or []]

    def logs(
        self,
        name: str,
        follow: bool = False,
        since: int | datetime.datetime | None = None,
        tail: int | None = None,
    ) -> Iterator[bytes]:
        """A container's log (stdout and stderr, as Docker keeps it), as it comes;
        `since` is a Unix time or a datetime."""
        options: dict[str, Any] = {"stream": True, "follow": follow, "tail": tail or "all"}
        if since is not None:
            options["since"] = since
        try:
            yield from self._client.containers.get(name).logs(**options)
        except docker.errors.NotFound:
            raise DietStackError(f"{self._on()}there is no container {name}") from None

    def logs_tail(self, name: str, lines: int = LOG_TAIL) -> str:
        try:
            raw = self._client.containers.get(name).logs(tail=lines)
        except docker.errors.DockerException:
            return ""
        return str(raw.decode(errors="replace"))

    def run_oneshot(self, spec: RunSpec) -> tuple[int, str]:
        """Run a step to completion and remove it; returns exit code and log tail."""
        self.remove(spec.name)
        try:
            container = self._create(spec, restart=False)
        except docker.errors.APIError as exc:
            raise DietStackError(
                f"{self._on()}Docker could not run {spec.name}: {exc.explanation or exc}"
            ) from None
        try:
            container.start()
            exit_code = int(container.wait().get("StatusCode", 1))
            output = container.logs(tail=LOG_TAIL * 2).decode(errors="replace")
        except docker.errors.APIError as exc:
            # An image that cannot run the step (a broken or foreign image).
            raise DietStackError(
                f"{self._on()}{spec.name}: starting it failed: {exc.explanation or exc}",
                hint=f"check the image {spec.image} (`dietstack images list`)",
            ) from None
        finally:
            container.remove(force=True)
        return exit_code, output

    def exec(
        self, name: str, command: list[str], environment: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Run a command in a container; `environment` passes values (a password) that
        must not show in the host's process list, as arguments would."""
        try:
            result = self._client.containers.get(name).exec_run(command, environment=environment)
        except docker.errors.APIError as exc:
            return 1, str(exc.explanation or exc)
        return int(result.exit_code), result.output.decode(errors="replace")

    def run_throwaway(
        self,
        image: str,
        command: Iterable[str],
        mounts: Iterable[tuple[str, str, bool]] = (),
        devices: Iterable[str] = (),
    ) -> tuple[int, str]:
        """Run a throw-away container; returns its exit code and combined output. Host
        paths may be mounted (source, target, read-only, as in RunSpec) and host
        devices passed through ("/dev/kvm:/dev/kvm")."""
        volumes = {src: {"bind": dst, "mode": "ro" if ro else "rw"} for src, dst, ro in mounts}
        try:
            container = self._client.containers.create(
                image, list(command), volumes=volumes or None, devices=list(devices) or None
            )
        except docker.errors.APIError as exc:
            raise DietStackError(
                f"{self._on()}Docker could not run {image}: {exc.explanation}"
            ) from None
        try:
            container.start()
            exit_code = int(container.wait().get("StatusCode", 1))
            output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        finally:
            container.remove(force=True)
        return exit_code, output
