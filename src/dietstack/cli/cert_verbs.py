"""The cloud's certificates: list them, renew DietStack's own."""

from __future__ import annotations

import datetime

import click

from dietstack.app import certificates
from dietstack.cli.base import Context, cli, pass_context, say_dashboard


@cli.group("certs")
def certs_group() -> None:
    """The cloud's certificates (APIs, nodes, RabbitMQ, OVN, consoles)."""


@certs_group.command("list")
@pass_context
def certs_list(ctx: Context) -> None:
    """Show every certificate of the cloud and when it ends."""
    now = datetime.datetime.now(datetime.UTC)
    for row in certificates.rows(ctx.config_path):
        if row.ends is None:
            click.echo(f"{'unreadable':<28} {row.what}")
            continue
        left = (row.ends - now).days
        click.echo(f"{row.ends:%Y-%m-%d} ({left:>5} days)  {row.what}")


@certs_group.command("renew")
@click.option("-v", "--verbose", is_flag=True, help="Show full image build output.")
@pass_context
def certs_renew(ctx: Context, verbose: bool) -> None:
    """Issue DietStack's own certificates anew (not the CAs) and deploy them; the
    instances keep running."""
    cloud, elapsed = certificates.renew(ctx.config_path, verbose)
    click.echo(f"Certificates renewed and deployed ({elapsed:.0f} s).")
    say_dashboard(cloud.control.env)
