"""What this host trusts: an archive handed to `restore`, and what `destroy --data`
may delete. Neither test needs a cloud; both change nothing outside pytest's
temporary directories."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from dietstack.engine import teardown
from dietstack.hosts.hostio import LocalHost
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import archives, backup

from .conftest import run_dietstack

pytestmark = pytest.mark.integration

CRON = Path("/etc/cron.d")
HOSTILE = "dietstack-hostile"
VALUES = {"mariadb_root_password": "r" * 32, "admin_password": "a" * 32}


def file_member(name: str, data: bytes, mode: int = 0o600) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def link_member(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def crafted_archive(path: Path, settings: dict[str, Any], hostile: list[Any]) -> Path:
    """An archive as `dietstack backup` lays one out, hostile members first, ending
    with a manifest whose sizes and checksums match every member: its maker wrote
    the manifest too."""
    items = [
        *hostile,
        file_member(archives.SETTINGS_MEMBER, yaml.safe_dump(settings).encode()),
        file_member("config/secrets.yaml", yaml.safe_dump(VALUES).encode()),
        file_member(archives.DATABASES_MEMBER, b"CREATE DATABASE keystone;\n"),
        file_member(f"data/{archives.NB_DB}", b"OVSDB JSON\n", 0o644),
        file_member("data/keystone/fernet-keys/0", b"key0"),
    ]
    files = {
        info.name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for info, data in items
    }
    head = backup.manifest(files, VALUES, "2026.1", {"servers": [], "volumes": False})
    with tarfile.open(path, "w:gz") as tar:
        for info, data in [*items, file_member(archives.MANIFEST, head)]:
            tar.addfile(info, io.BytesIO(data))
    return path


CRON_JOB = file_member(f"config//etc/cron.d/{HOSTILE}", b"* * * * * root id > /tmp/owned\n")
LINK = link_member("config/overrides/nova/nova.conf", f"/etc/cron.d/{HOSTILE}")


@pytest.mark.parametrize(
    ("hostile", "root_data_dir", "expected"),
    [
        ([CRON_JOB, LINK], True, "'config//etc/cron.d/dietstack-hostile' is not a plain"),
        ([CRON_JOB], False, "'config//etc/cron.d/dietstack-hostile' is not a plain"),
        ([LINK], False, "config/overrides/nova/nova.conf is a symbolic link"),
        ([], True, "data_dir: '/' is the root file system"),
    ],
    ids=["all-at-once", "member-into-etc", "symlink", "data-dir-root"],
)
def test_restore_of_a_crafted_archive_is_refused_before_anything_is_written(
    tmp_path: Path, hostile: list[Any], root_data_dir: bool, expected: str
) -> None:
    config_dir, data_dir = tmp_path / "etc", tmp_path / "data"
    settings = {"data_dir": "/" if root_data_dir else str(data_dir), "api_workers": 1}
    archive = crafted_archive(tmp_path / "backup.tar.gz", settings, hostile)
    cron_before = sorted(os.listdir(CRON))

    result = run_dietstack("restore", str(archive), config=config_dir / "settings.yaml")

    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr and "nothing was changed" in result.stderr
    assert sorted(os.listdir(CRON)) == cron_before
    assert not (CRON / HOSTILE).exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["backup.tar.gz"]


class NoContainers:
    """A Docker engine with no DietStack container on it."""

    def containers(self, label: str) -> list[str]:
        return []

    def remove(self, name: str) -> None:
        raise AssertionError(f"{name} must not be removed")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root")
def test_destroy_data_leaves_file_systems_mounted_in_data_dir_untouched(tmp_path: Path) -> None:
    # `dietstack destroy` removes every DietStack container on this Docker engine,
    # whatever its settings say, and the engine here may run the suite's cloud: so
    # this calls the function the command calls, with an engine that has none.
    data_dir, nas = tmp_path / "data", tmp_path / "nas"
    tmpfs, bound = data_dir / "nova" / "mnt" / "share", data_dir / "nova" / "mnt" / "bound"
    for directory in (tmpfs, bound, nas, data_dir / "glance" / "images"):
        directory.mkdir(parents=True)
    (data_dir / "glance" / "images" / "abc").write_bytes(b"image")
    (nas / "volume-1").write_bytes(b"volume on the NAS")
    mounted: list[Path] = []
    try:
        mount("-t", "tmpfs", "tmpfs", str(tmpfs))
        mounted.append(tmpfs)
        # A bind mount of the same file system: st_dev does not tell it apart.
        mount("--bind", str(nas), str(bound))
        mounted.append(bound)
        (tmpfs / "volume-2").write_bytes(b"volume on another file system")

        runtime = cast(DockerRuntime, NoContainers())
        removed, note = teardown.destroy(runtime, data_dir, ovn_image=None)

        assert removed == 0
        assert (tmpfs / "volume-2").read_bytes() == b"volume on another file system"
        assert (bound / "volume-1").read_bytes() == b"volume on the NAS"
        assert (nas / "volume-1").exists()
        assert not (data_dir / "glance").exists()
        assert f"{tmpfs}" in note and f"{bound}" in note and "umount" in note
        assert sorted(path.name for path in (data_dir / "nova" / "mnt").iterdir()) == [
            "bound",
            "share",
        ]
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", str(path)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root")
def test_destroy_data_on_a_node_keeps_what_is_mounted_and_a_mounted_data_dir(
    tmp_path: Path,
) -> None:
    # The script a compute node runs (over SSH there, on this host here): its
    # data_dir is itself a mount point (a disk for the cloud's data), and holds a
    # file system of its own and a bind mount of the same one, as the control's.
    disk, data_dir, nas = tmp_path / "disk", tmp_path / "data dir", tmp_path / "nas"
    for directory in (disk, data_dir, nas):
        directory.mkdir()
    mounted: list[Path] = []
    try:
        mount("--bind", str(disk), str(data_dir))
        mounted.append(data_dir)
        tmpfs, bound = data_dir / "nova" / "mnt" / "a share", data_dir / "nova" / "mnt" / "bound"
        for directory in (tmpfs, bound, data_dir / "nova" / "instances" / "x"):
            directory.mkdir(parents=True)
        (data_dir / "nova" / "instances" / "x" / "disk").write_bytes(b"disk")
        (data_dir / ".hidden").write_bytes(b"")
        (data_dir / "outside").symlink_to(nas)
        (nas / "volume-1").write_bytes(b"volume on the NAS")
        mount("-t", "tmpfs", "tmpfs", str(tmpfs))
        mounted.append(tmpfs)
        mount("--bind", str(nas), str(bound))
        mounted.append(bound)
        (tmpfs / "volume-2").write_bytes(b"volume on another file system")

        note = teardown.remove_data_dir_on(LocalHost(), data_dir)

        assert (tmpfs / "volume-2").read_bytes() == b"volume on another file system"
        assert (nas / "volume-1").read_bytes() == b"volume on the NAS"
        assert sorted(path.name for path in data_dir.iterdir()) == ["nova"]
        assert sorted(path.name for path in (data_dir / "nova").iterdir()) == ["mnt"]
        assert f"{tmpfs}" in note and f"{bound}" in note and "umount" in note
        for path in reversed(mounted[1:]):
            subprocess.run(["umount", str(path)], check=True)
        # Nothing mounted inside any more: emptied, and kept as the mount point it is.
        assert teardown.remove_data_dir_on(LocalHost(), data_dir) == ""
        assert data_dir.is_dir() and list(data_dir.iterdir()) == []
        assert not list(disk.iterdir())
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", str(path)], check=False, capture_output=True)


def test_destroy_data_on_a_node_removes_a_plain_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "ovs").mkdir(parents=True)
    (data_dir / "ovs" / "conf.db").write_bytes(b"db")
    assert teardown.remove_data_dir_on(LocalHost(), data_dir) == ""
    assert not data_dir.exists()
    # Gone already: nothing to do, no error.
    assert teardown.remove_data_dir_on(LocalHost(), data_dir) == ""
