"""`dietstack deploy`: check the host, then bring every service up in order.

Services come up one after another (infrastructure, then Keystone, then the
rest); each one's bootstrap step runs first when it has not yet run with the
current configuration, then its containers are converged and waited on until
healthy. A failure stops the deploy naming node, container and step with the
tail of the log; running deploy again resumes, as every step is idempotent.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dietstack import cloudsetup, converge, credentials, host, register, servicecheck, services
from dietstack.converge import Action, Desired, NodePaths
from dietstack.errors import DietStackError
from dietstack.images import build as image_build
from dietstack.model import Container
from dietstack.progress import Progress
from dietstack.render import Env
from dietstack.runtime import DockerRuntime, RunSpec
from dietstack.services import firewall, mariadb
from dietstack.settings import Settings

LABEL = converge.LABEL_CONTAINER
HEALTH_GRACE = 90
#: How long Nova's daemons may take to report in once their containers are healthy.
SERVING_TIMEOUT = 180


class StepFailed(DietStackError):
    def __init__(self, node: str, container: str, step: str, log: str, hint: str = "") -> None:
        super().__init__(
            f"{node}: {container}: {step} failed",
            details=f"--- last lines of the {container} log ---\n{log.rstrip()}" if log else "",
            hint=hint
            or "fix the cause shown above and run `dietstack deploy` again; it resumes where "
            "it stopped",
        )


@dataclass
class Deployment:
    """One deploy of one node: inputs, the runtime and the images to run."""

    settings: Settings
    secrets: dict[str, str]
    paths: NodePaths
    runtime: DockerRuntime
    image_tags: dict[str, str]
    image_ids: dict[str, str]
    progress: Progress
    #: What deploy found out about this node (see facts.py); rendered like settings.
    facts: dict[str, str]
    #: The other nodes of the cloud (inventory.py); rendered like settings.
    nodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def node(self) -> str:
        """The name errors give this node: the one Nova and OVN know it by."""
        return self.env.node

    @property
    def env(self) -> Env:
        return Env(self.rendered_settings, self.secrets)

    @property
    def rendered_settings(self) -> dict[str, Any]:
        """What the containers render from: settings, this node's facts, the inventory."""
        return {**self.settings.as_dict(), **self.facts, "nodes": self.nodes}

    def desired(self, container: Container) -> Desired:
        tag = self.image_tags[container.image]
        return converge.desired(
            container, self.env, self.paths, tag, self.image_ids.get(container.image, tag)
        )


# --- planning ------------------------------------------------------------------


def _steps_file(paths: NodePaths) -> Path:
    return paths.state_dir / "steps.json"


def _done_steps(paths: NodePaths) -> dict[str, str]:
    try:
        data = json.loads(_steps_file(paths).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def _record_step(paths: NodePaths, name: str, digest: str) -> None:
    done = _done_steps(paths)
    done[name] = digest
    path = _steps_file(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(done, indent=2, sort_keys=True))
    tmp.replace(path)


def plan(deployment: Deployment) -> list[Action]:
    """Every action deploy would take, in order, each with its reason."""
    actual = deployment.runtime.containers(LABEL)
    done = _done_steps(deployment.paths)
    containers = services.all_containers(deployment.env)
    # Orphans go first: one may hold a port its replacement needs.
    actions = converge.plan_orphans({container.name for container in containers}, actual)
    for container in containers:
        want = deployment.desired(container)
        if container.oneshot:
            actions.append(converge.plan_step(want, done.get(container.name)))
        else:
            actions.append(converge.plan_container(want, actual.get(container.name)))
    return actions


# --- applying ------------------------------------------------------------------


def _wait_healthy(deployment: Deployment, want: Desired) -> None:
    """Wait until the container's own health check passes.

    The check is run here every second rather than waiting for Docker's
    schedule, whose first check only comes after a whole interval.
    """
    health = want.container.healthcheck
    deadline = time.monotonic() + (health.start_period if health else 0) + HEALTH_GRACE
    running_since: float | None = None
    while True:
        state = deployment.runtime.state(want.name)
        if state is None or state.status in ("exited", "dead", "restarting"):
            status = state.status if state else "gone"
            _fail(deployment, want.name, f"starting (container {status})")
        if state is not None and state.running:
            running_since = running_since or time.monotonic()
            if health is None:
                if time.monotonic() - running_since >= 3:
                    return
            elif (
                state.health == "healthy"
                or deployment.runtime.exec(want.name, list(health.test))[0] == 0
            ):
                return
        if time.monotonic() > deadline:
            _fail(deployment, want.name, "waiting until healthy (timed out)")
        time.sleep(1)


def _wait_serving(deployment: Deployment) -> None:
    """Deploy is done when Nova's daemons take work, not only when they run."""
    deployment.progress.say("Waiting for Nova's services to report in")
    deadline = time.monotonic() + SERVING_TIMEOUT
    while True:
        rows = servicecheck.collect(deployment.env, deployment.runtime.containers(LABEL))
        waiting = [row for row in rows if not row.ok]
        if not waiting:
            return
        if time.monotonic() > deadline:
            first = waiting[0]
            _fail(deployment, first.name, f"reporting to Nova's service list ({first.state})")
        time.sleep(2)


def _fail(deployment: Deployment, name: str, step: str) -> None:
    raise StepFailed(deployment.node, name, step, deployment.runtime.logs_tail(name))


def _apply(deployment: Deployment, want: Desired, action: Action) -> None:
    runtime = deployment.runtime
    if action.kind == "noop":
        return
    if action.kind == "start":
        runtime.start(want.name)
    else:
        if action.kind == "recreate":
            runtime.remove(want.name)
        runtime.create_and_start(want.spec)
    _wait_healthy(deployment, want)


def _run_step(deployment: Deployment, want: Desired) -> None:
    exit_code, log = deployment.runtime.run_oneshot(want.spec)
    if exit_code != 0:
        raise StepFailed(deployment.node, want.name, f"bootstrap step (exit code {exit_code})", log)
    _record_step(deployment.paths, want.name, want.config_hash)


def _converge_container(deployment: Deployment, container: Container) -> None:
    want = deployment.desired(container)
    progress = deployment.progress
    if container.oneshot:
        action = converge.plan_step(want, _done_steps(deployment.paths).get(container.name))
        progress.step(f"{container.name}: {action.kind} ({action.reason})")
        if action.kind == "run":
            _run_step(deployment, want)
    else:
        state = deployment.runtime.state(container.name)
        action = converge.plan_container(want, state)
        progress.step(f"{container.name}: {action.kind} ({action.reason})")
        _apply(deployment, want, action)
    progress.done("done" if action.kind not in ("noop", "skip") else "nothing to do")


#: Work that belongs right after a service's containers are up.
AFTER_SERVICE: dict[str, Callable[[Deployment], None]] = {}


def _setup_databases(deployment: Deployment) -> None:
    exit_code, output = deployment.runtime.exec("mariadb", list(mariadb.SETUP_COMMAND))
    if exit_code != 0:
        raise StepFailed(deployment.node, "mariadb", "creating databases and users", output)


def _register_keystone(deployment: Deployment) -> None:
    register.register_all(deployment.env)


def _discover_compute_hosts(deployment: Deployment, timeout: float = 120) -> None:
    """Map this node's nova-compute into cell1 now, not at the next periodic discovery."""
    deadline = time.monotonic() + timeout
    output = ""
    while time.monotonic() < deadline:
        deployment.runtime.exec(
            "nova-conductor", ["nova-manage", "cell_v2", "discover_hosts", "--by-service"]
        )
        code, output = deployment.runtime.exec(
            "nova-conductor", ["nova-manage", "cell_v2", "list_hosts"]
        )
        if code == 0 and f" {deployment.env.node} " in output:
            return
        time.sleep(3)
    raise StepFailed(deployment.node, "nova-compute", "mapping the compute host to cell1", output)


AFTER_SERVICE["mariadb"] = _setup_databases
AFTER_SERVICE["keystone"] = _register_keystone
AFTER_SERVICE["nova-compute"] = _discover_compute_hosts


def prepare_node(deployment: Deployment) -> None:
    """Directories and the effective settings file the containers read."""
    paths = deployment.paths
    for directory in (paths.data_dir, paths.state_dir, paths.overrides_dir):
        directory.mkdir(parents=True, exist_ok=True)
    for container in services.all_containers(deployment.env):
        for mount in container.volumes:
            if not mount.source.startswith("/"):
                (paths.data_dir / mount.source).mkdir(parents=True, exist_ok=True)
            if mount.propagation:
                host.ensure_shared_mount(converge.host_path(mount, paths))
    target = paths.effective_settings
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(deployment.rendered_settings, sort_keys=False)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


def apply(deployment: Deployment) -> None:
    prepare_node(deployment)
    env = deployment.env
    # Containers no service describes any more (e.g. after an upgrade of DietStack)
    # go first: one may hold a port that its replacement needs.
    wanted = {container.name for container in services.all_containers(env)}
    for action in converge.plan_orphans(wanted, deployment.runtime.containers(LABEL)):
        deployment.progress.say(f"removing {action.name}: {action.reason}")
        deployment.runtime.remove(action.name)
    for service in services.SERVICES:
        if service.bootstrap is not None:
            _converge_container(deployment, service.bootstrap(env))
        for container in service.containers(env):
            _converge_container(deployment, container)
        after = AFTER_SERVICE.get(service.name)
        if after is not None:
            after(deployment)
        if service.setup is not None:
            service.setup(register.admin_client(env), env)
    _wait_serving(deployment)
    deployment.progress.say("Flavors, the demo network and its security group rules")
    cloudsetup.ensure_all(env)
    credentials.write_clouds_yaml(env)


def total_steps(env: Env) -> int:
    return len(services.all_containers(env))


def images_for(
    runtime: DockerRuntime, settings: Settings, progress: Progress, build: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Tags and IDs of the images to run; builds missing ones when asked to."""
    if build:
        planned = image_build.build(runtime, settings.base_image, settings.debian_mirror, progress)
    else:
        planned = image_build.plan_local(runtime, settings.base_image)
    tags = image_build.tags_of(planned)
    ids = {name: runtime.image_id(tag) or tag for name, tag in tags.items()}
    return tags, ids


def remove_host_tables(runtime: DockerRuntime, ovn_image: str | None) -> str:
    """Delete DietStack's nftables tables (firewall, br-ex NAT) from the host; returns
    a note when that was not possible.

    The host may have no `nft` of its own: it runs in the image that applied them."""
    manual = f"`nft delete table inet {firewall.TABLE}` and `nft delete table ip dietstack`"
    if ovn_image is None:
        # Only that image applies them: without it, they are gone or were removed by hand.
        return f"the ovn image is missing, so any firewall table left must be removed with {manual}"
    spec = RunSpec(
        name="dietstack-remove-host-tables",
        image=ovn_image,
        command=("--", *firewall.REMOVE_COMMAND),
        labels={},
        capabilities=("NET_ADMIN",),
    )
    code, output = runtime.run_oneshot(spec)
    if code != 0:
        raise DietStackError(
            f"removing DietStack's firewall and NAT tables failed: {output.strip()}",
            hint=f"run {manual}",
        )
    return ""


def destroy(
    runtime: DockerRuntime, data_dir: Path | None, ovn_image: str | None
) -> tuple[int, str]:
    """Remove every DietStack container and its host tables, and the data when given.
    Returns how many containers were removed and a note on the tables, if any."""
    names = sorted(runtime.containers(LABEL))
    for name in names:
        runtime.remove(name)
    note = remove_host_tables(runtime, ovn_image)
    if data_dir is not None and data_dir.exists():
        shutil.rmtree(data_dir)
    return len(names), note
