"""The whole cloud: deploy, plan, stop, start, status, logs, verify, credentials."""

from __future__ import annotations

import sys

import click

from dietstack.app import checking, lifecycle, looking
from dietstack.app import cloud as clouds
from dietstack.cli.base import Context, cli, pass_context, say_dashboard, to_stderr
from dietstack.engine import credentials, publictls, secrets
from dietstack.errors import DietStackError
from dietstack.images import guestbuild, guests
from dietstack.ops import logview, status, verify


@cli.command("deploy")
@click.option("--dry-run", is_flag=True, help="Only show what would change (same as `plan`).")
@click.option("-v", "--verbose", is_flag=True, help="Show full image build output.")
@pass_context
def deploy_command(ctx: Context, dry_run: bool, verbose: bool) -> None:
    """Deploy the cloud on this host and its nodes, or bring it up to date."""
    if dry_run:
        _show_plan(ctx)
        return
    cloud, elapsed = lifecycle.deploy_everything(ctx.config_path, verbose)
    where = f" on {1 + len(cloud.records)} nodes" if cloud.records else ""
    click.echo(
        f"DietStack is deployed{where} ({elapsed:.0f} s). "
        "Try: openstack --os-cloud demo server list"
    )
    say_dashboard(cloud.control.env)


def _show_plan(ctx: Context) -> None:
    lines, changes = lifecycle.plan_lines(ctx.config_path)
    for line in lines:
        click.echo(line)
    click.echo(f"{changes} change(s).")


@cli.command("plan")
@pass_context
def plan_command(ctx: Context) -> None:
    """Show what `deploy` would change on every node, and why."""
    _show_plan(ctx)


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
    stopped = lifecycle.stop(ctx.config_path, force)
    for line in stopped.unreachable:
        to_stderr(line)
    click.echo(
        f"DietStack is stopped: {stopped.containers} container(s) ({stopped.seconds:.0f} s). "
        f"`dietstack start` brings it back with {stopped.instances} instance(s)."
    )


@cli.command("start")
@click.option("-v", "--verbose", is_flag=True, help="Show full image build output.")
@pass_context
def start_command(ctx: Context, verbose: bool) -> None:
    """Start a stopped cloud: every container in order on every node (as deploy does),
    then the instances that ran before `dietstack stop`."""
    started = lifecycle.start(ctx.config_path, verbose)
    running = started.instances - len(started.problems)
    click.echo(
        f"DietStack is up ({started.seconds:.0f} s); {running} of {started.instances} "
        "instance(s) that ran before `dietstack stop` run again."
    )
    say_dashboard(started.cloud.control.env)
    if started.problems:
        raise DietStackError(
            f"these instances did not start: {', '.join(started.problems)}",
            hint="`openstack server show ID` tells why",
        )


@cli.command("openrc")
@click.argument("cloud", type=click.Choice(credentials.CLOUDS))
@pass_context
def openrc_command(ctx: Context, cloud: str) -> None:
    """Print shell exports for the admin or demo user (includes the password)."""
    env = clouds.deployed_env(ctx.config_path)
    click.echo(credentials.openrc(env, cloud), nl=False)


@cli.command("ca")
@pass_context
def ca_command(ctx: Context) -> None:
    """Print the cloud's CA certificate (PEM), for a browser or another machine to trust;
    its fingerprint goes to standard error."""
    certificate = clouds.public_ca_certificate(ctx.config_path)
    to_stderr(f"SHA-256 fingerprint: {publictls.fingerprint(certificate)}")
    click.echo(certificate, nl=False)


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
    report = looking.status_report(ctx.config_path, to_stderr)
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
    runtime, chosen = looking.log_source(ctx.config_path, name, node_name)
    logview.show(runtime, chosen, follow, since, tail, click.echo)


@cli.group("image")
def image_group() -> None:
    """Add VM images to the cloud."""


@image_group.command("add")
@click.argument("source")
@click.option("--name", default=None, help="Image name (default: dietstack-tiny for `tiny`).")
@click.option(
    "--build",
    is_flag=True,
    help="Build the catalog image here from the Debian mirror instead of downloading "
    "it (debian-13 only).",
)
@pass_context
def image_add(ctx: Context, source: str, name: str | None, build: bool) -> None:
    """Upload SOURCE: a name of the catalog (`dietstack image list-catalog`), `tiny`
    (DietStack's test image, built here), a URL or a file."""
    if build and source == "debian":
        source = guestbuild.BUILDABLE
    if build or source in guests.BY_NAME:
        name = name or source
        image_id, uploaded, flavors = checking.add_catalog_image(
            ctx.config_path, source, name, to_stderr, build=build
        )
        click.echo(f"{'Uploaded' if uploaded else 'Already there:'} {name} ({image_id})")
        image = guests.BY_NAME[source]
        fits = ", ".join(flavors) or "none yet: create one"
        click.echo(
            f"It needs {image.min_disk_gb} GB of disk and {image.min_ram_mb} MB of RAM; "
            f"flavors that fit: {fits}. Log in as `{image.admin_user}` with your key."
        )
        return
    name, image_id, uploaded = checking.add_image(ctx.config_path, source, name, to_stderr)
    click.echo(f"{'Uploaded' if uploaded else 'Already there:'} {name} ({image_id})")


@image_group.command("list-catalog")
def image_list_catalog() -> None:
    """The distributions' cloud images `image add NAME` knows, and where they come from."""
    width = max(len(image.name) for image in guests.CATALOG)
    for image in guests.CATALOG:
        click.echo(
            f"{image.name:<{width}}  {image.title}; user {image.admin_user}, "
            f"at least {image.min_disk_gb} GB disk and {image.min_ram_mb} MB RAM"
        )
        click.echo(f"{'':<{width}}  {image.url}")


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
    steps: list[verify.Step] = []
    try:
        cloud = checking.run_verify(ctx.config_path, to_stderr, steps)
    finally:
        if steps:
            click.echo(verify.summary(steps))
    if tempest_set:
        result = checking.run_tempest(cloud, tempest_set, to_stderr)
        click.echo(
            f"Tempest {tempest_set}: {result.passed} passed, {result.skipped} skipped, "
            f"{result.failed} failed (log: {result.log})"
        )
        if result.failed:
            sys.exit(1)
