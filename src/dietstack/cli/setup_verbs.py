"""`config` and `images`: the settings file and the container images."""

from __future__ import annotations

import click
import yaml

from dietstack import releases
from dietstack.app import looking
from dietstack.cli.base import Context, cli, pass_context
from dietstack.engine import secrets, settings
from dietstack.errors import DietStackError
from dietstack.hosts import hostnet
from dietstack.hosts.provision import ensure_docker
from dietstack.images import build as image_build
from dietstack.images.catalog import IMAGES
from dietstack.progress import Progress


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
        raise DietStackError(
            f"cannot write {path}: permission denied", hint="run the command as root"
        ) from None
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
@click.option(
    "--release",
    "release_name",
    type=click.Choice(releases.NAMES),
    default=None,
    help="Build for this OpenStack release (default: the settings' release).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the full build output.")
@pass_context
def images_build(
    ctx: Context,
    only: tuple[str, ...],
    base_source: str | None,
    release_name: str | None,
    verbose: bool,
) -> None:
    """Build every image the cloud needs; up-to-date images are left alone."""
    effective = ctx.settings()
    release = releases.named(release_name or effective.release)
    wanted = image_build.select(list(only)) if only else list(IMAGES)
    progress = Progress(total=len(wanted) + 1, verbose=verbose)
    runtime = ensure_docker(progress.say)
    planned = image_build.build(
        runtime,
        base_source or effective.base_image,
        effective.debian_mirror,
        progress,
        release,
        list(only) or None,
    )
    click.echo(f"{len(planned)} image(s) ready for OpenStack {release.title}.")


@images.command("list")
@pass_context
def images_list(ctx: Context) -> None:
    """List DietStack's images on this host; `current` ones are what deploy runs."""
    rows = looking.image_rows(ctx.config_path)
    if not rows:
        click.echo("No DietStack images yet; build them with `dietstack images build`.")
        return
    click.echo(f"{'IMAGE':<11} {'TAG':<42} {'SIZE':>9}  {'CREATED':<19}  STATE")
    for row in rows:
        click.echo(row)
