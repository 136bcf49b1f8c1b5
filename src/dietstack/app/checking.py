"""`verify` and `image add`: using the deployed cloud as a user would.

Nothing here prints; progress goes to the `say` the command line gives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dietstack.apis import cloudapi
from dietstack.app import cloud as clouds
from dietstack.app.cloud import Cloud
from dietstack.hosts import hostnet
from dietstack.images import guestbuild, guests, tinyimage
from dietstack.ops import exposure, imagestore, tempest, verify

Say = Callable[[str], None]


def _tiny_image(cloud: Cloud, say: Say) -> Callable[[], Path]:
    """Builds DietStack's test image when it is needed (not when Glance has it)."""
    control = cloud.control

    def build() -> Path:
        out = control.settings.data_dir / "images" / "tiny"
        return tinyimage.build(control.runtime, control.image_tags["base"], out, say).disk

    return build


def add_image(config_path: Path, source: str, name: str | None, say: Say) -> tuple[str, str, bool]:
    """Upload an image: `tiny`, a URL or a file. Its name, its ID and whether it was new."""
    cloud = clouds.deployed(config_path)
    env = cloud.control.env
    name = name or (verify.TINY_IMAGE if source == imagestore.TINY else Path(source).name)
    image_id, uploaded = imagestore.add(
        cloudapi.admin(env), env, source, name, _tiny_image(cloud, say), say
    )
    return name, image_id, uploaded


def add_catalog_image(
    config_path: Path, image_name: str, name: str, say: Say, build: bool = False
) -> tuple[str, bool, list[str]]:
    """A catalog image (through `image_mirror` if set; with `build`, made here from
    the Debian mirror), named `name` in Glance: its ID, whether it was uploaded now,
    and the flavors it fits."""
    image = guestbuild.buildable(image_name) if build else guests.named(image_name)
    cloud = clouds.deployed(config_path)
    control = cloud.control
    env = control.env
    admin = cloudapi.admin(env)
    if build:
        existing = imagestore.find(admin, env, name)
        if existing:
            return existing, False, imagestore.fitting_flavors(admin, env, image)
        built = guestbuild.build(
            control.runtime,
            control.image_tags["base"],
            guestbuild.scratch_dir(control.settings.data_dir),
            say,
            lambda line: say(f"      {line}") if line.startswith("Step ") else None,
        )
        image_id = imagestore.upload_as(admin, env, image, name, built.disk, say)
        return image_id, True, imagestore.fitting_flavors(admin, env, image)
    image = image.via(control.settings.image_mirror)
    image_id, uploaded = imagestore.add_guest(admin, env, image, name, say)
    return image_id, uploaded, imagestore.fitting_flavors(admin, env, image)


def run_verify(config_path: Path, say: Say, steps: list[verify.Step]) -> Cloud:
    """verify's steps, appended to `steps` as they run (so a failure still shows them)."""
    cloud = clouds.deployed(config_path)
    control = cloud.control
    env = control.env
    imagestore.add(
        cloudapi.admin(env),
        env,
        imagestore.TINY,
        verify.TINY_IMAGE,
        _tiny_image(cloud, say),
        say,
    )
    listening = exposure.listening(control.runtime)
    probe = exposure.targets(env, listening, exposure.host_addresses(hostnet.probe()))
    verify.run(env, say, steps, probe, listening)
    return cloud


def run_tempest(cloud: Cloud, tests: str, say: Say) -> tempest.TempestResult:
    control = cloud.control
    return tempest.run(control.env, control.settings.data_dir, tests, verify.TINY_IMAGE, say)
