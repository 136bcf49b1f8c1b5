"""Distributions' cloud images by name: where each is published, how its digest is
published beside it, and what Glance should know about it.

A download is trusted only once its digest matches the publisher's checksum file
(SHA-256 or SHA-512; GNU `HEX  NAME` or BSD `SHA256 (NAME) = HEX` lines, a PGP
armour around them is passed over). Both come over HTTPS from the publisher, or
through the `image_mirror` the admin configured: a mirror serves the publisher's
paths under its own prefix (MIRROR/HOST/PATH).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from dietstack.errors import DietStackError

#: A checksum file is a few lines per image; a larger answer is not one.
CHECKSUMS_MAX_BYTES = 1024 * 1024
#: Space left free beside a download, for the upload's and the system's needs.
SPARE_BYTES = 512 * 1024 * 1024
#: hex digits -> hashlib name; shorter digests (MD5, SHA-1) are not trusted.
DIGESTS = {64: "sha256", 128: "sha512"}


@dataclass(frozen=True)
class GuestImage:
    name: str
    title: str
    url: str
    checksums_url: str
    os_distro: str
    os_version: str
    admin_user: str
    min_disk_gb: int
    min_ram_mb: int

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def via(self, mirror: str) -> GuestImage:
        """The same image fetched through a mirror (`image_mirror`); "" is no mirror."""
        if not mirror:
            return self
        return replace(
            self, url=_through(mirror, self.url), checksums_url=_through(mirror, self.checksums_url)
        )

    def properties(self) -> dict[str, str]:
        """Glance properties Nova and the dashboard read (virtio disk and NIC: every
        image here has the drivers)."""
        return {
            "os_distro": self.os_distro,
            "os_version": self.os_version,
            "os_admin_user": self.admin_user,
            "hw_disk_bus": "virtio",
            "hw_vif_model": "virtio",
        }


def _through(mirror: str, url: str) -> str:
    parsed = urlparse(url)
    return f"{mirror.rstrip('/')}/{parsed.netloc}{parsed.path}"


def _debian(version: str, codename: str, disk_gb: int) -> GuestImage:
    base = f"https://cloud.debian.org/images/cloud/{codename}/latest"
    return GuestImage(
        f"debian-{version}",
        f"Debian {version} ({codename}) generic cloud image",
        f"{base}/debian-{version}-genericcloud-amd64.qcow2",
        f"{base}/SHA512SUMS",
        "debian",
        version,
        "debian",
        disk_gb,
        512,
    )


def _ubuntu(version: str, codename: str) -> GuestImage:
    base = f"https://cloud-images.ubuntu.com/{codename}/current"
    return GuestImage(
        f"ubuntu-{version}",
        f"Ubuntu {version} LTS ({codename}) server cloud image",
        f"{base}/{codename}-server-cloudimg-amd64.img",
        f"{base}/SHA256SUMS",
        "ubuntu",
        version,
        "ubuntu",
        4,
        1024,
    )


CATALOG: tuple[GuestImage, ...] = (
    _debian("13", "trixie", 3),
    _debian("12", "bookworm", 2),
    _ubuntu("24.04", "noble"),
    _ubuntu("26.04", "resolute"),
    GuestImage(
        "fedora-43",
        "Fedora 43 Cloud Base",
        "https://download.fedoraproject.org/pub/fedora/linux/releases/43/Cloud/x86_64/"
        "images/Fedora-Cloud-Base-Generic-43-1.6.x86_64.qcow2",
        "https://download.fedoraproject.org/pub/fedora/linux/releases/43/Cloud/x86_64/"
        "images/Fedora-Cloud-43-1.6-x86_64-CHECKSUM",
        "fedora",
        "43",
        "fedora",
        5,
        1024,
    ),
    GuestImage(
        "rocky-10",
        "Rocky Linux 10 GenericCloud",
        "https://dl.rockylinux.org/pub/rocky/10/images/x86_64/"
        "Rocky-10-GenericCloud-Base.latest.x86_64.qcow2",
        "https://dl.rockylinux.org/pub/rocky/10/images/x86_64/"
        "Rocky-10-GenericCloud-Base.latest.x86_64.qcow2.CHECKSUM",
        "rocky",
        "10",
        "rocky",
        10,
        1024,
    ),
    GuestImage(
        "alma-10",
        "AlmaLinux 10 GenericCloud",
        "https://repo.almalinux.org/almalinux/10/cloud/x86_64/images/"
        "AlmaLinux-10-GenericCloud-latest.x86_64.qcow2",
        "https://repo.almalinux.org/almalinux/10/cloud/x86_64/images/CHECKSUM",
        "almalinux",
        "10",
        "almalinux",
        10,
        1024,
    ),
    GuestImage(
        "cirros",
        "CirrOS 0.6.3, a minimal test image",
        "https://download.cirros-cloud.net/0.6.3/cirros-0.6.3-x86_64-disk.img",
        "https://download.cirros-cloud.net/0.6.3/SHA256SUMS",
        "cirros",
        "0.6.3",
        "cirros",
        1,
        128,
    ),
)

BY_NAME = {image.name: image for image in CATALOG}


def named(name: str) -> GuestImage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise DietStackError(
            f"there is no image {name!r} in the catalog",
            hint=f"known: {', '.join(BY_NAME)} (`dietstack image list-catalog`); for any "
            "other image give its URL or file to `dietstack image add`",
        ) from None


_GNU_LINE = re.compile(r"^([0-9a-fA-F]+)\s+\*?(\S+)\s*$")
_BSD_LINE = re.compile(r"^(SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*$")


def expected_digest(checksums: str, file_name: str) -> tuple[str, str]:
    """(hashlib name, hex digest) of `file_name` in a published checksum file; the
    strongest one listed wins."""
    found: dict[str, str] = {}
    for line in checksums.splitlines():
        line = line.strip()
        if gnu := _GNU_LINE.match(line):
            digest, name = gnu.group(1), gnu.group(2)
        elif bsd := _BSD_LINE.match(line):
            digest, name = bsd.group(3), bsd.group(2)
        else:
            continue  # comments, PGP armour, other formats
        algorithm = DIGESTS.get(len(digest))
        if name.lstrip("./") == file_name and algorithm:
            found[algorithm] = digest.lower()
    for algorithm in ("sha512", "sha256"):
        if algorithm in found:
            return algorithm, found[algorithm]
    raise DietStackError(
        f"the checksum file lists no SHA-256 or SHA-512 digest for {file_name}",
        hint="the publisher may have moved the image: check the catalog's URL, or the "
        "`image_mirror` setting if one is set",
    )


def fetch_checksums(image: GuestImage) -> str:
    """The publisher's checksum file, at most CHECKSUMS_MAX_BYTES."""
    data = bytearray()
    try:
        with requests.get(image.checksums_url, stream=True, timeout=60) as response:
            response.raise_for_status()
            for chunk in response.iter_content(chunk_size=64 * 1024):
                data.extend(chunk)
                if len(data) > CHECKSUMS_MAX_BYTES:
                    raise DietStackError(
                        f"{image.checksums_url} is larger than a checksum file "
                        f"({CHECKSUMS_MAX_BYTES // 1024} KiB): refused",
                        hint="check the catalog's URL or the `image_mirror` setting",
                    )
    except requests.RequestException as exc:
        raise _unreachable(image.checksums_url, exc) from None
    return data.decode("utf-8", errors="replace")


def download(
    image: GuestImage, target: Path, digest: tuple[str, str], say: Callable[[str], None]
) -> None:
    """`image` into `target`, checked against `digest` as it arrives; on a mismatch,
    a cut-off or an error the file is removed. Stops before the disk fills."""
    algorithm, expected = digest
    hasher = hashlib.new(algorithm)
    room = shutil.disk_usage(target.parent).free - SPARE_BYTES
    say(f"downloading {image.url}")
    try:
        with requests.get(image.url, stream=True, timeout=60) as response:
            response.raise_for_status()
            total = int(response.headers.get("Content-Length") or 0)
            if total > room:
                raise _no_room(target, total, room)
            with target.open("wb") as out:
                got = 0
                for chunk in every_tenth(chunks(response), total, say, "downloaded"):
                    got += len(chunk)
                    if got > room:
                        raise _no_room(target, got, room)
                    hasher.update(chunk)
                    out.write(chunk)
    except requests.RequestException as exc:
        target.unlink(missing_ok=True)
        raise _unreachable(image.url, exc) from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if hasher.hexdigest() != expected:
        target.unlink(missing_ok=True)
        raise DietStackError(
            f"{image.file_name}: its {algorithm} digest does not match the publisher's "
            f"checksum file ({image.checksums_url}); the file was removed, nothing uploaded",
            hint="run the command again (a download cut short); if it fails again, the "
            "mirror or a proxy serves a different file: do not use it",
        )


def chunks(response: requests.Response) -> Iterator[bytes]:
    """A streamed answer's body, a MiB at a time."""
    yield from response.iter_content(chunk_size=1024 * 1024)


def every_tenth(
    pieces: Iterator[bytes], total: int, say: Callable[[str], None], verb: str
) -> Iterator[bytes]:
    """Passes the chunks on, saying how far at each tenth (or each 100 MiB when the
    size is not known)."""
    done, shown = 0, 0
    step = total // 10 if total else 100 * 1024 * 1024
    for chunk in pieces:
        done += len(chunk)
        if step and done // step > shown:
            shown = done // step
            share = f" ({done * 100 // total} %)" if total else ""
            say(f"      {verb} {done // (1024 * 1024)} MiB{share}")
        yield chunk


def _no_room(target: Path, size: int, room: int) -> DietStackError:
    return DietStackError(
        f"not enough free space in {target.parent} for the image "
        f"({size // (1024 * 1024)} MiB, {max(room, 0) // (1024 * 1024)} MiB free beyond "
        f"{SPARE_BYTES // (1024 * 1024)} MiB kept)",
        hint=f"free space in {target.parent} and run the command again",
    )


def _unreachable(url: str, exc: requests.RequestException) -> DietStackError:
    return DietStackError(
        f"cannot download {url}: {exc}",
        hint="check this host's internet access, or set `image_mirror` to a mirror that "
        "serves MIRROR/HOST/PATH, or download the image yourself and give its path",
    )


def fitting(flavors: list[dict[str, Any]], image: GuestImage) -> list[str]:
    """Names of the flavors whose disk and RAM the image fits, smallest first."""
    fits = [
        flavor
        for flavor in flavors
        if int(flavor["disk"]) >= image.min_disk_gb and int(flavor["ram"]) >= image.min_ram_mb
    ]
    return [str(flavor["name"]) for flavor in sorted(fits, key=lambda f: (f["ram"], f["disk"]))]
