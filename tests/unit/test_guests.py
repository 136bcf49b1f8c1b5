"""The image catalog: digests read the way publishers write them, downloads checked
against them (served by a real local HTTP server), mirrors, and fitting flavors."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dietstack.engine import cloudsetup
from dietstack.errors import DietStackError
from dietstack.images import guests
from tests import webserver

DATA = b"QFI\xfb" + bytes(range(256)) * 4096  # about 1 MiB, a qcow2's magic first


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    """Serves tmp_path/www over HTTP on loopback; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    with webserver.serving(root) as url:
        yield url


def published(tmp_path: Path, server: str, checksums: str) -> guests.GuestImage:
    """A catalog entry for an image in the local server, with its checksum file."""
    www = tmp_path / "www"
    (www / "img").mkdir(exist_ok=True)
    (www / "img" / "guest.qcow2").write_bytes(DATA)
    (www / "img" / "SUMS").write_text(checksums)
    return replace(
        guests.BY_NAME["debian-13"],
        url=f"{server}/img/guest.qcow2",
        checksums_url=f"{server}/img/SUMS",
    )


def test_gnu_and_bsd_lines_with_pgp_armour_are_read() -> None:
    sha256 = hashlib.sha256(DATA).hexdigest()
    sha512 = hashlib.sha512(DATA).hexdigest()
    gnu = f"{hashlib.md5(DATA).hexdigest()}  guest.qcow2\n{sha256} *guest.qcow2\n"
    assert guests.expected_digest(gnu, "guest.qcow2") == ("sha256", sha256)
    bsd = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
        f"# Fedora-Cloud 43\nSHA256 (other.qcow2) = {'0' * 64}\n"
        f"SHA256 (guest.qcow2) = {sha256}\nSHA512 (guest.qcow2) = {sha512}\n"
        "-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n"
    )
    assert guests.expected_digest(bsd, "guest.qcow2") == ("sha512", sha512)


def test_only_md5_or_a_missing_file_is_refused() -> None:
    with pytest.raises(DietStackError, match="no SHA-256 or SHA-512 digest for guest.qcow2"):
        guests.expected_digest(f"{hashlib.md5(DATA).hexdigest()}  guest.qcow2\n", "guest.qcow2")
    with pytest.raises(DietStackError, match="guest.qcow2"):
        guests.expected_digest(f"{'a' * 64}  another.qcow2\n", "guest.qcow2")


def test_a_matching_download_is_kept_and_progress_is_told(tmp_path: Path, server: str) -> None:
    image = published(tmp_path, server, f"{hashlib.sha512(DATA).hexdigest()}  guest.qcow2\n")
    digest = guests.expected_digest(guests.fetch_checksums(image), image.file_name)
    said: list[str] = []
    target = tmp_path / "guest.qcow2"
    guests.download(image, target, digest, said.append)
    assert target.read_bytes() == DATA
    assert said[0] == f"downloading {image.url}"
    assert any("(100 %)" in line for line in said) and len(said) <= 12


def test_a_wrong_digest_removes_the_file(tmp_path: Path, server: str) -> None:
    image = published(tmp_path, server, f"{'ab' * 32}  guest.qcow2\n")
    digest = guests.expected_digest(guests.fetch_checksums(image), image.file_name)
    target = tmp_path / "guest.qcow2"
    with pytest.raises(DietStackError, match="does not match the publisher") as caught:
        guests.download(image, target, digest, lambda line: None)
    assert "nothing uploaded" in caught.value.message
    assert not target.exists()


def test_an_unreachable_publisher_names_the_url_and_the_mirror_setting(
    tmp_path: Path, server: str
) -> None:
    image = replace(guests.BY_NAME["cirros"], checksums_url=f"{server}/missing/SHA256SUMS")
    with pytest.raises(DietStackError, match="missing/SHA256SUMS") as caught:
        guests.fetch_checksums(image)
    assert "image_mirror" in caught.value.hint


def test_a_huge_checksum_file_is_refused(tmp_path: Path, server: str) -> None:
    image = published(tmp_path, server, "x" * (guests.CHECKSUMS_MAX_BYTES + 10))
    with pytest.raises(DietStackError, match="larger than a checksum file"):
        guests.fetch_checksums(image)


def test_a_download_larger_than_the_free_space_stops_and_leaves_nothing(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = published(tmp_path, server, "")
    monkeypatch.setattr(guests, "SPARE_BYTES", shutil.disk_usage(tmp_path).free - 1000)
    target = tmp_path / "guest.qcow2"
    with pytest.raises(DietStackError, match="not enough free space"):
        guests.download(image, target, ("sha256", "0" * 64), lambda line: None)
    assert not target.exists()


def test_a_mirror_serves_the_publishers_paths_under_its_prefix() -> None:
    image = guests.BY_NAME["debian-13"].via("http://mirror.lan/cloud-images/")
    assert image.url == (
        "http://mirror.lan/cloud-images/cloud.debian.org/images/cloud/trixie/latest/"
        "debian-13-genericcloud-amd64.qcow2"
    )
    assert image.checksums_url.endswith("/cloud.debian.org/images/cloud/trixie/latest/SHA512SUMS")
    assert image.file_name == "debian-13-genericcloud-amd64.qcow2"
    assert guests.BY_NAME["debian-13"].via("") == guests.BY_NAME["debian-13"]


def test_the_catalog_has_what_users_ask_for_with_digests_and_a_fitting_default_flavor() -> None:
    names = set(guests.BY_NAME)
    wanted = {"debian-13", "debian-12", "ubuntu-24.04", "ubuntu-26.04", "rocky-10", "alma-10"}
    assert wanted | {"cirros"} <= names and any(n.startswith("fedora-") for n in names)
    flavors = [{"name": f.name, "ram": f.ram_mb, "disk": f.disk_gb} for f in cloudsetup.FLAVORS]
    for image in guests.CATALOG:
        assert image.url.startswith("https://") and image.checksums_url.startswith("https://")
        assert image.properties()["hw_disk_bus"] == "virtio"
        if image.name != "cirros":
            assert guests.fitting(flavors, image)[0] == "m1.mini", image.name
    assert guests.fitting(flavors, guests.BY_NAME["cirros"])[0] == "m1.tiny"


def test_an_unknown_name_lists_the_catalog() -> None:
    with pytest.raises(DietStackError, match="no image 'debian-14'") as caught:
        guests.named("debian-14")
    assert "debian-13" in caught.value.hint and "list-catalog" in caught.value.hint
