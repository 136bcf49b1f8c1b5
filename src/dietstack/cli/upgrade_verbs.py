"""`dietstack upgrade`: the cloud moved to the next OpenStack release."""

from __future__ import annotations

from pathlib import Path

import click

from dietstack import releases
from dietstack.app import upgrade
from dietstack.cli.base import Context, cli, pass_context, say_dashboard


@cli.command("upgrade")
@click.option(
    "--to",
    "target",
    type=click.Choice(releases.NAMES),
    default=None,
    help="The release to move to (default: the newest the cloud may go to).",
)
@click.option(
    "--backup",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the backup taken first is written (default: backups/ beside the settings).",
)
@click.option("--dry-run", is_flag=True, help="Only show what the upgrade would do.")
@click.option("-v", "--verbose", is_flag=True, help="Show full image build output.")
@pass_context
def upgrade_command(
    ctx: Context, target: str | None, backup: Path | None, dry_run: bool, verbose: bool
) -> None:
    """Move the running cloud to the next OpenStack release, its instances running."""
    if dry_run:
        for line in upgrade.plan_lines(ctx.config_path, target):
            click.echo(line)
        return
    done = upgrade.upgrade(ctx.config_path, target, backup, verbose)
    for warning in done.warnings:
        click.echo(f"Note from nova-status:\n{warning.rstrip()}")
    click.echo("Time per step:")
    for step, seconds in done.timings:
        click.echo(f"  {step:<40} {seconds:6.0f} s")
    total = sum(seconds for _, seconds in done.timings)
    click.echo(
        f"The cloud runs OpenStack {releases.named(done.target).title} (was {done.source}; "
        f"{total:.0f} s). The backup taken before: {done.backup}"
    )
    if done.cloud is not None:
        say_dashboard(done.cloud.control.env)
