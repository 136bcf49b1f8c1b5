"""`dietstack image add NAME` against a mirror on this machine that serves an image
and its checksum file the way a distribution's publisher does (MIRROR/HOST/PATH):
a wrong digest is refused with nothing uploaded, the right one is uploaded with the
distribution's properties and minimums, and the flavors that fit are named."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from dietstack.images import guests
from tests import webserver

from .conftest import run_dietstack
from .test_deploy import openstack

pytestmark = pytest.mark.integration

NAME = "debian-13"


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on loopback over tmp_path/www: (its URL, the directory where the
    catalog entry's files belong)."""
    root = tmp_path / "www"
    image = guests.BY_NAME[NAME]
    where = root / urlparse(image.url).netloc / urlparse(image.url).path.lstrip("/")
    where.parent.mkdir(parents=True)
    with webserver.serving(root) as url:
        yield f"{url}/", where.parent


@pytest.fixture()
def mirrored_cloud(cloud: Path, mirror: tuple[str, Path]) -> Iterator[Path]:
    """The test cloud's settings with image_mirror pointing at the mirror, put back after."""
    before = cloud.read_text()
    cloud.write_text(yaml.safe_dump({**yaml.safe_load(before), "image_mirror": mirror[0]}))
    try:
        yield cloud
    finally:
        cloud.write_text(before)


def published_disk(cloud: Path) -> bytes:
    """A bootable disk to publish: the tiny test image's."""
    added = run_dietstack("image", "add", "tiny", config=cloud)
    assert added.returncode == 0, added.stderr[-3000:]
    data_dir = Path(yaml.safe_load(cloud.read_text())["data_dir"])
    return (data_dir / "images" / "tiny" / "disk.img").read_bytes()


def leftovers() -> set[str]:
    return {path.name for path in Path("/var/tmp").glob("dietstack-image-*")}


def test_a_catalog_image_is_checked_uploaded_with_its_properties_and_fitting_flavors(
    mirrored_cloud: Path, mirror: tuple[str, Path]
) -> None:
    image = guests.BY_NAME[NAME]
    disk = published_disk(mirrored_cloud)
    directory = mirror[1]
    (directory / image.file_name).write_bytes(disk)
    before = leftovers()

    wrong = hashlib.sha512(disk + b"tampered").hexdigest()
    (directory / "SHA512SUMS").write_text(f"{wrong}  {image.file_name}\n")
    refused = run_dietstack("image", "add", NAME, config=mirrored_cloud)
    assert refused.returncode != 0
    assert "does not match the publisher's checksum file" in refused.stderr
    assert "nothing uploaded" in refused.stderr and "Traceback" not in refused.stderr
    assert openstack("admin", "image", "list", "--name", NAME, "-f", "json") == []
    assert leftovers() == before

    right = hashlib.sha512(disk).hexdigest()
    (directory / "SHA512SUMS").write_text(
        f"{'0' * 128}  debian-13-nocloud-amd64.qcow2\n{right}  {image.file_name}\n"
    )
    try:
        added = run_dietstack("image", "add", NAME, config=mirrored_cloud)
        assert added.returncode == 0, added.stderr[-3000:]
        assert f"Uploaded {NAME}" in added.stdout
        assert "flavors that fit: m1.mini, m1.small" in added.stdout
        assert "(100 %)" in added.stderr  # download and upload progress
        shown = openstack("admin", "image", "show", NAME, "-f", "json")
        assert (shown["min_disk"], shown["min_ram"], shown["visibility"]) == (3, 512, "public")
        properties = shown["properties"]
        assert properties["os_distro"] == "debian" and properties["os_version"] == "13"
        assert properties["hw_disk_bus"] == "virtio" and properties["os_admin_user"] == "debian"
        assert leftovers() == before

        again = run_dietstack("image", "add", NAME, config=mirrored_cloud)
        assert again.returncode == 0 and f"Already there: {NAME}" in again.stdout
        assert len(openstack("admin", "image", "list", "--name", NAME, "-f", "json")) == 1
    finally:
        openstack("admin", "image", "delete", NAME, check=False)


def test_an_unknown_catalog_name_is_a_clear_error(cloud: Path) -> None:
    listed = run_dietstack("image", "list-catalog", config=cloud)
    assert listed.returncode == 0 and "ubuntu-24.04" in listed.stdout
    unknown = run_dietstack("image", "add", "debian-14", config=cloud)
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "neither a catalog name, `tiny`, a URL nor an existing file" in unknown.stderr
    assert "list-catalog" in unknown.stderr
