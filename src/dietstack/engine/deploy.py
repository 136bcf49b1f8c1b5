"""`dietstack deploy`: check the host, then bring every service up in order.

Services come up one after another (infrastructure, then Keystone, then the
rest); each one's bootstrap step runs first when it has not yet run with the
current configuration (started early, once MariaDB is set up: see earlysteps),
then its containers are converged and waited on until healthy. A failure stops
the deploy naming node, container and step with the tail of the log; running
deploy again resumes, as every step is idempotent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from dietstack import releases, services
from dietstack.engine import converge, secrets
from dietstack.engine.afterup import AFTER_SERVICE
from dietstack.engine.converge import Action, Desired, NodePaths
from dietstack.engine.deployment import LABEL, Deployment, StepFailed
from dietstack.engine.earlysteps import EarlySteps
from dietstack.engine.settings import Settings
from dietstack.errors import DietStackError
from dietstack.hosts import hostio
from dietstack.hosts import provision as host
from dietstack.hosts.dockerdata import ContainerState, RunSpec
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images import build as image_build
from dietstack.model import LIVE_HASH_FILE
from dietstack.progress import Progress
from dietstack.render import Env, live_paths, render_files

__all__ = ["LABEL", "Deployment", "StepFailed", "apply", "plan"]

HEALTH_GRACE = 90


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
                have = actual.get(container.name)
                live_now = _live_now(deployment, want, have)
                action = converge.plan_container(want, have, live_now)
            steps.append(Planned(action, service.name, want))
    return steps


def _live_now(deployment: Deployment, want: Desired, have: ContainerState | None) -> str:
    """The hash of the live files the running, otherwise up-to-date container holds."""
    if not want.live_hash or have is None or not have.running:
        return ""
    if have.labels.get(converge.LABEL_HASH) != want.config_hash:
        return ""
    code, output = deployment.runtime.exec(want.name, ["cat", LIVE_HASH_FILE])
    return output.strip() if code == 0 else ""


def reload_in_place(deployment: Deployment, want: Desired) -> None:
    """Rewrite the container's live files where they are, then run its reload
    commands: the container, and what runs in it, keep running."""
    runtime, name = deployment.runtime, want.name
    live = live_paths(want.container)
    rendered = render_files(want.container, None)
    for path in sorted(live):
        content, mode = rendered[path]
        # The content goes in the environment of this one command, never its arguments.
        code, output = runtime.exec(
            name,
            ["sh", "-c", WRITE_IN_PLACE, "write", path, f"{mode:o}"],
            environment={"DIETSTACK_CONTENT": content.decode()},
        )
        if code != 0:
            raise StepFailed(deployment.node, name, f"rewriting {path}", output)
    for command in want.container.reload:
        code, output = runtime.exec(name, ["sh", "-ec", command])
        if code != 0:
            raise StepFailed(deployment.node, name, f"reloading ({command})", output)
    runtime.exec(
        name,
        ["sh", "-c", 'printf %s "$DIETSTACK_CONTENT" > ' + LIVE_HASH_FILE],
        environment={"DIETSTACK_CONTENT": want.live_hash},
    )


#: Replaces $1 with the content given, mode $2 from the start.
WRITE_IN_PLACE = (
    'umask 077 && printf %s "$DIETSTACK_CONTENT" > "$1.new" && chmod "$2" "$1.new" '
    '&& mv -f "$1.new" "$1"'
)


def plan(deployment: Deployment) -> list[Action]:
    """Every action deploy would take, in order, each with its reason."""
    return [step.action for step in plan_steps(deployment)]


# --- applying ------------------------------------------------------------------


def _wait_healthy(deployment: Deployment, want: Desired) -> None:
    """Wait until the container's own health check passes.

    The check is run here every second rather than waiting for the container's
    watcher, which checks every few seconds while it starts (start/heal.py).
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


def _fail(deployment: Deployment, name: str, step: str) -> None:
    raise StepFailed(deployment.node, name, step, deployment.runtime.logs_tail(name))


def _execute(deployment: Deployment, step: Planned, early: EarlySteps) -> None:
    action, want, runtime = step.action, step.want, deployment.runtime
    if action.kind == "remove":
        deployment.progress.say(f"{deployment.node}: removing {action.name}: {action.reason}")
        runtime.remove(action.name)
        return
    assert want is not None
    deployment.progress.step(f"{_prefix(deployment)}{action.name}: {action.kind} ({action.reason})")
    if action.kind == "run":
        exit_code, log = early.run(want.spec)
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
    elif action.kind == "reload":
        reload_in_place(deployment, want)
        _wait_healthy(deployment, want)
    elif action.kind == "wait":
        _wait_healthy(deployment, want)
    unchanged = action.kind in converge.UNCHANGED
    deployment.progress.done("nothing to do" if unchanged else "done")


def _prefix(deployment: Deployment) -> str:
    return f"{deployment.node}: " if deployment.remote else ""


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
    """Bring one node to its plan: exactly the actions `plan` lists, in order (the
    bootstrap steps among them may start early: see earlysteps)."""
    prepare_node(deployment)
    steps = plan_steps(deployment)
    env = deployment.env
    early = EarlySteps(deployment.runtime)
    try:
        for index, step in enumerate(steps):
            _execute(deployment, step, early)
            last_of_service = index + 1 == len(steps) or steps[index + 1].service != step.service
            if not (step.service and last_of_service and env.is_control):
                continue
            after = AFTER_SERVICE.get(step.service)
            if after is not None:
                after(deployment)
            if step.service == EARLY_AFTER and not env.upgrading:
                early.start(_bootstraps(steps[index + 1 :]))
    finally:
        if running := early.under_way():
            deployment.progress.say(f"waiting for {', '.join(running)} to end")
        early.close()
    check_all_up(deployment)


#: The service after which the bootstraps may start: it creates their databases.
#: (An upgrade keeps them in their turn, each right before its own service.)
EARLY_AFTER = "mariadb"


def _bootstraps(steps: list[Planned]) -> list[RunSpec]:
    return [step.want.spec for step in steps if step.action.kind == "run" and step.want]


def total_steps(env: Env) -> int:
    return len(services.all_containers(env))


def images_for(
    runtime: DockerRuntime,
    settings: Settings,
    progress: Progress,
    build: bool,
    images_built: Callable[[dict[str, str]], None] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Tags and IDs of the images to run (of the settings' release); builds missing
    ones when asked to (`images_built`: see image_build.build)."""
    release = releases.named(settings.release)
    if build:
        planned = image_build.build(
            runtime,
            settings.base_image,
            settings.debian_mirror,
            progress,
            release,
            images_built=images_built,
        )
    else:
        planned = image_build.plan_local(runtime, settings.base_image, release)
    tags = image_build.tags_of(planned)
    ids = {name: runtime.image_id(tag) or tag for name, tag in tags.items()}
    return tags, ids
