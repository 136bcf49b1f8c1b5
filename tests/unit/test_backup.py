"""Taking a backup: what goes into the archive, and how; and restore's refusal to
write over a cloud."""

from __future__ import annotations

import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dietstack.apis import cloudapi
from dietstack.engine import cloudmark
from dietstack.errors import DietStackError
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import backup, unpack

from .helpers import VALUES, a_cloud, take


def test_the_archive_is_private_and_its_manifest_lists_every_file(tmp_path: Path) -> None:
    _, archive = take(tmp_path)
    assert archive.stat().st_mode & 0o777 == 0o600
    head = unpack.check(archive)
    assert head["release"] == "2026.1" and head["cloud"] == cloudmark.fingerprint(VALUES)
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
    assert "data/cinder-volumes/volume-1" in unpack.check(archive)["files"]


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
    assert "data/cinder-volumes/volume-1" in unpack.check(archive)["files"]


def test_restore_never_writes_over_a_cloud(tmp_path: Path) -> None:
    source, archive = take(tmp_path)
    head = unpack.check(archive)
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


class FailingDumpRuntime:
    """MariaDB whose dump fails halfway, after it began writing."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.commands: list[str] = []

    def exec(self, name: str, command: list[str]) -> tuple[int, str]:
        self.commands.append(command[-1])
        (self.data_dir / "mariadb" / ".dietstack-backup.sql.tmp").write_text("CREATE")
        return 1, "mariadb-dump: Got error: 2013: Lost connection"


def test_the_dump_is_private_from_the_start_and_gone_when_it_fails(tmp_path: Path) -> None:
    source = a_cloud(tmp_path)
    runtime = FailingDumpRuntime(source.data_dir)
    with pytest.raises(DietStackError, match="dumping the databases failed"):
        backup.take(
            cast(DockerRuntime, runtime),
            source,
            VALUES,
            tmp_path / "b.tar.gz",
            False,
            {},
            print,
            "2026.1",
        )
    (command,) = runtime.commands
    assert command.startswith("umask 077 &&") and "mariadb-dump" in command
    assert "rm -f /var/lib/mysql/.dietstack-backup.sql.tmp; exit 1" in command
    assert not any((source.data_dir / "mariadb").iterdir())
    assert not (source.data_dir / "state" / ".backup").exists()
    assert not (tmp_path / "b.tar.gz").exists()
