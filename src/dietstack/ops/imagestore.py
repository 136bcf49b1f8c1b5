"""`dietstack image add`: put VM images into Glance, idempotently by name.

`tiny` is DietStack's own test image, built locally (no internet needed); a name
of the catalog (images/guests.py: debian-13, ubuntu-24.04, ...) is downloaded from
its publisher, checked against the published digest and uploaded with the
properties and minimums of that distribution; anything else is a file path or an
http(s) URL, whose format is told from its first bytes. The tiny image carries the
hash of the recipe it was built from, so an older one (from an earlier
DietStack) is replaced by the current one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import requests

from dietstack.apis import cloudrest
from dietstack.errors import DietStackError
from dietstack.images import guests, tinyimage
from dietstack.render import Env
from dietstack.services import glance, nova

TINY = "tiny"
#: Glance property of the tiny image: the recipe (tinyimage.recipe_hash) it came from.
RECIPE_PROPERTY = "dietstack_recipe"
QCOW2_MAGIC = b"QFI\xfb"


def disk_format(path: Path) -> str:
    with path.open("rb") as handle:
        return "qcow2" if handle.read(4) == QCOW2_MAGIC else "raw"


def find_image(conn: Any, env: Env, name: str) -> dict[str, Any] | None:
    url = env.url(glance.PORT, "/v2/images")
    images = cloudrest.get(conn, url, "glance-api", name=name)["images"]
    active = [image for image in images if image["status"] == "active"]
    return dict(active[0]) if active else None


def find(conn: Any, env: Env, name: str) -> str | None:
    image = find_image(conn, env, name)
    return str(image["id"]) if image else None


def add_tiny(
    conn: Any,
    env: Env,
    name: str,
    build_tiny: Callable[[], Path],
    say: Callable[[str], None],
) -> tuple[str, bool]:
    """The tiny image as the current recipe makes it; an older build is replaced."""
    disk = build_tiny()
    recipe = tinyimage.built_recipe(disk.parent)
    existing = find_image(conn, env, name)
    if existing and existing.get(RECIPE_PROPERTY) == recipe:
        return str(existing["id"]), False
    image_id = upload(conn, env, name, disk, {RECIPE_PROPERTY: recipe})
    if existing:
        # Servers booted from it keep running; new ones get the current image.
        cloudrest.delete(conn, env.url(glance.PORT, f"/v2/images/{existing['id']}"), "glance-api")
        say(f"replaced the older {name} image ({existing['id']})")
    return image_id, True


def upload(
    conn: Any,
    env: Env,
    name: str,
    path: Path,
    properties: dict[str, str | int],
    say: Callable[[str], None] | None = None,
) -> str:
    """A public image from a local file; an unfinished upload of the same name is
    replaced. With `say`, how far the upload is, at each tenth."""
    base = env.url(glance.PORT, "/v2/images")
    for stale in cloudrest.get(conn, base, "glance-api", name=name)["images"]:
        if stale["status"] != "active":
            cloudrest.delete(conn, f"{base}/{stale['id']}", "glance-api")
    body = {
        "name": name,
        "disk_format": disk_format(path),
        "container_format": "bare",
        "visibility": "public",
        **properties,
    }
    # Glance v2 takes the image's fields without a resource key around them.
    image = cloudrest.post(conn, base, body, "glance-api")
    with path.open("rb") as data:
        stream = data if say is None else cast(BinaryIO, Counted(data, path.stat().st_size, say))
        cloudrest.upload(conn, f"{base}/{image['id']}/file", stream, "glance-api")
    return str(image["id"])


class Counted:
    """A file read for an upload, saying how far the reading is at each tenth."""

    def __init__(self, handle: BinaryIO, size: int, say: Callable[[str], None]) -> None:
        self._handle = handle
        self._size = size
        self._say = say
        self._done = 0
        self._shown = 0

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._done += len(chunk)
        if self._size and self._done * 10 // self._size > self._shown:
            self._shown = self._done * 10 // self._size
            mib = self._done // (1024 * 1024)
            self._say(f"      uploaded {mib} MiB ({self._done * 100 // self._size} %)")
        return chunk


def add_guest(
    conn: Any, env: Env, image: guests.GuestImage, name: str, say: Callable[[str], None]
) -> tuple[str, bool]:
    """A catalog image, downloaded and checked, unless an image `name` is there."""
    existing = find(conn, env, name)
    if existing:
        return existing, False
    digest = guests.expected_digest(guests.fetch_checksums(image), image.file_name)
    with tempfile.TemporaryDirectory(prefix="dietstack-image-", dir="/var/tmp") as tmp:
        path = Path(tmp) / image.file_name
        guests.download(image, path, digest, say)
        say(f"{image.file_name}: {digest[0]} matches the publisher's; uploading to Glance")
        return upload_as(conn, env, image, name, path, say), True


def upload_as(
    conn: Any, env: Env, image: guests.GuestImage, name: str, path: Path, say: Callable[[str], None]
) -> str:
    """A disk file uploaded with a catalog entry's minimums and properties."""
    fields: dict[str, str | int] = {
        "min_disk": image.min_disk_gb,
        "min_ram": image.min_ram_mb,
        **image.properties(),
    }
    return upload(conn, env, name, path, fields, say)


def fitting_flavors(conn: Any, env: Env, image: guests.GuestImage) -> list[str]:
    """The public flavors big enough for a catalog image."""
    url = env.url(nova.PORT, "/v2.1/flavors/detail")
    return guests.fitting(cloudrest.get(conn, url, "nova-api")["flavors"], image)


def download(url: str, target: IO[bytes], say: Callable[[str], None]) -> None:
    say(f"downloading {url}")
    try:
        with requests.get(url, stream=True, timeout=60) as response:
            response.raise_for_status()
            total = int(response.headers.get("Content-Length") or 0)
            for chunk in guests.every_tenth(guests.chunks(response), total, say, "downloaded"):
                target.write(chunk)
    except requests.RequestException as exc:
        raise DietStackError(
            f"cannot download {url}: {exc}",
            hint="check the URL and this host's internet access, or download the file "
            "yourself and give its path",
        ) from None


def add(
    conn: Any,
    env: Env,
    source: str,
    name: str,
    build_tiny: Callable[[], Path],
    say: Callable[[str], None],
) -> tuple[str, bool]:
    """Returns the image id and whether it was uploaded now (False: it was there)."""
    if source == TINY:
        return add_tiny(conn, env, name, build_tiny, say)
    existing = find(conn, env, name)
    if existing:
        return existing, False
    if source.startswith(("http://", "https://")):
        with tempfile.NamedTemporaryFile(prefix="dietstack-image-", dir="/var/tmp") as tmp:
            download(source, tmp, say)
            tmp.flush()
            return upload(conn, env, name, Path(tmp.name), {}), True
    path = Path(source)
    if not path.is_file():
        raise DietStackError(
            f"{source} is neither a catalog name, `tiny`, a URL nor an existing file",
            hint="give a name that `dietstack image list-catalog` shows, `tiny`, an http(s) "
            "URL or the path of an image file",
        )
    return upload(conn, env, name, path, {}), True
