"""The tiny image in Glance follows the recipe it was built from."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests

from dietstack.images import tinyimage
from dietstack.ops import imagestore
from tests import webserver

from .helpers import make_env


def answer(status: int, body: dict[str, Any] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode() if body is not None else b""
    return response


class FakeGlance:
    """Glance's image API on a list of images, behind the session of a connection:
    the requests imagestore makes, as cloudrest sends them."""

    def __init__(self, images: list[dict[str, Any]]) -> None:
        self.images = images
        self.deleted: list[str] = []

    def request(self, url: str, method: str, **kwargs: Any) -> requests.Response:
        assert kwargs.pop("raise_exc") is False
        path = url.split("/v2/images", 1)[1]
        if method == "GET":
            name = kwargs["params"].get("name")
            return answer(200, {"images": [i for i in self.images if i["name"] == name]})
        if method == "POST":
            image = {**kwargs["json"], "id": f"id-{len(self.images)}", "status": "queued"}
            self.images.append(image)
            return answer(201, image)
        ident = path.split("/")[1]
        if method == "PUT":
            kwargs["data"].read()
            for image in self.images:
                if image["id"] == ident:
                    image["status"] = "active"
            return answer(204)
        assert method == "DELETE"
        self.deleted.append(ident)
        self.images = [i for i in self.images if i["id"] != ident]
        return answer(204)

    def as_connection(self) -> Any:
        return SimpleNamespace(session=self)


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
        glance.as_connection(), make_env(), "tiny", "dietstack-tiny", lambda: disk, said.append
    )
    assert uploaded and image_id != "old" and glance.deleted == ["old"]
    [current] = glance.images
    assert current[imagestore.RECIPE_PROPERTY] == "recipe-2" and current["disk_format"] == "raw"
    assert "replaced the older dietstack-tiny image" in said[0]
    again = imagestore.add(
        glance.as_connection(), make_env(), "tiny", "dietstack-tiny", lambda: disk, said.append
    )
    assert again == (image_id, False) and len(glance.images) == 1


def test_an_image_by_url_is_downloaded_whole_with_progress(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    data = bytes(range(256)) * 40960  # 10 MiB: ten chunks, a line at each tenth
    (root / "disk.qcow2").write_bytes(data)
    said: list[str] = []
    target = tmp_path / "copy"
    with webserver.serving(root) as url, target.open("wb") as out:
        imagestore.download(f"{url}/disk.qcow2", out, said.append)
    assert target.read_bytes() == data
    assert said[0].startswith("downloading ") and any("100 %" in line for line in said), said
