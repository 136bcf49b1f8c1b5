"""The backup archive: what goes in, how restore checks it, where it puts things."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from dietstack import RELEASE, backup, cloudapi, cloudmark
from dietstack.errors import DietStackError
from dietstack.runtime import DockerRuntime

VALUES = {"mariadb_root_password": "r" * 32, "admin_password": "a" * 32}


class DumpingRuntime:
    """MariaDB and OVN's northbound server, as far as a backup uses them: their
    output lands in their data directories, which are bind mounts."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def exec(self, name: str, command: list[str]) -> tuple[int, str]:
        if name == "mariadb":
            (self.data_dir / "mariadb" / ".dietstack-backup.sql").write_text("CREATE DATABASE x;\n")
        else:
            (self.data_dir / "ovn" / ".dietstack-backup-nb.db").write_text("OVSDB JSON\n")
        return 0, ""


def a_cloud(tmp_path: Path) -> backup.Source:
    etc, data = tmp_path / "etc", tmp_path / "data"
    (etc / "overrides" / "nova").mkdir(parents=True)
    (etc / "settings.yaml").write_text(
        yaml.safe_dump({"data_dir": str(data), "management_ip": "192.0.2.9", "api_workers": 2})
    )
    (etc / "secrets.yaml").write_text(yaml.safe_dump(VALUES))
    (etc / "overrides" / "nova" / "nova.conf").write_text("[DEFAULT]\ndebug = true\n")
    trees = ("mariadb", "ovn", "keystone/fernet-keys", "glance/images", "cinder-volumes")
    for tree in (*trees, "nova/state"):
        (data / tree).mkdir(parents=True)
    (data / "keystone" / "fernet-keys" / "0").write_text("key0")
    (data / "nova" / "state" / "compute_id").write_text("6f7a...\n")
    (data / "glance" / "images" / "abc").write_bytes(b"\x00image" * 100)
    (data / "cinder-volumes" / "volume-1").write_bytes(b"\x00" * 1000)
    return backup.Source(etc / "settings.yaml", data)


def take(tmp_path: Path, volumes: bool = False) -> tuple[backup.Source, Path]:
    source = a_cloud(tmp_path)
    archive = tmp_path / "cloud.tar.gz"
    runtime = cast(DockerRuntime, DumpingRuntime(source.data_dir))
    backup.take(runtime, source, VALUES, archive, volumes, {"servers": []}, print)
    return source, archive


def test_the_archive_is_private_and_its_manifest_lists_every_file(tmp_path: Path) -> None:
    _, archive = take(tmp_path)
    assert archive.stat().st_mode & 0o777 == 0o600
    head = backup.check(archive)
    assert head["release"] == RELEASE and head["cloud"] == cloudmark.fingerprint(VALUES)
    assert "password" in head["holds_secrets"]
    assert sorted(head["files"]) == [
        "config/overrides/nova/nova.conf",
        "config/secrets.yaml",
        "config/settings.yaml",
        "data/glance/images/abc",
        "data/keystone/fernet-keys/0",
        "data/nova/state/compute_id",
        "data/ovn/ovnnb_db.db",
        "databases.sql",
    ]


def test_volumes_only_when_asked(tmp_path: Path) -> None:
    _, archive = take(tmp_path, volumes=True)
    assert "data/cinder-volumes/volume-1" in backup.check(archive)["files"]


def test_a_volume_written_to_during_the_backup_still_makes_a_sound_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A running guest writes to its volume while the archive is being written.
    addfile = tarfile.TarFile.addfile

    def guest_writes_first(self: tarfile.TarFile, info: tarfile.TarInfo, *args: Any) -> None:
        if info.name == "data/cinder-volumes/volume-1":
            volume = tmp_path / "data" / "cinder-volumes" / "volume-1"
            volume.write_bytes(b"\x01" * 1000)
        addfile(self, info, *args)

    monkeypatch.setattr(tarfile.TarFile, "addfile", guest_writes_first)
    _, archive = take(tmp_path, volumes=True)
    monkeypatch.undo()
    assert "data/cinder-volumes/volume-1" in backup.check(archive)["files"]


def test_an_archive_that_starts_with_its_manifest_is_read_too(tmp_path: Path) -> None:
    _, archive = take(tmp_path)
    with tarfile.open(archive, "r:gz") as tar:
        items = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    assert items[-1][0].name == backup.MANIFEST
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in [items[-1], *items[:-1]]:
            tar.addfile(member, io.BytesIO(data))
    assert backup.check(archive)["release"] == RELEASE


def rewrite(archive: Path, change: Any) -> None:
    """Rewrite the archive with each member (name, bytes) passed through `change`."""
    with tarfile.open(archive, "r:gz") as tar:
        items = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in items:
            data = change(member.name, data)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def test_a_damaged_archive_is_refused(tmp_path: Path) -> None:
    _, archive = take(tmp_path)
    rewrite(archive, lambda name, data: data + b"x" if name == "databases.sql" else data)
    with pytest.raises(DietStackError) as raised:
        backup.check(archive)
    assert "damaged" in raised.value.message and "databases.sql" in raised.value.message
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DietStackError, match="damaged"):
        backup.check(archive)


def test_an_archive_of_another_release_is_refused(tmp_path: Path) -> None:
    _, archive = take(tmp_path)

    def older(name: str, data: bytes) -> bytes:
        if name != backup.MANIFEST:
            return data
        return json.dumps(json.loads(data) | {"release": "2025.1"}).encode()

    rewrite(archive, older)
    with pytest.raises(DietStackError) as raised:
        backup.check(archive)
    assert "2025.1" in raised.value.message and "nothing was changed" in raised.value.message


def test_restore_puts_everything_back_and_leaves_the_dump_for_deploy(tmp_path: Path) -> None:
    _, archive = take(tmp_path)
    etc, data = tmp_path / "new-etc", tmp_path / "new-data"
    backup.extract(archive, etc, data)
    assert yaml.safe_load((etc / "secrets.yaml").read_text()) == VALUES
    assert (etc / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    assert (data / "keystone" / "fernet-keys" / "0").read_text() == "key0"
    assert (data / "state" / backup.PENDING_DUMP).read_text() == "CREATE DATABASE x;\n"
    assert (data / "ovn" / "ovnnb_db.db").exists()
    assert not (etc / "settings.yaml").exists()  # merged by the caller


def test_restored_settings_keep_this_hosts_own(tmp_path: Path) -> None:
    _, archive = take(tmp_path)
    fresh = tmp_path / "fresh" / "settings.yaml"
    merged = backup.restored_settings(archive, fresh)
    assert "management_ip" not in merged and merged["api_workers"] == 2
    fresh.parent.mkdir()
    fresh.write_text(yaml.safe_dump({"management_ip": "192.0.2.50", "data_dir": "/srv/ds"}))
    merged = backup.restored_settings(archive, fresh)
    assert merged["management_ip"] == "192.0.2.50" and merged["data_dir"] == "/srv/ds"


def test_restore_never_writes_over_a_cloud(tmp_path: Path) -> None:
    source, archive = take(tmp_path)
    head = backup.check(archive)
    empty = backup.Source(tmp_path / "e" / "settings.yaml", tmp_path / "e" / "data")
    backup.refuse_to_overwrite(head, empty, 0, {})
    backup.refuse_to_overwrite(head, empty, 0, VALUES)  # its own secrets are fine
    with pytest.raises(DietStackError, match="runs on this host"):
        backup.refuse_to_overwrite(head, empty, 3, {})
    with pytest.raises(DietStackError, match="already holds a cloud"):
        backup.refuse_to_overwrite(head, source, 0, {})
    with pytest.raises(DietStackError, match="another cloud"):
        backup.refuse_to_overwrite(head, empty, 0, {"mariadb_root_password": "o" * 32})


def test_servers_booted_from_volumes_are_told_from_image_ones() -> None:
    servers = [
        SimpleNamespace(id="1", name="a", status="ACTIVE", image={"id": "img"}),
        SimpleNamespace(id="2", name="b", status="ACTIVE", image=""),
        SimpleNamespace(id="3", name="c", status="SHUTOFF", image={"id": None}),
    ]
    conn = SimpleNamespace(compute=SimpleNamespace(servers=lambda all_projects: servers))
    records = cloudapi.server_records(conn)
    assert [r["volume_backed"] for r in records] == [False, True, True]
