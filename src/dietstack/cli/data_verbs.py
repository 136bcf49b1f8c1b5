"""backup, restore and destroy: the cloud's data."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dietstack.app import lifecycle, recovery
from dietstack.cli.base import Context, cli, pass_context, say_dashboard, to_stderr
from dietstack.errors import DietStackError


@cli.command("backup")
@click.argument("archive", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--volumes", is_flag=True, help="Also the Cinder volumes and their snapshots.")
@pass_context
def backup_command(ctx: Context, archive: Path | None, volumes: bool) -> None:
    """Write the whole cloud to ARCHIVE (default: dietstack-backup-DATE.tar.gz here):
    databases, keys, settings and secrets, images, OVN's database; 0600, it holds
    every password."""
    done = recovery.take_backup(ctx.config_path, archive or recovery.default_archive(), volumes)
    size = done.archive.stat().st_size
    click.echo(
        f"Backup written to {done.archive}: {size / 2**20:.1f} MiB, "
        f"{len(done.head['files'])} files, {done.servers} server record(s)"
        f"{', with the volumes' if volumes else ''} ({done.seconds:.0f} s). "
        "It holds every password: keep it private."
    )


@cli.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="Show full image build output.")
@pass_context
def restore_command(ctx: Context, archive: Path, verbose: bool) -> None:
    """Bring back the cloud of ARCHIVE on this host (fresh, or after `destroy --data`):
    checks the whole archive first, then restores and deploys."""
    done = recovery.restore(ctx.config_path, archive, verbose)
    click.echo(f"The cloud of {done.created} is restored ({done.seconds:.0f} s).")
    say_dashboard(done.cloud.control.env)
    if done.problems:
        to_stderr("Note: " + "; ".join(done.problems))


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
    done = lifecycle.destroy(ctx.config_path, data)
    for line in done.nodes:
        click.echo(line, err="stay" in line)
    click.echo(
        f"Removed {done.containers} container(s), DietStack's firewall and NAT tables"
        f"{' and the data' if data else ''}."
    )
    if done.note:
        to_stderr(f"Note: {done.note}")
