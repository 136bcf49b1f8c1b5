"""The `dietstack` command group and what every verb shares."""

from __future__ import annotations

from pathlib import Path

import click

from dietstack import __version__, releases
from dietstack.apis import cloudapi
from dietstack.engine import credentials, publictls, settings
from dietstack.hosts import hostnet
from dietstack.model import PUBLIC_TRUST
from dietstack.render import Env
from dietstack.services import horizon


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
@click.version_option(
    __version__, message=f"dietstack %(version)s (OpenStack {', '.join(releases.NAMES)})"
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """DietStack: a small OpenStack private cloud, installed with one command."""
    ctx.obj = Context(config_path)


def say_dashboard(env: Env) -> None:
    click.echo(
        f"Dashboard: {horizon.url(env)} "
        "(user admin or demo; `dietstack password demo` shows the password)"
    )
    trust = env.secrets.get(PUBLIC_TRUST, "")
    if trust:
        click.echo(
            f"clouds.yaml: {credentials.CLOUDS_YAML}; every API and the dashboard use HTTPS, "
            f"signed by the CA in {cloudapi.CA_FILE} (`dietstack ca` prints it), "
            f"SHA-256 {publictls.fingerprint(trust)}"
        )


def to_stderr(text: str) -> None:
    click.echo(text, err=True)
