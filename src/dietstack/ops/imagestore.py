"""`dietstack image add`: put VM images into Glance, idempotently by name.

`tiny` is DietStack's own test image, built locally (no internet needed);
anything else is a file path or an http(s) URL (CirrOS, Debian or Ubuntu cloud
images), whose format is told from its first bytes. The tiny image carries the
hash of the recipe it was built from, so an older one (from an earlier
DietStack) is replaced by the current one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import requests

from dietstack.apis import cloudrest
from dietstack.errors import DietStackError
from dietstack.images import tinyimage
from dietstack.render import Env
from dietstack.services import glance

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


def upload(conn: Any, env: Env, name: str, path: Path, properties: dict[str, str]) -> str:
    """A public image from a local file; an unfinished upload of the same name is replaced."""
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
        cloudrest.upload(conn, f"{base}/{image['id']}/file", data, "glance-api")
    return str(image["id"])


def _chunks(response: requests.Response) -> Iterator[bytes]:
    yield from response.iter_content(chunk_size=1024 * 1024)


def download(url: str, target: IO[bytes], say: Callable[[str], None]) -> None:
    say(f"downloading {url}")
    try:
        with requests.get(url, stream=True, timeout=60) as response:
            response.raise_for_status()
            for chunk in _chunks(response):
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
            f"{source} is neither `tiny`, a URL nor an existing file",
            hint="give `tiny`, an http(s) URL or the path of an image file",
        )
    return upload(conn, env, name, path, {}), True
