"""Reading an archive for restore: how it is checked, where its files go, and
archives made to do harm."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from dietstack.engine import afterup
from dietstack.errors import DietStackError
from dietstack.ops import archives, backup, unpack

from .helpers import VALUES, take


def test_an_archive_that_starts_with_its_manifest_is_read_too(tmp_path: Path) -> None:
    _, archive = take(tmp_path)
    with tarfile.open(archive, "r:gz") as tar:
        items = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    assert items[-1][0].name == archives.MANIFEST
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in [items[-1], *items[:-1]]:
            tar.addfile(member, io.BytesIO(data))
    assert unpack.check(archive)["release"] == "2026.1"


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
        unpack.check(archive)
    assert "damaged" in raised.value.message and "databases.sql" in raised.value.message
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DietStackError, match="damaged"):
        unpack.check(archive)


def test_an_archive_of_another_release_is_refused(tmp_path: Path) -> None:
    _, archive = take(tmp_path)

    def older(name: str, data: bytes) -> bytes:
        if name != archives.MANIFEST:
            return data
        return json.dumps(json.loads(data) | {"release": "2025.1"}).encode()

    rewrite(archive, older)
    with pytest.raises(DietStackError) as raised:
        unpack.check(archive)
    assert "2025.1" in raised.value.message and "nothing was changed" in raised.value.message


def test_restore_puts_everything_back_and_leaves_the_dump_for_deploy(tmp_path: Path) -> None:
    _, archive = take(tmp_path)
    etc, data = tmp_path / "new-etc", tmp_path / "new-data"
    unpack.extract(archive, etc, data)
    assert yaml.safe_load((etc / "secrets.yaml").read_text()) == VALUES
    assert (etc / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    assert (data / "keystone" / "fernet-keys" / "0").read_text() == "key0"
    assert (data / "state" / afterup.PENDING_DUMP).read_text() == "CREATE DATABASE x;\n"
    assert (data / "ovn" / "ovnnb_db.db").exists()
    assert not (etc / "settings.yaml").exists()  # merged by the caller


def test_restored_settings_keep_this_hosts_own(tmp_path: Path) -> None:
    _, archive = take(tmp_path)
    fresh = tmp_path / "fresh" / "settings.yaml"
    merged = unpack.restored_settings(archive, fresh)
    assert "management_ip" not in merged and merged["api_workers"] == 2
    fresh.parent.mkdir()
    fresh.write_text(yaml.safe_dump({"management_ip": "192.0.2.50", "data_dir": "/srv/ds"}))
    merged = unpack.restored_settings(archive, fresh)
    assert merged["management_ip"] == "192.0.2.50" and merged["data_dir"] == "/srv/ds"


# --- archives made to do harm -------------------------------------------------------
#
# Whoever makes an archive writes its manifest too, so every one here comes with a
# manifest that matches it: its checksums prove nothing.

OUTSIDE = "dietstack-hostile"


def file_member(name: str, data: bytes = b"* * * * * root sh -c 'id'\n", mode: int = 0o644) -> Any:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def special_member(name: str, kind: bytes, linkname: str = "") -> Any:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.devmajor, info.devminor = 1, 3
    return info, b""


def a_backup_with(
    tmp_path: Path,
    extra: list[Any],
    settings: dict[str, Any] | None = None,
    change_manifest: Any = lambda head: head,
) -> Path:
    """An archive laid out as `take` writes one, plus `extra` members, ending with a
    manifest that lists every member with its true size and SHA-256."""
    settings = {"data_dir": str(tmp_path / "data")} if settings is None else settings
    items = [
        file_member(archives.SETTINGS_MEMBER, yaml.safe_dump(settings).encode(), 0o600),
        file_member("config/secrets.yaml", yaml.safe_dump(VALUES).encode(), 0o600),
        file_member(archives.DATABASES_MEMBER, b"CREATE DATABASE x;\n", 0o600),
        file_member(f"data/{archives.NB_DB}", b"OVSDB JSON\n"),
        file_member("data/keystone/fernet-keys/0", b"key0", 0o600),
        *extra,
    ]
    files = {
        info.name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for info, data in items
    }
    head = change_manifest(json.loads(backup.manifest(files, VALUES, "2026.1", {"servers": []})))
    encoded = json.dumps(head).encode()
    archive = tmp_path / "hostile.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in [*items, file_member(archives.MANIFEST, encoded)]:
            tar.addfile(info, io.BytesIO(data))
    return archive


def everything_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def assert_refused(tmp_path: Path, archive: Path, expected: str) -> None:
    """Refused by the check and by the restore itself, with nothing written but the
    (empty) data directory the restore stages in."""
    before = everything_under(tmp_path)
    with pytest.raises(DietStackError) as checked:
        unpack.check(archive)
    assert expected in checked.value.message and "nothing was changed" in checked.value.message
    etc, data = tmp_path / "etc", tmp_path / "data"
    with pytest.raises(DietStackError) as extracted:
        unpack.extract(archive, etc, data)
    assert expected in extracted.value.message
    assert everything_under(tmp_path) - before <= {data} and not any(data.iterdir())
    for outside in (Path("/etc/cron.d") / OUTSIDE, Path("/root") / OUTSIDE, tmp_path / OUTSIDE):
        assert not outside.exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"config//etc/cron.d/{OUTSIDE}", "is not a plain relative path"),
        (f"data//root/{OUTSIDE}", "is not a plain relative path"),
        (f"config/overrides//etc/cron.d/{OUTSIDE}", "is not a plain relative path"),
        (f"/etc/cron.d/{OUTSIDE}", "is not a plain relative path"),
        (f"config/overrides/../../{OUTSIDE}", "is not a plain relative path"),
        ("config/overrides/./nova/nova.conf", "is not a plain relative path"),
        (f"config/overrides/nova\\..\\..\\{OUTSIDE}", "is not a plain relative path"),
        (f"config/overrides/nova/{OUTSIDE}\n", "is not a plain relative path"),
        (f"config/cron.d/{OUTSIDE}", "is not a file a backup holds"),
        ("data/mariadb/mysql/user.MAD", "is not a file a backup holds"),
        (f"data/state/{afterup.PENDING_DUMP}", "is not a file a backup holds"),
        (f"data/nova/instances/{OUTSIDE}", "is not a file a backup holds"),
    ],
    ids=[
        "config-into-etc",
        "data-into-root",
        "overrides-into-etc",
        "absolute",
        "dot-dot",
        "dot",
        "backslashes",
        "newline",
        "unknown-config-file",
        "mariadb-files",
        "pending-dump",
        "instances",
    ],
)
def test_a_member_with_a_name_no_backup_holds_is_refused(
    tmp_path: Path, name: str, expected: str
) -> None:
    archive = a_backup_with(tmp_path, [file_member(name)])
    assert_refused(tmp_path, archive, expected)


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        (
            special_member("config/overrides/nova/nova.conf", tarfile.SYMTYPE, "/etc/cron.d"),
            "is a symbolic link",
        ),
        (
            special_member("data/glance/images/abc", tarfile.LNKTYPE, "config/secrets.yaml"),
            "is a hard link",
        ),
        (special_member("data/glance/images/null", tarfile.CHRTYPE), "is a character device"),
        (special_member("data/glance/images/sda", tarfile.BLKTYPE), "is a block device"),
        (special_member("data/glance/images/pipe", tarfile.FIFOTYPE), "is a FIFO"),
        (special_member("data/glance/images", tarfile.DIRTYPE), "is a directory"),
    ],
    ids=["symlink", "hardlink", "char-device", "block-device", "fifo", "directory"],
)
def test_a_member_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, member: Any, expected: str
) -> None:
    archive = a_backup_with(tmp_path, [member])
    assert_refused(tmp_path, archive, expected)


def test_a_member_twice_is_refused(tmp_path: Path) -> None:
    image = "data/glance/images/abc"
    archive = a_backup_with(tmp_path, [file_member(image, b"one"), file_member(image, b"two")])
    assert_refused(tmp_path, archive, f"it holds {image} twice")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda head: {k: v for k, v in head.items() if k != "created"}, "created"),
        (lambda head: {k: v for k, v in head.items() if k != "release"}, "release"),
        (lambda head: {k: v for k, v in head.items() if k != "files"}, "files"),
        (lambda head: head | {"files": {"databases.sql": {"size": 1}}}, "SHA-256"),
        (lambda head: head | {"files": "all of them"}, "files"),
        (lambda head: head | {"servers": [{"id": "../../../etc", "name": "x"}]}, "servers"),
        (lambda head: head | {"format": 2}, "format"),
        (lambda head: [head], "format"),
    ],
    ids=[
        "no-created",
        "no-release",
        "no-files",
        "no-checksum",
        "files-not-listed",
        "server-id-a-path",
        "other-format",
        "not-a-mapping",
    ],
)
def test_a_manifest_dietstack_does_not_write_is_refused(
    tmp_path: Path, change: Any, expected: str
) -> None:
    archive = a_backup_with(tmp_path, [], change_manifest=change)
    with pytest.raises(DietStackError) as raised:
        unpack.check(archive)
    assert "damaged or not a DietStack backup" in raised.value.message
    assert expected in raised.value.message
    with pytest.raises(DietStackError):
        unpack.extract(archive, tmp_path / "etc", tmp_path / "data")
    assert not (tmp_path / "etc").exists() and not any((tmp_path / "data").iterdir())


def test_a_manifest_that_lists_no_settings_is_refused(tmp_path: Path) -> None:
    def without_settings(head: dict[str, Any]) -> dict[str, Any]:
        head["files"].pop(archives.SETTINGS_MEMBER)
        return head

    archive = a_backup_with(tmp_path, [], change_manifest=without_settings)
    with pytest.raises(DietStackError, match=f"it lists no {archives.SETTINGS_MEMBER}"):
        unpack.check(archive)


@pytest.mark.parametrize("data_dir", ["/", "/proc/self", "//etc", "/var", "relative/data"])
def test_archived_settings_that_put_data_dir_where_it_must_not_be_are_refused(
    tmp_path: Path, data_dir: str
) -> None:
    archive = a_backup_with(tmp_path, [], settings={"data_dir": data_dir, "api_workers": 2})
    unpack.check(archive)  # every file is as its manifest says: that proves nothing
    fresh = tmp_path / "fresh" / "settings.yaml"
    with pytest.raises(DietStackError) as raised:
        unpack.restored_settings(archive, fresh)
    assert f"data_dir: {data_dir!r}" in raised.value.message
    assert "nothing was changed" in raised.value.message and "set data_dir" in raised.value.hint
    assert not fresh.parent.exists()


def test_a_hosts_own_data_dir_is_used_instead_of_the_archives(tmp_path: Path) -> None:
    archive = a_backup_with(tmp_path, [], settings={"data_dir": "/"})
    here = tmp_path / "etc" / "settings.yaml"
    here.parent.mkdir()
    here.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    assert unpack.restored_settings(archive, here)["data_dir"] == str(tmp_path / "data")


def test_archived_settings_with_unknown_or_invalid_values_are_refused(tmp_path: Path) -> None:
    values = {"data_dir": str(tmp_path / "data"), "api_workers": "all", "hook": "rm -rf /"}
    archive = a_backup_with(tmp_path, [], settings=values)
    with pytest.raises(DietStackError) as raised:
        unpack.restored_settings(archive, tmp_path / "etc" / "settings.yaml")
    assert "api_workers: 'all'" in raised.value.message
    assert "hook: unknown setting" in raised.value.message


def test_archived_settings_that_are_a_link_are_refused(tmp_path: Path) -> None:
    archive = a_backup_with(tmp_path, [])
    with tarfile.open(archive, "r:gz") as tar:
        items = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(*special_member(archives.SETTINGS_MEMBER, tarfile.SYMTYPE, "/etc/shadow"))
        for member, data in items[1:]:
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(DietStackError, match="is a symbolic link"):
        unpack.restored_settings(archive, tmp_path / "etc" / "settings.yaml")


def test_restore_does_not_follow_a_link_already_in_data_dir(tmp_path: Path) -> None:
    archive = a_backup_with(tmp_path, [file_member("data/glance/images/abc", b"image")])
    data, elsewhere = tmp_path / "data", tmp_path / OUTSIDE
    data.mkdir()
    elsewhere.mkdir()
    (data / "glance").symlink_to(elsewhere)
    with pytest.raises(DietStackError) as raised:
        unpack.extract(archive, tmp_path / "etc", data)
    assert "leads outside" in raised.value.message
    assert "nothing was restored" in raised.value.message
    assert not any(elsewhere.iterdir()) and not (tmp_path / "etc").exists()
    assert sorted(path.name for path in data.iterdir()) == ["glance"]


def test_restored_files_get_no_more_than_read_access_for_others(tmp_path: Path) -> None:
    extra = [
        file_member("data/glance/images/abc", b"image", 0o4777),
        file_member("data/keystone/credential-keys/0", b"key", 0o600),
        file_member("config/overrides/nova/nova.conf", b"[DEFAULT]\n", 0o777),
    ]
    archive = a_backup_with(tmp_path, extra)
    etc, data = tmp_path / "etc", tmp_path / "data"
    unpack.extract(archive, etc, data)

    def mode(path: Path) -> int:
        return path.stat().st_mode & 0o7777

    assert mode(data / "glance" / "images" / "abc") == 0o644
    assert mode(data / "keystone" / "credential-keys" / "0") == 0o600
    assert mode(etc / "overrides" / "nova" / "nova.conf") == 0o600
    assert mode(data / "state" / afterup.PENDING_DUMP) == 0o600
    assert not [path for path in data.iterdir() if path.name.startswith(".restore-")]


def test_restore_checks_the_archive_again_as_it_reads_it(tmp_path: Path) -> None:
    # Changed after `check` passed: restore trusts only what it reads itself.
    archive = a_backup_with(tmp_path, [])
    unpack.check(archive)
    rewrite(archive, lambda name, data: data + b"x" if name == "databases.sql" else data)
    etc, data = tmp_path / "etc", tmp_path / "data"
    with pytest.raises(DietStackError, match="does not match its checksum"):
        unpack.extract(archive, etc, data)
    assert not etc.exists() and not any(data.iterdir())
