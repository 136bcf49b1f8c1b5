"""The `dietstack` command: one thin function per verb.

The verbs only wire things together; the work lives in the modules they call.
Every DietStackError is printed once, as a message plus a hint, and never as a
traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import yaml

from dietstack import (
    RELEASE,
    __version__,
    backup,
    cloudapi,
    cloudmark,
    credentials,
    deploy,
    drain,
    exposure,
    facts,
    hostnet,
    imagestore,
    inventory,
    kvmprobe,
    logview,
    nodes,
    power,
    preflight,
    secrets,
    settings,
    status,
    tempest,
    tinyimage,
    unpack,
    verify,
)
from dietstack.converge import UNCHANGED, NodePaths
from dietstack.errors import DietStackError
from dietstack.host import ensure_command, ensure_docker
from dietstack.hostio import LocalHost
from dietstack.images import build as image_build
from dietstack.images.catalog import BY_NAME, IMAGES, LABEL_IMAGE
from dietstack.progress import Progress
from dietstack.render import Env
from dietstack.runtime import DockerRuntime
from dietstack.services import horizon
from dietstack.sshhost import SshTarget


class Context:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    def settings(self) -> settings.Settings:
        return settings.load(self.config_path, hostnet.probe())


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=settings.DEFAULT_PATH,
    show_default=True,
    help="The settings file; the secrets file sits beside it.",
)
@click.version_option(__version__, message=f"dietstack %(version)s (OpenStack {RELEASE})")
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """DietStack: a small OpenStack private cloud, installed with one command."""
    ctx.obj = Context(config_path)


# --- config -----------------------------------------------------------------


@cli.group()
def config() -> None:
    """Write or show the settings."""


@config.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing settings file.")
@pass_context
def config_init(ctx: Context, force: bool) -> None:
    """Write the settings file with detected defaults and generate the secrets."""
    path = ctx.config_path
    if path.exists() and not force:
        raise DietStackError(
            f"{path} already exists; it was left as it is",
            hint="edit it, or pass --force to replace it with fresh defaults",
        )
    effective = settings.validate({}, hostnet.probe(), path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(settings.render_file(effective))
    except PermissionError:
        raise DietStackError(f"cannot write {path}: permission denied", hint="use sudo") from None
    secrets_file = secrets.secrets_path(path)
    secrets.ensure(secrets_file)
    click.echo(f"Wrote {path} (edit it to change the defaults)")
    click.echo(f"Secrets are in {secrets_file} (mode 0600)")


@config.command("show")
@pass_context
def config_show(ctx: Context) -> None:
    """Print the effective settings (the file over the detected defaults)."""
    effective = ctx.settings()
    source = ctx.config_path if ctx.config_path.exists() else "detected defaults; no file yet"
    click.echo(f"# effective settings ({source})")
    click.echo(yaml.safe_dump(effective.as_dict(), sort_keys=False).rstrip())


# --- images -----------------------------------------------------------------


@cli.group()
def images() -> None:
    """Build and list the container images."""


@images.command("build")
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice([image.name for image in IMAGES]),
    help="Build just this image (and what it is built on); repeatable.",
)
@click.option(
    "--base-source",
    type=click.Choice(settings.BASE_IMAGE_SOURCES),
    default=None,
    help="Override the base_image setting for this build.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the full build output.")
@pass_context
def images_build(
    ctx: Context, only: tuple[str, ...], base_source: str | None, verbose: bool
) -> None:
    """Build every image the cloud needs; up-to-date images are left alone."""
    effective = ctx.settings()
    wanted = image_build.select(list(only)) if only else list(IMAGES)
    progress = Progress(total=len(wanted) + 1, verbose=verbose)
    runtime = ensure_docker(progress.say)
    planned = image_build.build(
        runtime,
        base_source or effective.base_image,
        effective.debian_mirror,
        progress,
        list(only) or None,
    )
    click.echo(f"{len(planned)} image(s) ready for OpenStack {RELEASE}.")


@images.command("list")
@pass_context
def images_list(ctx: Context) -> None:
    """List DietStack's images on this host; `current` ones are what deploy runs."""
    effective = ctx.settings()
    progress = Progress(total=0)
    runtime = ensure_docker(progress.say)
    rows = runtime.images(LABEL_IMAGE)
    if not rows:
        click.echo("No DietStack images yet; build them with `dietstack images build`.")
        return
    current = {item.tag for item in image_build.plan_local(runtime, effective.base_image)}
    click.echo(f"{'IMAGE':<11} {'TAG':<42} {'SIZE':>9}  {'CREATED':<19}  STATE")
    for row in rows:
        name = row.labels.get(LABEL_IMAGE, "?")
        if name not in BY_NAME:
            continue
        size = f"{row.size / 1024**2:.0f} MB"
        state = "current" if row.tag in current else "old"
        click.echo(f"{name:<11} {row.tag:<42} {size:>9}  {row.created:<19}  {state}")


# --- deploy -----------------------------------------------------------------


def _deployment(ctx: Context, progress: Progress, build_images: bool) -> deploy.Deployment:
    """The control node's Deployment; nothing on the host is changed before the checks."""
    effective = ctx.settings()
    paths = NodePaths(
        secrets_file=secrets.secrets_path(ctx.config_path),
        overrides_dir=ctx.config_path.parent / "overrides",
        data_dir=effective.data_dir,
    )
    stored = secrets.read_if_present(paths.secrets_file)
    cloudmark.check(paths.data_dir, paths.secrets_file, stored)
    runtime = ensure_docker(progress.say)
    records = _records(ctx, effective)
    env_for_checks = Env({**effective.as_dict(), **facts.placeholder()}, secrets.placeholder())
    if build_images:
        preflight.check_host(env_for_checks, paths.data_dir, runtime)
    tags, ids = deploy.images_for(runtime, effective, progress, build=build_images)
    if build_images:
        values = secrets.ensure(paths.secrets_file)
        cloudmark.record(paths.data_dir, values)
    else:
        values = secrets.or_placeholders(stored)

    def probe() -> bool:
        return kvmprobe.kvm_guest_boots(runtime, tags, paths.data_dir, progress)

    local = LocalHost()
    found = facts.collect(
        local, effective.virt_type, paths.state_dir, probe if build_images else None
    )
    found |= facts.tunnel(
        local,
        effective.tunnel_interface,
        effective.management_interface,
        str(effective.management_ip),
    )
    if build_images and found["hypervisor_notice"]:
        progress.say(f"Note: {found['hypervisor_notice']}")
    control = deploy.Deployment(effective, values, paths, runtime, tags, ids, progress, found)
    control.nodes = nodes.node_list(control, records)
    if build_images:
        control.secrets = secrets.ensure_node_certificates(paths.secrets_file, control.env.nodes)
    return control


def _records(ctx: Context, effective: settings.Settings) -> list[dict[str, object]]:
    return inventory.load(inventory.path_for(ctx.config_path), str(effective.management_ip))


def _cloud(ctx: Context, progress: Progress, build_images: bool) -> nodes.Cloud:
    control = _deployment(ctx, progress, build_images)
    return nodes.Cloud(control, ctx.config_path, _records(ctx, control.settings))


@cli.command("deploy")
@click.option("--dry-run", is_flag=True, help="Only show what would change (same as `plan`).")
@click.option("-v", "--verbose", is_flag=True, help="Show full image build output.")
@pass_context
def deploy_command(ctx: Context, dry_run: bool, verbose: bool) -> None:
    """Deploy the cloud on this host and its nodes, or bring it up to date."""
    if dry_run:
        _show_plan(ctx)
        return
    cloud, elapsed = _deploy_everything(ctx, verbose)
    where = f" on {1 + len(cloud.records)} nodes" if cloud.records else ""
    click.echo(
        f"DietStack is deployed{where} ({elapsed:.0f} s). "
        "Try: openstack --os-cloud demo server list"
    )
    _say_dashboard(cloud)


def _deploy_everything(ctx: Context, verbose: bool) -> tuple[nodes.Cloud, float]:
    """Every node brought to its plan, waited on until it serves; and how long it took."""
    progress = Progress(total=len(IMAGES) + 1, verbose=verbose)
    started = time.monotonic()
    cloud = _cloud(ctx, progress, build_images=True)
    progress.total += deploy.total_steps(cloud.control.env) * (1 + len(cloud.records))
    nodes.deploy_all(cloud, progress)
    return cloud, time.monotonic() - started


def _say_dashboard(cloud: nodes.Cloud) -> None:
    click.echo(
        f"Dashboard: {horizon.url(cloud.control.env)} "
        "(user admin or demo; `dietstack password demo` shows the password)"
    )


# --- stop and start -------------------------------------------------------------


@cli.command("stop")
@click.option(
    "--force",
    is_flag=True,
    help="Stop the containers even when Nova cannot shut the instances down first "
    "(they are then powered off).",
)
@pass_context
def stop_command(ctx: Context, force: bool) -> None:
    """Shut every running instance down through Nova, then stop the containers of
    every node; `dietstack start` brings both back."""
    started = time.monotonic()
    env, runtime, _ = _running_cloud(ctx)
    state_dir = ctx.settings().data_dir / "state"
    say = Progress(total=0).say
    instances: list[str] = []
    if any(state.running for state in runtime.containers(deploy.LABEL).values()):
        try:
            conn = cloudapi.admin(env)
            instances = power.running_instances(conn)
            # Written down first, so an interrupted stop still knows what ran.
            power.remember(state_dir, instances)
            power.shut_down_instances(conn, instances, say)
        except cloudapi.CLOUD_ERRORS as exc:
            if not force:
                raise DietStackError(
                    f"the instances could not be shut down through Nova ({exc}); "
                    "no container was stopped",
                    hint="`dietstack status` shows what is down and `dietstack deploy` repairs "
                    "it; `dietstack stop --force` stops the containers anyway",
                ) from None
            say(f"Note: instances were not shut down through Nova ({exc})")
    stopped = 0
    for record in _records(ctx, ctx.settings()):
        try:
            _, node_runtime = nodes.connect(record, nodes.known_hosts_path(ctx.config_path))
            stopped += power.stop_containers(node_runtime, env, str(record["name"]), say)
        except DietStackError as exc:
            click.echo(f"{record['name']}: {exc.message}; its containers keep running", err=True)
    stopped += power.stop_containers(runtime, env, env.node, say)
    total = len(power.remembered(state_dir))
    click.echo(
        f"DietStack is stopped: {stopped} container(s) ({time.monotonic() - started:.0f} s). "
        f"`dietstack start` brings it back with {total} instance(s)."
    )


@cli.command("start")
@click.option("-v", "--verbose", is_flag=True, help="Show full image build output.")
@pass_context
def start_command(ctx: Context, verbose: bool) -> None:
    """Start a stopped cloud: every container in order on every node (as deploy does),
    then the instances that ran before `dietstack stop`."""
    cloud, elapsed = _deploy_everything(ctx, verbose)
    state_dir = cloud.control.paths.state_dir
    instances = power.remembered(state_dir)
    problems: list[str] = []
    if instances:
        conn = cloudapi.admin(cloud.control.env)
        problems = power.start_instances(conn, instances, Progress(total=0).say)
    power.forget(state_dir)
    click.echo(
        f"DietStack is up ({elapsed:.0f} s); {len(instances) - len(problems)} of "
        f"{len(instances)} instance(s) that ran before `dietstack stop` run again."
    )
    _say_dashboard(cloud)
    if problems:
        raise DietStackError(
            f"these instances did not start: {', '.join(problems)}",
            hint="`openstack server show ID` tells why",
        )


def _show_plan(ctx: Context) -> None:
    progress = Progress(total=0)
    cloud = _cloud(ctx, progress, build_images=False)
    changes = 0
    plans = [("", deploy.plan(cloud.control))]
    for record in cloud.records:
        node = nodes.prepare(cloud, record, progress, probe=False)
        plans.append((f"{node.node}: ", deploy.plan(node)))
    for prefix, actions in plans:
        for action in actions:
            changes += action.kind not in UNCHANGED
            click.echo(f"{action.kind:<9} {prefix + action.name:<40} {action.reason}")
    click.echo(f"{changes} change(s).")


@cli.command("plan")
@pass_context
def plan_command(ctx: Context) -> None:
    """Show what `deploy` would change on every node, and why."""
    _show_plan(ctx)


# --- nodes ------------------------------------------------------------------


@cli.group("node")
def node_group() -> None:
    """Add, list and remove compute nodes (reached over SSH)."""


@node_group.command("add")
@click.argument("host")
@click.option("--user", default="root", show_default=True, help="SSH user (root, or sudo-less).")
@click.option("--port", default=22, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--identity",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Private key for SSH (default: ssh's own keys).",
)
@click.option(
    "--tunnel-interface",
    default="",
    help="A spare NIC of the node for Geneve tunnels (needed without the openvswitch module).",
)
@pass_context
def node_add(
    ctx: Context, host: str, user: str, port: int, identity: Path | None, tunnel_interface: str
) -> None:
    """Make HOST a compute node of this cloud (over SSH, as root, key auth)."""
    progress = Progress(total=7)
    started = time.monotonic()
    ensure_command("ssh", "openssh-client", "nodes are reached over SSH", progress.say)
    cloud = _cloud(ctx, progress, build_images=False)
    secrets.read_existing(cloud.control.paths.secrets_file)
    target = SshTarget(host, user, port, str(identity.resolve()) if identity else "")
    node = nodes.add(cloud, target, tunnel_interface, progress)
    click.echo(f"{node.node} is a compute node of the cloud ({time.monotonic() - started:.0f} s).")


@node_group.command("list")
@pass_context
def node_list(ctx: Context) -> None:
    """Every node: address, role, health, nova-compute, OVN chassis, instances, free RAM."""
    cloud = _cloud(ctx, Progress(total=0), build_images=False)
    click.echo(nodes.render_rows(nodes.rows(cloud)))


@node_group.command("remove")
@click.argument("name")
@click.option(
    "--drain", "drain_first", is_flag=True, help="Move its instances to other nodes first."
)
@click.option(
    "--delete-instances", is_flag=True, help="Delete the instances that live on the node."
)
@pass_context
def node_remove(ctx: Context, name: str, drain_first: bool, delete_instances: bool) -> None:
    """Remove compute node NAME from the cloud (refused while instances live there,
    unless they are moved away with --drain, or deleted)."""
    progress = Progress(total=4)
    cloud = _cloud(ctx, progress, build_images=False)
    cloud.record(name)
    if not (drain_first or delete_instances) and sys.stdin.isatty():
        count = len(cloudapi.instances_on(cloudapi.admin(cloud.control.env), name))
        drain_first = count > 0 and click.confirm(
            f"{count} instance(s) live on {name}. Drain it first (move them to other nodes)?",
            default=True,
        )
    if drain_first:
        _drain(cloud, name)
    nodes.remove(cloud, name, delete_instances, progress)
    click.echo(f"{name} is no longer part of the cloud.")


def _node_name(cloud: nodes.Cloud, name: str) -> str:
    """A node that runs nova-compute: any node of the inventory, the control node too."""
    known = [node.name for node in cloud.control.env.nodes]
    if name not in known:
        raise DietStackError(
            f"there is no node {name!r} (nodes: {', '.join(known)})",
            hint="`dietstack node list` shows them",
        )
    return name


def _drain(cloud: nodes.Cloud, name: str) -> None:
    started = time.monotonic()
    progress = Progress(total=1)
    moved, stuck = drain.drain(cloudapi.admin(cloud.control.env), name, progress)
    for item in moved:
        click.echo(f"  {item.name}: {item.how} migration to {item.target} ({item.seconds:.0f} s)")
    if stuck:
        listing = "\n".join(f"  - {item.name} ({item.server_id}): {item.reason}" for item in stuck)
        raise DietStackError(
            f"{len(stuck)} instance(s) could not leave {name}; it stays disabled:\n{listing}",
            hint="deal with them (e.g. `openstack server show ID`), then run "
            f"`dietstack node drain {name}` again",
        )
    click.echo(
        f"{name} is drained: no instances, nothing new is scheduled there "
        f"({time.monotonic() - started:.0f} s)."
    )


@node_group.command("drain")
@click.argument("name")
@pass_context
def node_drain(ctx: Context, name: str) -> None:
    """Empty node NAME for maintenance: disable its nova-compute and move every
    instance to other nodes (live, or cold when stopped)."""
    cloud = _cloud(ctx, Progress(total=0), build_images=False)
    _drain(cloud, _node_name(cloud, name))


@node_group.command("undrain")
@click.argument("name")
@pass_context
def node_undrain(ctx: Context, name: str) -> None:
    """Let the scheduler place instances on node NAME again."""
    cloud = _cloud(ctx, Progress(total=0), build_images=False)
    drain.undrain(cloudapi.admin(cloud.control.env), _node_name(cloud, name))
    click.echo(f"{name} takes new instances again.")


@cli.command("openrc")
@click.argument("cloud", type=click.Choice(credentials.CLOUDS))
@pass_context
def openrc_command(ctx: Context, cloud: str) -> None:
    """Print shell exports for the admin or demo user (includes the password)."""
    values = secrets.read_existing(secrets.secrets_path(ctx.config_path))
    click.echo(credentials.openrc(_deployed_env(ctx, values), cloud), nl=False)


@cli.command("password")
@click.argument("user", type=click.Choice(credentials.CLOUDS))
@pass_context
def password_command(ctx: Context, user: str) -> None:
    """Print the password of the admin or demo user (for the dashboard)."""
    values = secrets.read_existing(secrets.secrets_path(ctx.config_path))
    click.echo(values[f"{user}_password"])


@cli.command("status")
@pass_context
def status_command(ctx: Context) -> None:
    """Show every container and API endpoint; exits non-zero when something is down."""
    runtime = ensure_docker(Progress(total=0).say)
    # The admin password asks Nova which of its daemons serve; it is never shown.
    values = secrets.read_if_present(secrets.secrets_path(ctx.config_path))
    env = _deployed_env(ctx, secrets.or_placeholders(values))
    report = status.collect(runtime, env, _node_views(ctx, env) if values else [])
    click.echo(status.render(report))
    if not report.healthy:
        sys.exit(1)


@cli.command("logs")
@click.argument("name", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep showing new lines.")
@click.option("--since", metavar="T", help="Only lines since T: 90s, 10m, 2h, 1d or a time.")
@click.option("--tail", type=int, metavar="N", help="Only the last N lines of each container.")
@click.option("--node", "node_name", metavar="NODE", help="A compute node (default: this host).")
@pass_context
def logs_command(
    ctx: Context,
    name: str | None,
    follow: bool,
    since: str | None,
    tail: int | None,
    node_name: str | None,
) -> None:
    """Show the log of a container, or of every container of a service (e.g. nova),
    or of all of them; lines of several containers start with the container's name."""
    values = secrets.read_if_present(secrets.secrets_path(ctx.config_path))
    env = _deployed_env(ctx, secrets.or_placeholders(values))
    runtime = ensure_docker(Progress(total=0).say)
    if node_name and node_name != env.node:
        views = {view[1].node: view for view in _node_views(ctx, env)}
        if node_name not in views:
            raise DietStackError(
                f"there is no reachable compute node {node_name!r}",
                hint="`dietstack node list` shows the nodes",
            )
        runtime, env = views[node_name]
    chosen = logview.select(env, name)
    logview.show(runtime, chosen, follow, since, tail, click.echo)


def _node_views(ctx: Context, env: Env) -> list[tuple[DockerRuntime, Env]]:
    """Each compute node's runtime and Env, as deployed (unreachable ones are skipped)."""
    records = _records(ctx, ctx.settings())
    if not records:
        return []
    cloud = _cloud(ctx, Progress(total=0), build_images=False)
    views = []
    for record in records:
        try:
            node = nodes.prepare(cloud, record, Progress(total=0), probe=False)
        except DietStackError as exc:
            click.echo(f"{record['name']}: {exc.message}", err=True)
            continue
        views.append((node.runtime, node.env))
    return views


def _rendered_settings(effective: settings.Settings) -> dict[str, object]:
    """What the last deploy rendered this node's containers with (none before one)."""
    rendered = effective.data_dir / "config" / "settings.yaml"
    if not rendered.exists():
        return {}
    return dict(yaml.safe_load(rendered.read_text()) or {})


def _deployed_env(ctx: Context, values: dict[str, str]) -> Env:
    """The Env the containers were rendered with: settings plus the facts deploy found."""
    effective = ctx.settings()
    written = _rendered_settings(effective)
    found: dict[str, object] = dict(facts.placeholder())
    found |= {key: written[key] for key in written if key not in effective.as_dict()}
    return Env({**effective.as_dict(), **found}, values)


def _running_cloud(ctx: Context) -> tuple[Env, DockerRuntime, dict[str, str]]:
    """The deployed cloud's Env, for commands that use it (not deploy it)."""
    effective = ctx.settings()
    values = secrets.read_existing(secrets.secrets_path(ctx.config_path))
    runtime = ensure_docker(Progress(total=0).say)
    return (
        _deployed_env(ctx, values),
        runtime,
        image_build.local_tags(runtime, effective.base_image),
    )


def _tiny_image_builder(ctx: Context, runtime: DockerRuntime, tags: dict[str, str]) -> Path:
    effective = ctx.settings()
    out = effective.data_dir / "images" / "tiny"
    return tinyimage.build(runtime, tags["base"], out, lambda text: click.echo(text, err=True)).disk


@cli.group("image")
def image_group() -> None:
    """Add VM images to the cloud."""


@image_group.command("add")
@click.argument("source")
@click.option("--name", default=None, help="Image name (default: dietstack-tiny for `tiny`).")
@pass_context
def image_add(ctx: Context, source: str, name: str | None) -> None:
    """Upload SOURCE: `tiny` (DietStack's test image, built here), a URL or a file."""
    env, runtime, tags = _running_cloud(ctx)
    name = name or (verify.TINY_IMAGE if source == imagestore.TINY else Path(source).name)
    image_id, uploaded = imagestore.add(
        cloudapi.admin(env),
        env,
        source,
        name,
        lambda: _tiny_image_builder(ctx, runtime, tags),
        lambda text: click.echo(text, err=True),
    )
    click.echo(f"{'Uploaded' if uploaded else 'Already there:'} {name} ({image_id})")


@cli.command("verify")
@click.option(
    "--tempest",
    "tempest_set",
    metavar="SET",
    default=None,
    help="Then run upstream Tempest: `smoke`, or a regex of test names.",
)
@pass_context
def verify_command(ctx: Context, tempest_set: str | None) -> None:
    """Prove the cloud works: boot a VM, ping it, attach a volume, run a Heat stack."""
    env, runtime, tags = _running_cloud(ctx)

    def say(text: str) -> None:
        click.echo(text, err=True)

    imagestore.add(
        cloudapi.admin(env),
        env,
        imagestore.TINY,
        verify.TINY_IMAGE,
        lambda: _tiny_image_builder(ctx, runtime, tags),
        say,
    )
    steps: list[verify.Step] = []
    listening = exposure.listening(runtime)
    probe = exposure.targets(env, listening, exposure.host_addresses(hostnet.probe()))
    try:
        steps = verify.run(env, say, steps, probe, listening)
    finally:
        if steps:
            click.echo(verify.summary(steps))
    if tempest_set:
        data_dir = ctx.settings().data_dir
        result = tempest.run(env, data_dir, tempest_set, verify.TINY_IMAGE, say)
        click.echo(
            f"Tempest {tempest_set}: {result.passed} passed, {result.skipped} skipped, "
            f"{result.failed} failed (log: {result.log})"
        )
        if result.failed:
            sys.exit(1)


# --- backup and restore ---------------------------------------------------------


@cli.command("backup")
@click.argument("archive", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--volumes", is_flag=True, help="Also the Cinder volumes and their snapshots.")
@pass_context
def backup_command(ctx: Context, archive: Path | None, volumes: bool) -> None:
    """Write the whole cloud to ARCHIVE (default: dietstack-backup-DATE.tar.gz here):
    databases, keys, settings and secrets, images, OVN's database; 0600, it holds
    every password."""
    started = time.monotonic()
    env, runtime, _ = _running_cloud(ctx)
    effective = ctx.settings()
    archive = archive or Path(f"dietstack-backup-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz")
    if archive.exists():
        raise DietStackError(f"{archive} exists already", hint="name another file")
    values = secrets.read_existing(secrets.secrets_path(ctx.config_path))
    try:
        servers = cloudapi.server_records(cloudapi.admin(env))
    except cloudapi.CLOUD_ERRORS as exc:
        raise DietStackError(
            f"the cloud does not answer ({exc}); a backup is taken from a running cloud",
            hint="`dietstack status` shows what is down; `dietstack deploy` repairs it",
        ) from None
    source = backup.Source(ctx.config_path, effective.data_dir)
    say = Progress(total=0).say
    head = backup.take(
        runtime, source, values, archive, volumes, {"servers": servers, "volumes": volumes}, say
    )
    size = archive.stat().st_size
    click.echo(
        f"Backup written to {archive}: {size / 2**20:.1f} MiB, {len(head['files'])} files, "
        f"{len(servers)} server record(s){', with the volumes' if volumes else ''} "
        f"({time.monotonic() - started:.0f} s). It holds every password: keep it private."
    )


@cli.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="Show full image build output.")
@pass_context
def restore_command(ctx: Context, archive: Path, verbose: bool) -> None:
    """Bring back the cloud of ARCHIVE on this host (fresh, or after `destroy --data`):
    checks the whole archive first, then restores and deploys."""
    started = time.monotonic()
    say = Progress(total=0).say
    say(f"Checking {archive}")
    head = unpack.check(archive)
    merged = unpack.restored_settings(archive, ctx.config_path)
    effective = settings.validate(merged, hostnet.probe(), ctx.config_path)
    source = backup.Source(ctx.config_path, effective.data_dir)
    runtime = ensure_docker(say)
    backup.refuse_to_overwrite(
        head,
        source,
        len(runtime.containers(deploy.LABEL)),
        secrets.read_if_present(secrets.secrets_path(ctx.config_path)),
    )
    say(f"Restoring {len(head['files'])} files from the backup of {head['created']}")
    unpack.extract(archive, source.config_dir, source.data_dir)
    ctx.config_path.parent.mkdir(parents=True, exist_ok=True)
    ctx.config_path.write_text(yaml.safe_dump(merged, sort_keys=False))
    cloud, _ = _deploy_everything(ctx, verbose)
    problems = backup.bring_back_servers(
        cloudapi.admin(cloud.control.env),
        head.get("servers", []),
        source.data_dir / "nova" / "instances",
        say,
    )
    click.echo(f"The cloud of {head['created']} is restored ({time.monotonic() - started:.0f} s).")
    _say_dashboard(cloud)
    if problems:
        click.echo("Note: " + "; ".join(problems), err=True)


@cli.command("destroy")
@click.option("--data", is_flag=True, help="Also delete every database, image and volume.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def destroy_command(ctx: Context, data: bool, yes: bool) -> None:
    """Remove the cloud's containers (and with --data, all its data)."""
    effective = ctx.settings()
    what = (
        f"all DietStack containers{' and everything in ' + str(effective.data_dir) if data else ''}"
    )
    if not yes:
        if not sys.stdin.isatty():
            raise DietStackError(f"this would remove {what}", hint="pass --yes to confirm")
        click.confirm(f"Remove {what}?", abort=True)
    runtime = ensure_docker(Progress(total=0).say)
    ovn_image = image_build.local_tags(runtime, effective.base_image).get("ovn")
    for record in _records(ctx, effective):
        try:
            data_dir = effective.data_dir if data else None
            node_removed = nodes.destroy(record, ctx.config_path, ovn_image, data_dir)
        except DietStackError as exc:
            click.echo(f"{record['name']}: {exc.message}; its containers stay", err=True)
            continue
        click.echo(f"{record['name']}: removed {node_removed} container(s)")
    # Read before --data deletes it: the tunnel NIC's address, lent to Open vSwitch.
    this_node = {
        "tunnel_interface": effective.tunnel_interface,
        "facts": _rendered_settings(effective),
    }
    removed, note = deploy.destroy(runtime, effective.data_dir if data else None, ovn_image)
    nodes.give_back_tunnel_address(LocalHost(), this_node)
    click.echo(
        f"Removed {removed} container(s), DietStack's firewall and NAT tables"
        f"{' and the data' if data else ''}."
    )
    if note:
        click.echo(f"Note: {note}", err=True)


def main() -> None:
    """Run the CLI; user errors become one message, never a traceback."""
    try:
        code = cli.main(standalone_mode=False, prog_name="dietstack")
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        # A verb group called without its verb: show that group's help.
        click.echo(exc.format_message(), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        command = "dietstack --help"
        click.echo(f"dietstack: error: {exc.format_message()} (see `{command}`)", err=True)
        sys.exit(exc.exit_code)
    except DietStackError as exc:
        click.echo(f"dietstack: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted; run the command again to continue.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
