"""`dietstack upgrade`: a running cloud moved to the next OpenStack release in place,
its instances running throughout.

The order is upstream's (each project's upgrade guide):

1. checks, on the running release, before anything changes: the path is one
   upstream supports, every container, endpoint and Nova service is up,
   `nova-status upgrade check` passes, the online data migrations are complete,
   and there is room for the new images;
2. a backup of the whole cloud (`dietstack restore` brings it back);
3. the new release's images, built here and copied to each node as it comes;
4. the control plane, in deploy's order: Keystone (its schema expanded and
   migrated), Glance, Placement before Nova (`nova-manage api_db sync`, `db
   sync`), Neutron (expand only), Cinder, Heat, Horizon; with the control node's
   own nova-compute. New Nova services speak the oldest compute's RPC version
   (`[upgrade_levels] compute = auto`);
5. the compute nodes one at a time;
6. the online data migrations of the new release, then the pins lifted: every
   service runs without the RPC cap, and the schemas are contracted.

Only the openstack and horizon images differ between releases, so libvirt, OVN
and Open vSwitch keep running: no guest stops. Were libvirt to be restarted on a
node, that node's instances would be moved live to another node first.

An upgrade that stops (a failed step) is resumed by running `dietstack upgrade`
again; the pre-upgrade backup stays where it was written.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from dietstack import releases
from dietstack.apis import cloudapi
from dietstack.app import cloud as clouds
from dietstack.app import looking, nodedeploy, nodeimages, nodes, recovery
from dietstack.app.cloud import Cloud
from dietstack.engine import afterup, deploy
from dietstack.engine.deployment import Deployment
from dietstack.engine.upgradestate import UnderWay
from dietstack.errors import DietStackError
from dietstack.hosts.provision import BUILD_SPACE_BYTES, check_free_space
from dietstack.images.catalog import IMAGES
from dietstack.ops import drain, status, upgradesteps
from dietstack.progress import Progress

#: What old and new Nova services agree on while both run.
PIN = "auto"
#: Containers whose restart stops the guests of their node.
STOPS_GUESTS = ("libvirt",)


RELEASE_LINE = re.compile(r"^release:.*$", re.MULTILINE)


def set_release(path: Path, release: str) -> None:
    """Set `release` in the settings file, keeping every other line (and comment)."""
    text = path.read_text(encoding="utf-8")
    line = f"release: '{release}'"
    if RELEASE_LINE.search(text):
        text = RELEASE_LINE.sub(line, text, count=1)
    else:
        text = f"{line}\n{text}"
    # Written in place: the file keeps its owner and mode.
    path.write_text(text, encoding="utf-8")


@dataclass
class Upgraded:
    source: str
    target: str
    backup: Path
    #: (step, seconds), in order.
    timings: list[tuple[str, float]] = field(default_factory=list)
    #: What the checks said without stopping the upgrade (nova-status warnings).
    warnings: list[str] = field(default_factory=list)
    cloud: Cloud | None = None


def chosen_target(source: str, wanted: str | None) -> str:
    """The release to upgrade to: `wanted`, or the newest one `source` may go to."""
    if wanted is None:
        targets = releases.upgrade_targets(source)
        if not targets:
            raise DietStackError(
                f"the cloud runs OpenStack {source}, the newest release this DietStack "
                "deploys; there is nothing to upgrade to"
            )
        wanted = targets[-1]
    problem = releases.upgrade_problem(source, wanted)
    if problem:
        raise DietStackError(f"{problem}; nothing was changed")
    return wanted


def running_release(inputs: clouds.Inputs) -> str:
    running = inputs.deployed_release()
    if running is None:
        raise DietStackError(
            "there is no deployed cloud to upgrade here",
            hint="`dietstack deploy` installs one (of the newest release)",
        )
    return running


def plan_lines(config_path: Path, wanted: str | None) -> list[str]:
    """What `dietstack upgrade` would do, step by step; nothing is changed."""
    inputs = clouds.read_inputs(config_path)
    underway = UnderWay.read(inputs.paths.state_dir)
    source = underway.source if underway else running_release(inputs)
    target = underway.target if underway else chosen_target(source, wanted)
    nodes_ = [record.name for record in inputs.records]
    lines = [f"Upgrade OpenStack {source} -> {releases.named(target).title}:"]
    if underway:
        lines.append(f"  (under way: resumes; the backup is {underway.backup})")
    else:
        lines += [
            "  1. checks: every service up, nova-status upgrade check, online data "
            "migrations complete, room for the images",
            f"  2. a backup of the cloud in {default_backup_dir(config_path)}",
        ]
    lines += [
        f"  3. build the {target} images (openstack, horizon); the others stay",
        "  4. control plane, Nova's compute RPC pinned to auto: keystone (expand, migrate), "
        "glance, placement, nova (api_db sync, db sync), neutron (expand), cinder, heat, "
        "horizon, and this node's nova-compute",
        *(f"  5. compute node {name} (its images copied, then its containers)" for name in nodes_),
        *(() if nodes_ else ("  5. no compute node besides this one",)),
        "  6. online data migrations (nova, cinder); pins lifted: Nova without the RPC cap, "
        "Keystone and Neutron contracted",
        "  libvirt, OVN and Open vSwitch are not restarted: instances keep running",
    ]
    return lines


def default_backup_dir(config_path: Path) -> Path:
    """Beside the settings, not in data_dir: `destroy --data` must leave it."""
    return config_path.parent / "backups"


def check_before(cloud: Cloud, target: str, say: Callable[[str], None]) -> list[str]:
    """Every check on the running release; returns warnings that do not stop it."""
    control = cloud.control
    say("Checking every container, endpoint and Nova service")
    complaints: list[str] = []
    report = looking.status_report(cloud.config_path, complaints.append)
    if complaints or not report.healthy:
        raise DietStackError(
            "the cloud is not fully up; an upgrade starts from a healthy cloud; nothing was "
            "changed" + "".join(f"\n  - {complaint}" for complaint in complaints),
            details=status.render(report),
            hint="`dietstack deploy` repairs what is down; then `dietstack upgrade` again",
        )
    check_free_space(control.runtime.root_dir(), BUILD_SPACE_BYTES, f"building the {target} images")
    say("nova-status upgrade check")
    warning = upgradesteps.nova_upgrade_check(control.runtime, control.node)
    say("Online data migrations of the running release")
    upgradesteps.run_online_migrations(control.runtime, control.node, say)
    return [warning] if warning else []


def stops_guests(node: Deployment) -> bool:
    """Whether bringing the node to its plan would restart what runs its guests."""
    return any(
        action.name in STOPS_GUESTS and action.kind in ("recreate", "restart")
        for action in deploy.plan(node)
    )


def upgrade_compute(cloud: Cloud, record_name: str, progress: Progress) -> None:
    """One compute node on the new images; moved empty first if its guests would stop."""
    record = cloud.record(record_name)
    node, _ = nodedeploy.prepare(cloud, record, progress, probe=False)
    if not stops_guests(node):
        nodes.deploy_node(cloud, record, progress)
        return
    conn = cloudapi.admin(cloud.control.env)
    progress.say(f"{record_name}: libvirt must restart: its instances move to other nodes first")
    moved, stuck = drain.drain(conn, record_name, progress)
    if stuck:
        raise DietStackError(
            f"{record_name}: {len(stuck)} instance(s) could not be moved "
            f"({'; '.join(f'{s.name}: {s.reason}' for s in stuck)}); the node was not upgraded",
            hint=f"move or stop them, then `dietstack node undrain {record_name}` and "
            "`dietstack upgrade` again",
        )
    nodes.deploy_node(cloud, record, progress)
    drain.undrain(conn, record_name)
    progress.say(f"{record_name}: serving again ({len(moved)} instance(s) were moved away)")


def pinned(cloud: Cloud, pin: str) -> Cloud:
    return replace(cloud, control=replace(cloud.control, compute_rpc_pin=pin))


def timed(
    upgraded: Upgraded, step: str, say: Callable[[str], None], work: Callable[[], object]
) -> None:
    say(f"== {step}")
    started = time.monotonic()
    work()
    upgraded.timings.append((step, time.monotonic() - started))


def upgrade(config_path: Path, wanted: str | None, backup: Path | None, verbose: bool) -> Upgraded:
    """Checks, backup, then every node moved to the new release (see the module)."""
    inputs = clouds.read_inputs(config_path)
    state_dir = inputs.paths.state_dir
    progress = Progress(total=len(IMAGES) + 1, verbose=verbose)
    say = progress.say
    underway = UnderWay.read(state_dir)
    if underway is None:
        source = running_release(inputs)
        target = chosen_target(source, wanted)
        upgraded = Upgraded(source, target, Path())
        cloud = clouds.deployed(config_path, progress)
        started = time.monotonic()
        upgraded.warnings = check_before(cloud, target, say)
        upgraded.timings.append(("checks", time.monotonic() - started))
        archive = backup or default_backup_dir(config_path) / (
            f"before-{target}-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz"
        )
        archive.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        timed(upgraded, "backup", say, lambda: recovery.take_backup(config_path, archive, False))
        say(f"Backup of the {source} cloud: {archive}")
        underway = UnderWay(source, target, str(archive))
        underway.write(state_dir)
        set_release(config_path, target)
    else:
        if wanted not in (None, underway.target):
            raise DietStackError(
                f"an upgrade to {underway.target} is under way; it is finished first",
                hint="run `dietstack upgrade` without --to",
            )
        say(f"Resuming the upgrade {underway.source} -> {underway.target}")
        upgraded = Upgraded(underway.source, underway.target, Path(underway.backup))
    upgraded.backup = Path(underway.backup)
    try:
        cloud = _move_the_cloud(config_path, upgraded, progress)
    except DietStackError as exc:
        back = (
            f"`dietstack upgrade` goes on from the failed step; to go back to "
            f"{underway.source} instead: `dietstack destroy --data`, then "
            f"`dietstack restore {underway.backup}`"
        )
        # deploy's own advice (run deploy again) does not apply to an upgrade.
        own = exc.hint if exc.hint and "dietstack deploy" not in exc.hint else ""
        exc.hint = f"{own or 'fix the cause shown above'}; {back}"
        raise
    UnderWay.clear(state_dir)
    upgraded.cloud = cloud
    return upgraded


def _move_the_cloud(config_path: Path, upgraded: Upgraded, progress: Progress) -> Cloud:
    """Images, every node on them with the pins, migrations, then the pins lifted."""
    say = progress.say
    started = time.monotonic()
    cloud = pinned(clouds.for_deploy(config_path, progress, upgrading=True), PIN)
    upgraded.timings.append(("images built (and facts found)", time.monotonic() - started))
    progress.total += deploy.total_steps(cloud.control.env) * (2 + 2 * len(cloud.records))
    _move_every_node(cloud, upgraded, progress)
    cloud = pinned(cloud, "")
    control = cloud.control
    timed(
        upgraded,
        "online data migrations",
        say,
        lambda: upgradesteps.run_online_migrations(control.runtime, control.node, say),
    )
    timed(upgraded, "pins lifted", say, lambda: nodes.deploy_all(cloud, progress))
    return cloud


def _move_every_node(cloud: Cloud, upgraded: Upgraded, progress: Progress) -> None:
    say = progress.say
    control = cloud.control

    def control_plane() -> None:
        deploy.apply(control)
        afterup.finish_control(control)
        upgradesteps.refresh_metadata_ports(cloudapi.admin(control.env), say)

    def ship_everywhere() -> None:
        for record in cloud.records:
            node, _ = nodedeploy.prepare(cloud, record, progress, probe=False)
            sent, seconds = nodeimages.ship_images(control, node.runtime, say)
            say(f"{record.name}: {sent / 1024**2:.0f} MiB of images in {seconds:.0f} s")

    if cloud.records:
        timed(upgraded, "images copied to the nodes", say, ship_everywhere)
    timed(upgraded, f"control node {control.node}", say, control_plane)
    if cloud.records:
        nodes.admit_to_the_queue(cloud)
    for record in cloud.records:
        timed(
            upgraded,
            f"compute node {record.name}",
            say,
            lambda name=record.name: upgrade_compute(cloud, name, progress),  # type: ignore[misc]
        )
