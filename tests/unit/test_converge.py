from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dietstack import services
from dietstack.engine import converge
from dietstack.engine.converge import Desired, NodePaths
from dietstack.hosts.dockerdata import ContainerState
from dietstack.hosts.runtime import DockerRuntime
from dietstack.render import Env

from .helpers import make_env

IMAGES = {
    name: f"dietstack/{name}:2026.1-aaaaaaaaaaaa"
    for name in (
        "openstack",
        "horizon",
        "mariadb",
        "rabbitmq",
        "memcached",
        "ovn",
        "libvirt",
        "nfs",
    )
}


@pytest.fixture
def paths(tmp_path: Path) -> NodePaths:
    return NodePaths(tmp_path / "secrets.yaml", tmp_path / "overrides", tmp_path / "data")


def desired_all(env: Env, paths: NodePaths, images: dict[str, str] = IMAGES) -> list[Desired]:
    return [
        converge.desired(c, env, paths, images[c.image], f"id-of-{images[c.image]}")
        for c in services.all_containers(env)
    ]


def running(want: Desired, status: str = "running") -> ContainerState:
    return ContainerState(want.name, status, "healthy", dict(want.spec.labels), 0)


def plan(
    wanted: list[Desired], actual: dict[str, ContainerState], live: dict[str, str] | None = None
) -> dict[str, str]:
    """Each container's action; `live` is what its live files hold (by default what
    the description says: what its start wrote)."""
    held = live or {}
    return {
        w.name: converge.plan_container(w, actual.get(w.name), held.get(w.name, w.live_hash)).kind
        for w in wanted
        if not w.container.oneshot
    }


def test_nothing_deployed_creates_everything(paths: NodePaths) -> None:
    kinds = plan(desired_all(make_env(), paths), {})
    assert set(kinds.values()) == {"create"}


def test_no_change_no_action(paths: NodePaths) -> None:
    wanted = desired_all(make_env(), paths)
    actual = {w.name: running(w) for w in wanted}
    assert set(plan(desired_all(make_env(), paths), actual).values()) == {"noop"}


def test_change_of_one_services_config_recreates_only_that_service(paths: NodePaths) -> None:
    before = desired_all(make_env(), paths)
    actual = {w.name: running(w) for w in before}
    (paths.overrides_dir / "nova").mkdir(parents=True)
    (paths.overrides_dir / "nova" / "nova.conf").write_text("[DEFAULT]\ndebug = true\n")
    kinds = plan(desired_all(make_env(), paths), actual)
    recreated = {name for name, kind in kinds.items() if kind == "recreate"}
    assert recreated == {
        "nova-api",
        "nova-conductor",
        "nova-novncproxy",
        "nova-compute",
    }


def test_changed_setting_recreates_only_containers_that_use_it(paths: NodePaths) -> None:
    before = desired_all(make_env(), paths)
    actual = {w.name: running(w) for w in before}
    kinds = plan(desired_all(make_env(api_workers=2), paths), actual)
    assert kinds["mariadb"] == kinds["rabbitmq"] == kinds["ovn-northd"] == "noop"
    assert kinds["keystone"] == kinds["nova-api"] == kinds["heat-api"] == "recreate"


def test_rebuilt_image_recreates_its_containers_only(paths: NodePaths) -> None:
    before = desired_all(make_env(), paths)
    actual = {w.name: running(w) for w in before}
    images = {**IMAGES, "mariadb": "dietstack/mariadb:2026.1-bbbbbbbbbbbb"}
    wanted = desired_all(make_env(), paths, images)
    kinds = plan(wanted, actual)
    assert [name for name, kind in kinds.items() if kind == "recreate"] == ["mariadb"]
    mariadb = next(want for want in wanted if want.name == "mariadb")
    action = converge.plan_container(mariadb, actual["mariadb"])
    assert action.reason == "new image dietstack/mariadb:2026.1-bbbbbbbbbbbb"


def test_new_certificates_of_libvirt_are_rewritten_in_place_not_recreated(
    paths: NodePaths,
) -> None:
    """Making libvirt's container anew would end every guest: its certificates (and
    the revocation list) are live files, rewritten where it runs."""
    before = desired_all(make_env(), paths)
    held = {w.name: w.live_hash for w in before}
    actual = {w.name: running(w) for w in before}
    renewed = make_env()
    renewed.secrets["libvirt_node1_certificate"] = "a renewed certificate"
    kinds = plan(desired_all(renewed, paths), actual, held)
    assert kinds["libvirt"] == "reload"
    # Those that present it otherwise (RabbitMQ's client, ovn-controller) are made anew.
    assert kinds["ovn-controller"] == "recreate"
    assert {kind for name, kind in kinds.items() if name != "libvirt"} <= {"noop", "recreate"}
    libvirt = next(w for w in desired_all(renewed, paths) if w.name == "libvirt")
    assert libvirt.container.reload and "server-update-tls" in " ".join(libvirt.container.reload)
    # A container that has not yet recorded its live files is brought up to date too.
    assert converge.plan_container(libvirt, actual["libvirt"], "").kind == "reload"


def test_stopped_container_is_started(paths: NodePaths) -> None:
    (want,) = [w for w in desired_all(make_env(), paths) if w.name == "keystone"]
    action = converge.plan_container(want, running(want, "exited"))
    assert (action.kind, action.reason) == ("start", "container is exited")


def test_unhealthy_container_is_restarted(paths: NodePaths) -> None:
    (want,) = [w for w in desired_all(make_env(), paths) if w.name == "neutron-workers"]
    sick = dataclasses.replace(running(want), health="unhealthy")
    action = converge.plan_container(want, sick)
    assert (action.kind, action.reason) == ("restart", "container is running but unhealthy")
    assert converge.plan_container(want, running(want)).kind == "noop"


def test_a_container_whose_check_has_not_passed_yet_is_waited_on(paths: NodePaths) -> None:
    (want,) = [w for w in desired_all(make_env(), paths) if w.name == "keystone"]
    starting = dataclasses.replace(running(want), health="starting")
    action = converge.plan_container(want, starting)
    assert action.kind == "wait" and action.kind in converge.UNCHANGED


def test_orphans_are_removed(paths: NodePaths) -> None:
    wanted = desired_all(make_env(), paths)
    actual = {w.name: running(w) for w in wanted}
    old = running(wanted[0])
    actual["old-thing"] = ContainerState("old-thing", "running", None, old.labels, 0)
    orphans = converge.plan_orphans({w.name for w in wanted}, actual)
    assert [(a.kind, a.name) for a in orphans] == [("remove", "old-thing")]


def test_bootstrap_steps_run_once_per_configuration(paths: NodePaths) -> None:
    (step,) = [w for w in desired_all(make_env(), paths) if w.name == "nova-bootstrap"]
    assert converge.plan_step(step, None).kind == "run"
    assert converge.plan_step(step, step.config_hash).kind == "skip"
    assert converge.plan_step(step, "older").kind == "run"


def test_containers_get_inputs_read_only_and_data_under_data_dir(paths: NodePaths) -> None:
    (want,) = [w for w in desired_all(make_env(), paths) if w.name == "mariadb"]
    mounts = {target: (source, mode) for source, target, mode in want.spec.mounts}
    assert mounts["/etc/dietstack/secrets.yaml"] == (str(paths.container_secrets("mariadb")), "ro")
    assert mounts["/var/lib/mysql"] == (str(paths.data_dir / "mariadb"), "rw")
    assert want.spec.command == ("mariadb",)


def test_a_container_runs_with_its_own_privileges_only(paths: NodePaths) -> None:
    wanted = {w.name: w for w in desired_all(make_env(), paths)}
    created: dict[str, dict[str, Any]] = {}

    class Containers:
        def create(self, image: str, command: list[str], **options: Any) -> Any:
            created[options["name"]] = options
            return SimpleNamespace(start=lambda: None)

    runtime = DockerRuntime(SimpleNamespace(containers=Containers()))
    for name in ("libvirt", "keystone"):
        runtime.create_and_start(wanted[name].spec)
        privileges = wanted[name].container.privileges
        assert wanted[name].spec.privileges == privileges
        assert created[name]["cap_add"] == (list(privileges.capabilities) or None)
    assert created["libvirt"]["cap_add"] and created["keystone"]["cap_add"] is None


def nova_mnt_propagation(environment: Env, container_name: str) -> str:
    from dietstack.services import libvirt, nova

    containers = [*libvirt.containers(environment), *nova.compute(environment)]
    container = next(c for c in containers if c.name == container_name)
    (mount,) = [m for m in container.volumes if m.target == "/var/lib/nova/mnt"]
    return mount.propagation


def test_nova_mounts_of_an_external_share_reach_qemu() -> None:
    nas = make_env(nfs_share="nas.lan:/volumes")
    assert nova_mnt_propagation(nas, "nova-compute") == "rshared"
    assert nova_mnt_propagation(nas, "libvirt") == "rslave"
    # This node's own share is bind-mounted into both; nothing to propagate.
    assert nova_mnt_propagation(make_env(), "nova-compute") == ""
    assert nova_mnt_propagation(make_env(), "libvirt") == ""


def test_a_reload_rewrites_each_live_file_then_runs_the_reload_and_records_it(
    paths: NodePaths,
) -> None:
    from dietstack.engine import deploy
    from dietstack.model import LIVE_HASH_FILE

    (want,) = [w for w in desired_all(make_env(), paths) if w.name == "libvirt"]
    calls: list[tuple[list[str], dict[str, str]]] = []

    class Runtime:
        def exec(
            self, name: str, command: list[str], environment: dict[str, str] | None = None
        ) -> tuple[int, str]:
            assert name == "libvirt"
            calls.append((command, environment or {}))
            return 0, ""

    deployment = SimpleNamespace(runtime=Runtime(), node="node1")
    deploy.reload_in_place(deployment, want)  # type: ignore[arg-type]
    written = {c[4]: env["DIETSTACK_CONTENT"] for c, env in calls if c[3:4] == ["write"]}
    assert written["/etc/pki/libvirt/servercert.pem"] == "s-libvirt_node1_certificate"
    assert written["/etc/pki/CA/cacrl.pem"] == "s-libvirt_crl"
    # Key material goes in the environment, never in the command line.
    assert not any("s-libvirt_node1_key" in " ".join(c) for c, _ in calls)
    reloads = [c[2] for c, _ in calls if c[:2] == ["sh", "-ec"]]
    assert reloads == list(want.container.reload)
    last, environment = calls[-1]
    assert LIVE_HASH_FILE in last[-1] and environment["DIETSTACK_CONTENT"] == want.live_hash
