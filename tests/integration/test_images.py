"""Build every image for real and check that what is inside runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dietstack import __version__, releases
from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images.catalog import IMAGES, LABEL_IMAGE, ImageSpec

from . import nodebox
from .conftest import cold_build_wanted, run_dietstack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(config: Path) -> dict[str, str]:
    """Every image built by `dietstack images build`; returns name -> tag."""
    if cold_build_wanted():
        # Tear down any DietStack cloud, then every DietStack image and build
        # stage, so the build starts cold.
        runtime = DockerRuntime.connect()
        for name in runtime.containers(LABEL_CONTAINER):
            runtime.remove(name)
        # The multi-node tests' node containers run an image built on ours.
        nodebox.remove_all(image=True)
        removed = runtime.remove_images(LABEL_IMAGE)
        print(f"removed {removed} DietStack image(s) for a cold build")
    started = time.monotonic()
    result = run_dietstack("images", "build", config=config)
    print(f"images build took {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    tags: dict[str, str] = {}
    for line in result.stderr.splitlines():
        if "built dietstack/" in line or "up to date: dietstack/" in line:
            tag = line.split("dietstack/", 1)[1].split()[0]
            tags[tag.split(":")[0]] = f"dietstack/{tag}"
    assert sorted(tags) == sorted(image.name for image in IMAGES)
    return tags


@pytest.mark.parametrize("image", IMAGES, ids=[image.name for image in IMAGES])
def test_version_commands_run_inside_each_image(
    built: dict[str, str], runtime: DockerRuntime, image: ImageSpec
) -> None:
    for command in image.version_commands:
        exit_code, output = runtime.run_throwaway(built[image.name], command)
        assert exit_code == 0, f"{' '.join(command)} in {image.name}: {output}"
        assert output.strip(), f"{' '.join(command)} printed nothing"


def test_openstack_versions_are_the_pinned_releases(
    built: dict[str, str], runtime: DockerRuntime
) -> None:
    """The default release's pins (a new cloud's release, built by `images build`)."""
    pins = dict(pin.split("==") for pin in releases.named(releases.DEFAULT).services)
    expected = {
        "keystone-manage": pins["keystone"],
        "nova-manage": pins["nova"],
        "glance-manage": pins["glance"],
        "cinder-manage": pins["cinder"],
        "heat-manage": pins["openstack-heat"],
        "placement-manage": pins["openstack-placement"],
    }
    for command, version in expected.items():
        _, output = runtime.run_throwaway(built["openstack"], [command, "--version"])
        assert version in output, f"{command}: {output}"


def test_start_program_runs_in_every_image(built: dict[str, str], runtime: DockerRuntime) -> None:
    for name, tag in built.items():
        if name == "base":
            continue
        exit_code, output = runtime.run_throwaway(tag, ["--version"])
        assert exit_code == 0 and __version__ in output, f"{name}: {output}"


def test_no_proxy_ca_in_the_openstack_image(built: dict[str, str], runtime: DockerRuntime) -> None:
    exit_code, output = runtime.run_throwaway(
        built["openstack"], ["sh", "-c", "ls /build 2>&1; env | grep -i -e pip_cert -e proxy"]
    )
    assert "No such file" in output, output


def test_rebuild_with_nothing_changed_changes_nothing(
    built: dict[str, str], runtime: DockerRuntime, config: Path
) -> None:
    before = {name: runtime.image_id(tag) for name, tag in built.items()}
    started = time.monotonic()
    result = run_dietstack("images", "build", config=config)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "built dietstack/" not in result.stderr
    assert result.stderr.count("up to date: dietstack/") == len(IMAGES)
    assert {name: runtime.image_id(tag) for name, tag in built.items()} == before
    print(f"warm rebuild took {elapsed:.1f} s")


def test_images_list_shows_every_image(built: dict[str, str], config: Path) -> None:
    result = run_dietstack("images", "list", config=config)
    assert result.returncode == 0, result.stderr
    for tag in built.values():
        assert tag in result.stdout
