"""`dietstack deploy`: check the host, then bring every service up in order.

Services come up one after another (infrastructure, then Keystone, then the
rest); each one's bootstrap step runs first when it has not yet run with the
current configuration, then its containers are converged and waited on until
healthy. A failure stops the deploy naming node, container and step with the
tail of the log; running deploy again resumes, as every step is idempotent.
"""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dietstack import (
    backup,
    cloudapi,
    cloudsetup,
    converge,
    credentials,
    host,
    hostio,
    register,
    secrets,
    servicecheck,
    services,
)
from dietstack.converge import Action, Desired, NodePaths
from dietstack.dockerdata import RunSpec
from dietstack.errors import DietStackError
from dietstack.hostio import Host, LocalHost
from dietstack.images import build as image_build
from dietstack.model import Container, Privileges
from dietstack.progress import Progress
from dietstack.render import Env
from dietstack.runtime import DockerRuntime
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
        return {**self.settings.as_dict(), **self.own_settings, **self.facts, "nodes": self.nodes}

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


# --- planning ------------------------------------------------------------------


def _steps_file(paths: NodePaths) -> Path:
    return paths.state_dir / "steps.json"


def _done_steps(deployment: Deployment) -> dict[str, str]:
    try:
        data = json.loads(deployment.host.read_text(_steps_file(deployment.paths)) or "{}")
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in data.items()}


def _record_step(deployment: Deployment, name: str, digest: str) -> None:
    done = _done_steps(deployment)
    done[name] = digest
    text = json.dumps(done, indent=2, sort_keys=True).encode()
    deployment.host.write_file(_steps_file(deployment.paths), text, 0o644)


@dataclass(frozen=True)
class Planned:
    """One action of the plan, with what apply needs to carry it out."""

    action: Action
    #: The service it belongs to ("" for removing a retired container).
    service: str = ""
    want: Desired | None = None


def plan_steps(deployment: Deployment) -> list[Planned]:
    """Every action deploy takes on this node, in order: apply executes exactly these."""
    env = deployment.env
    actual = deployment.runtime.containers(LABEL)
    done = _done_steps(deployment)
    wanted = {container.name for container in services.all_containers(env)}
    # Orphans go first: one may hold a port its replacement needs.
    steps = [Planned(action) for action in converge.plan_orphans(wanted, actual)]
    for service in services.for_node(env):
        containers = [service.bootstrap(env)] if service.bootstrap is not None else []
        for container in containers + service.containers(env):
            want = deployment.desired(container)
            if container.oneshot:
                action = converge.plan_step(want, done.get(container.name))
            else:
                action = converge.plan_container(want, actual.get(container.name))
            steps.append(Planned(action, service.name, want))
    return steps


def plan(deployment: Deployment) -> list[Action]:
    """Every action deploy would take, in order, each with its reason."""
    return [step.action for step in plan_steps(deployment)]


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


def wait_serving(control: Deployment, node: Deployment) -> None:
    """A node is done when Nova's daemons there take work, not only when they run.

    Asked of Nova's API with the control node's credentials (a compute node has no
    admin password)."""
    node.progress.say(f"{node.node}: waiting for Nova's services to report in")
    deadline = time.monotonic() + SERVING_TIMEOUT
    while True:
        rows = servicecheck.collect(control.env, node.env, node.runtime.containers(LABEL))
        waiting = [row for row in rows if not row.ok]
        if not waiting:
            return
        if time.monotonic() > deadline:
            first = waiting[0]
            _fail(node, first.name, f"reporting to Nova's service list ({first.state})")
        time.sleep(2)


def _fail(deployment: Deployment, name: str, step: str) -> None:
    raise StepFailed(deployment.node, name, step, deployment.runtime.logs_tail(name))


def _execute(deployment: Deployment, step: Planned) -> None:
    action, want, runtime = step.action, step.want, deployment.runtime
    if action.kind == "remove":
        deployment.progress.say(f"{deployment.node}: removing {action.name}: {action.reason}")
        runtime.remove(action.name)
        return
    assert want is not None
    deployment.progress.step(f"{_prefix(deployment)}{action.name}: {action.kind} ({action.reason})")
    if action.kind == "run":
        exit_code, log = runtime.run_oneshot(want.spec)
        if exit_code != 0:
            step_name = f"bootstrap step (exit code {exit_code})"
            raise StepFailed(deployment.node, want.name, step_name, log)
        _record_step(deployment, want.name, want.config_hash)
    elif action.kind in ("create", "recreate", "start", "restart"):
        if action.kind == "restart":
            runtime.stop(want.name)
        if action.kind in ("start", "restart"):
            runtime.start(want.name)
        else:
            if action.kind == "recreate":
                runtime.remove(want.name)
            runtime.create_and_start(want.spec)
        _wait_healthy(deployment, want)
    elif action.kind == "wait":
        _wait_healthy(deployment, want)
    unchanged = action.kind in converge.UNCHANGED
    deployment.progress.done("nothing to do" if unchanged else "done")


def _prefix(deployment: Deployment) -> str:
    return f"{deployment.node}: " if deployment.remote else ""


#: Work on the control node right after one of its services' containers are up.
AFTER_SERVICE: dict[str, Callable[[Deployment], None]] = {}


def _setup_databases(deployment: Deployment) -> None:
    # Before any service's bootstrap: what `dietstack restore` brought back.
    if backup.load_pending_dump(deployment.runtime, deployment.paths.data_dir):
        deployment.progress.say("Loaded the databases of the backup")
    exit_code, output = deployment.runtime.exec("mariadb", list(mariadb.SETUP_COMMAND))
    if exit_code != 0:
        raise StepFailed(deployment.node, "mariadb", "creating databases and users", output)


def _register_keystone(deployment: Deployment) -> None:
    register.register_all(deployment.env)


def _public_network(deployment: Deployment) -> None:
    cloudsetup.ensure_public_network(cloudapi.admin(deployment.env), deployment.env)


AFTER_SERVICE["mariadb"] = _setup_databases
AFTER_SERVICE["keystone"] = _register_keystone
AFTER_SERVICE["neutron"] = _public_network


def map_compute_host(control: Deployment, node: str, timeout: float = 120) -> None:
    """Map a node's nova-compute into cell1 now, not at the next periodic discovery.

    Whether it is mapped is read from the database: `nova-manage` takes seconds to
    start, and a deploy with nothing to change should not pay that."""
    deadline = time.monotonic() + timeout
    output = ""
    while not _host_mapped(control, node):
        if time.monotonic() > deadline:
            raise StepFailed(node, "nova-compute", "mapping the compute host to cell1", output)
        _, output = control.runtime.exec(
            "nova-conductor", ["nova-manage", "cell_v2", "discover_hosts", "--by-service"]
        )
        time.sleep(1)


def _host_mapped(control: Deployment, node: str) -> bool:
    code, output = control.runtime.exec("mariadb", list(mariadb.HOST_MAPPINGS_QUERY))
    return code == 0 and node in output.split()


def prepare_node(deployment: Deployment) -> None:
    """Directories, and the inputs the containers read: the effective settings, and on
    a node other than this host its share of the secrets and the overrides."""
    paths, node = deployment.paths, deployment.host
    directories = [paths.data_dir, paths.state_dir, paths.overrides_dir]
    shared = []
    for container in services.all_containers(deployment.env):
        for mount in container.volumes:
            if not mount.source.startswith("/"):
                directories.append(paths.data_dir / mount.source)
            if mount.propagation:
                shared.append(converge.host_path(mount, paths))
    hostio.mkdirs(node, *dict.fromkeys(directories))
    for path in dict.fromkeys(shared):
        host.ensure_shared_mount(node, path)
    # Nothing under data_dir is any local user's business: volumes, images, keys.
    node.call(["chmod", "0700", str(paths.data_dir)])
    text = yaml.safe_dump(deployment.rendered_settings, sort_keys=False)
    if node.read_text(paths.effective_settings) != text:
        node.write_file(paths.effective_settings, text.encode(), 0o644)
    write_container_secrets(deployment)
    if deployment.remote:
        _copy_inputs(deployment)


def write_container_secrets(deployment: Deployment) -> None:
    """Each container's own secrets file: only what its description holds."""
    paths, node = deployment.paths, deployment.host
    hostio.mkdirs(node, paths.container_secrets_dir)
    node.call(["chmod", "0700", str(paths.container_secrets_dir)])
    for container in services.all_containers(deployment.env):
        own = secrets.used_by(container, deployment.secrets)
        text = yaml.safe_dump(own) if own else ""
        target = paths.container_secrets(container.name)
        if node.read_text(target) != text:
            node.write_file(target, text.encode(), 0o600)


def _copy_inputs(deployment: Deployment) -> None:
    """The overrides of the node's services (its secrets are in each container's file;
    the whole-node file earlier versions wrote is removed)."""
    paths, node = deployment.paths, deployment.host
    node.call(["rm", "-f", str(paths.secrets_file)])
    source = deployment.local_overrides
    for service in {c.service for c in services.all_containers(deployment.env)}:
        for file in sorted((source / service).glob("*")) if (source / service).is_dir() else ():
            target = paths.overrides_dir / service / file.name
            if node.read_text(target) != file.read_text():
                node.write_file(target, file.read_bytes(), 0o600)


def check_all_up(deployment: Deployment) -> None:
    """After the plan: every container of the node runs and none is unhealthy (one
    may have failed since it was started, or been stopped meanwhile)."""
    actual = deployment.runtime.containers(LABEL)
    down = []
    for container in services.all_containers(deployment.env):
        state = actual.get(container.name)
        if container.oneshot or (
            state is not None and state.running and state.health != "unhealthy"
        ):
            continue
        down.append(
            f"{container.name} ({'missing' if state is None else state.health or state.status})"
        )
    if down:
        first = down[0].split()[0]
        raise DietStackError(
            f"{deployment.node}: not up after deploy: {', '.join(down)}",
            details=f"--- last lines of the {first} log ---\n"
            + deployment.runtime.logs_tail(first).rstrip(),
            hint="`dietstack logs NAME` shows why; then run `dietstack deploy` again",
        )


def apply(deployment: Deployment) -> None:
    """Bring one node to its plan: exactly the actions `plan` lists, in order."""
    prepare_node(deployment)
    steps = plan_steps(deployment)
    env = deployment.env
    for index, step in enumerate(steps):
        _execute(deployment, step)
        last_of_service = index + 1 == len(steps) or steps[index + 1].service != step.service
        if not (step.service and last_of_service and env.is_control):
            continue
        after = AFTER_SERVICE.get(step.service)
        if after is not None:
            after(deployment)
    check_all_up(deployment)


def finish_control(control: Deployment) -> None:
    """What the control node does once its containers are up."""
    map_compute_host(control, control.node)
    wait_serving(control, control)
    control.progress.say("Flavors, the demo network and its security group rules")
    cloudsetup.ensure_all(control.env)
    credentials.write_clouds_yaml(control.env)


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
        privileges=Privileges(capabilities=("NET_ADMIN",)),
    )
    code, output = runtime.run_oneshot(spec)
    if code != 0:
        raise DietStackError(
            f"removing DietStack's firewall and NAT tables failed: {output.strip()}",
            hint=f"run {manual}",
        )
    return ""


def _mount_points() -> set[Path]:
    """Every mount point of this host, bind mounts of a directory of the same file
    system too (which st_dev does not tell apart)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    # The fifth field; the kernel writes space, tab, newline and backslash as \ooo.
    fields = [line.split(" ")[4] for line in lines if line.count(" ") >= 4]
    return {Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), f)) for f in fields}


def _remove_within(path: Path, device: int, mounts: set[Path], kept: list[Path]) -> bool:
    """Remove `path` and all it holds on `device`; False when something had to stay."""
    status = path.lstat()
    if status.st_dev != device or path in mounts:
        kept.append(path)
        return False
    if not stat.S_ISDIR(status.st_mode):
        path.unlink()
        return True
    # A list, not a generator: every child is visited even after one had to stay.
    emptied = all([_remove_within(child, device, mounts, kept) for child in path.iterdir()])
    if emptied:
        path.rmdir()
    return emptied


def remove_data_dir(data_dir: Path) -> list[Path]:
    """Delete data_dir and all it holds on its own file system, as `rm -rf
    --one-file-system` does: a file system mounted inside (a NAS share under
    nova/mnt) stays as it is, with all it holds. Returns those mount points. A
    data_dir that is a link or a mount point itself is emptied and kept."""
    top, mounts = data_dir.resolve(), _mount_points()
    kept: list[Path] = []
    try:
        device = top.stat().st_dev
        emptied = all([_remove_within(child, device, mounts, kept) for child in top.iterdir()])
        if emptied and not data_dir.is_symlink() and top not in mounts:
            top.rmdir()
    except OSError as exc:
        raise DietStackError(
            f"removing {exc.filename or data_dir} failed: {exc.strerror}",
            hint="stop what uses it, then run `dietstack destroy --data` again",
        ) from None
    return kept


def _left_mounted(data_dir: Path, kept: list[Path]) -> str:
    listed = ", ".join(str(path) for path in kept)
    return (
        f"{len(kept)} mounted file system(s) in {data_dir} stay as they are, with all they "
        f"hold: {listed}. Unmount each (`umount PATH`), then remove what is left with "
        f"`rm -rf --one-file-system {data_dir}`"
    )


def destroy(
    runtime: DockerRuntime, data_dir: Path | None, ovn_image: str | None
) -> tuple[int, str]:
    """Remove every DietStack container and its host tables, and the data when given
    (never what is mounted in it). Returns how many containers were removed and a
    note on what was left, if anything."""
    names = sorted(runtime.containers(LABEL))
    for name in names:
        runtime.remove(name)
    note = remove_host_tables(runtime, ovn_image)
    if data_dir is not None and data_dir.exists():
        kept = remove_data_dir(data_dir)
        if kept:
            note = "; ".join(filter(None, [note, _left_mounted(data_dir, kept)]))
    return len(names), note
