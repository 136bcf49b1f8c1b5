"""The tiny image in Glance follows the recipe it was built from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from dietstack import imagestore, tinyimage
from dietstack.keystone_api import Keystone

from .helpers import make_env


class FakeGlance:
    """Just the calls imagestore makes, on a dict of images."""

    def __init__(self, images: list[dict[str, Any]]) -> None:
        self.images = images
        self.deleted: list[str] = []

    def get(self, url: str, container: str, **query: str) -> dict[str, Any]:
        return {"images": [i for i in self.images if i["name"] == query.get("name")]}

    def post_plain(self, url: str, body: dict[str, Any], container: str) -> dict[str, Any]:
        image = {**body, "id": f"id-{len(self.images)}", "status": "active"}
        self.images.append(image)
        return image

    def upload(self, url: str, data: Any, container: str) -> None:
        data.read()

    def delete(self, url: str, container: str) -> None:
        ident = url.rsplit("/", 1)[-1]
        self.deleted.append(ident)
        self.images = [i for i in self.images if i["id"] != ident]

    def as_client(self) -> Keystone:
        return cast(Keystone, cast(Any, self))


def built(tmp_path: Path, recipe: str) -> Path:
    (tmp_path / "disk.img").write_bytes(b"\0" * 512)
    (tmp_path / tinyimage.STAMP).write_text(recipe + "\n")
    return tmp_path / "disk.img"


def test_an_older_tiny_image_is_replaced_and_a_current_one_kept(tmp_path: Path) -> None:
    old = {"id": "old", "name": "dietstack-tiny", "status": "active"}
    glance = FakeGlance([old])
    said: list[str] = []
    disk = built(tmp_path, "recipe-2")
    image_id, uploaded = imagestore.add(
        glance.as_client(), make_env(), "tiny", "dietstack-tiny", lambda: disk, said.append
    )
    assert uploaded and image_id != "old" and glance.deleted == ["old"]
    [current] = glance.images
    assert current[imagestore.RECIPE_PROPERTY] == "recipe-2" and current["disk_format"] == "raw"
    assert "replaced the older dietstack-tiny image" in said[0]
    again = imagestore.add(
        glance.as_client(), make_env(), "tiny", "dietstack-tiny", lambda: disk, said.append
    )
    assert again == (image_id, False) and len(glance.images) == 1
