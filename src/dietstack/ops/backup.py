"""`dietstack backup` and `dietstack restore`: the whole cloud in one archive.

backup dumps every service's database in one transaction and has OVN's own
server copy its northbound database, both while the cloud runs, then writes them
into the archive with the settings, the secrets, the keys, the images and, with
--volumes, the volumes (`archives` says what an archive holds). Each file is
checksummed as it is written, and the archive is 0600 from the start: it holds
every password.

restore reads the archive without trusting it (`unpack`), refuses to write over
another cloud, puts the files back and deploys: the databases are loaded as soon
as MariaDB is up, before any other service starts. Servers booted from volumes
are then started again; servers whose disk was local to a node have lost it and
stay shut off.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack.exceptions

from dietstack import __version__
from dietstack.engine import cloudmark
from dietstack.errors import DietStackError
from dietstack.hosts import files
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import archives, power
from dietstack.services import mariadb

#: Where restore leaves the dump for deploy to load once MariaDB runs.


@dataclass(frozen=True)
class Source:
    """Where the cloud's inputs and data are on this host."""

    settings_file: Path
    data_dir: Path

    @property
    def config_dir(self) -> Path:
        return self.settings_file.parent


# --- taking a backup -------------------------------------------------------------


def _files_under(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def members(source: Source, volumes: bool, staged: Path) -> dict[str, Path]:
    """Archive name -> file on this host, for everything a backup holds."""
    found: dict[str, Path] = {archives.SETTINGS_MEMBER: source.settings_file}
    for name in archives.CONFIG_FILES:
        if (source.config_dir / name).is_file():
            found[f"config/{name}"] = source.config_dir / name
    for directory in archives.CONFIG_DIRS:
        for path in _files_under(source.config_dir / directory):
            found[f"config/{path.relative_to(source.config_dir)}"] = path
    found[archives.DATABASES_MEMBER] = staged / archives.DATABASES_MEMBER
    found[f"data/{archives.NB_DB}"] = staged / "ovnnb_db.db"
    for name in archives.DATA_FILES:
        if (source.data_dir / name).is_file():
            found[f"data/{name}"] = source.data_dir / name
    trees = [*archives.KEY_DIRS, archives.IMAGES_DIR, *([archives.VOLUMES_DIR] if volumes else [])]
    for tree in trees:
        for path in _files_under(source.data_dir / tree):
            found[f"data/{path.relative_to(source.data_dir)}"] = path
    return found


def _private_output(command: str, inside: str) -> str:
    """`command`, run by a shell in a container, writing to `inside`: the file is
    created 0600 from the start (it sits in a bind mount under data_dir, readable
    from the host) and nothing of it stays when the command fails."""
    return (
        f"umask 077 && rm -f {inside}.tmp {inside} && {command} > {inside}.tmp "
        f"&& mv {inside}.tmp {inside} || {{ rm -f {inside}.tmp; exit 1; }}"
    )


def _remove_leftovers(written: Path) -> None:
    """What a failed dump may leave on the host, the shell's own clean-up aside (the
    container may have stopped before it ran)."""
    for path in (written, written.with_name(f"{written.name}.tmp")):
        path.unlink(missing_ok=True)


def _dump_databases(runtime: DockerRuntime, out: Path, data_dir: Path) -> None:
    """One transaction over every service database; written inside MariaDB's data
    directory (a bind mount), then moved out."""
    databases = " ".join(mariadb.DATABASES)
    dump = (
        "mariadb-dump --protocol=socket --single-transaction --routines --triggers "
        f"--events --databases {databases}"
    )
    command = _private_output(dump, "/var/lib/mysql/.dietstack-backup.sql")
    written = data_dir / "mariadb" / ".dietstack-backup.sql"
    code, output = runtime.exec("mariadb", ["sh", "-c", command])
    if code != 0:
        _remove_leftovers(written)
        raise DietStackError(f"dumping the databases failed: {output.strip()[-2000:]}")
    shutil.move(str(written), out)


def _copy_nb_database(runtime: DockerRuntime, out: Path, data_dir: Path) -> None:
    copy = "ovsdb-client backup unix:/run/ovn/ovnnb_db.sock OVN_Northbound"
    command = _private_output(copy, "/var/lib/ovn/.dietstack-backup-nb.db")
    written = data_dir / "ovn" / ".dietstack-backup-nb.db"
    code, output = runtime.exec("ovn-nb-db", ["sh", "-c", command])
    if code != 0:
        _remove_leftovers(written)
        raise DietStackError(f"copying OVN's northbound database failed: {output.strip()}")
    shutil.move(str(written), out)


class Checksummed:
    """A file read once, into the archive: its checksum is of exactly what was read."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.handle.read(size)
        self.digest.update(data)
        return data


def add_checksummed(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any]:
    """Add a file as member `name`; returns its size and SHA-256 as written. A file
    that grows meanwhile is cut at the size it had when the member began."""
    info = tar.gettarinfo(str(path), arcname=name)
    with path.open("rb") as handle:
        reader = Checksummed(handle)
        tar.addfile(info, reader)
    return {"size": info.size, "sha256": reader.digest.hexdigest()}


def manifest(
    files: dict[str, dict[str, Any]], values: dict[str, str], release: str, extra: dict[str, Any]
) -> bytes:
    data = {
        "format": archives.FORMAT,
        "dietstack": __version__,
        "release": release,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cloud": cloudmark.fingerprint(values),
        "holds_secrets": "this archive holds every password of the cloud: keep it private",
        **extra,
        "files": files,
    }
    return json.dumps(data, indent=2).encode() + b"\n"


def take(
    runtime: DockerRuntime,
    source: Source,
    values: dict[str, str],
    archive: Path,
    volumes: bool,
    extra: dict[str, Any],
    say: Callable[[str], None],
    release: str,
) -> dict[str, Any]:
    """Write the archive of a cloud of OpenStack `release`; returns its manifest."""
    staged = source.data_dir / "state" / ".backup"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(mode=0o700, parents=True)
    try:
        say("Dumping the databases (one transaction, the cloud keeps running)")
        _dump_databases(runtime, staged / archives.DATABASES_MEMBER, source.data_dir)
        say("Copying OVN's northbound database")
        _copy_nb_database(runtime, staged / "ovnnb_db.db", source.data_dir)
        found = members(source, volumes, staged)
        say(f"Writing {archive}: {len(found)} files, each checksummed as it is written")
        with (
            # Only root may read it (it holds every password), from its first byte.
            files.replacing(archive, mode=0o600) as raw,
            tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar,
        ):
            checked = {
                name: add_checksummed(tar, name, path) for name, path in sorted(found.items())
            }
            head = manifest(checked, values, release, extra)
            info = tarfile.TarInfo(archives.MANIFEST)
            info.size, info.mode, info.mtime = len(head), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(head))
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return dict(json.loads(head))


# --- restoring -------------------------------------------------------------------


def refuse_to_overwrite(
    head: dict[str, Any], source: Source, runtime_containers: int, values_here: dict[str, str]
) -> None:
    """A restore goes into an empty data_dir, on a host without a running cloud, and
    never replaces another cloud's secrets."""
    how = "`dietstack destroy --data` removes the cloud that is there (and all its data)"
    if runtime_containers:
        raise DietStackError(
            f"a DietStack cloud runs on this host ({runtime_containers} containers); "
            "nothing was changed",
            hint=how,
        )
    if cloudmark.recorded(source.data_dir) or (source.data_dir / "mariadb").exists():
        raise DietStackError(
            f"{source.data_dir} (data_dir) already holds a cloud; nothing was changed", hint=how
        )
    if values_here and cloudmark.fingerprint(values_here) != head.get("cloud"):
        raise DietStackError(
            f"{source.config_dir / 'secrets.yaml'} holds the secrets of another cloud than the "
            "backup's; nothing was changed",
            hint="move that file away (keep it if its cloud still matters), then restore again",
        )


def bring_back_servers(
    conn: Any, servers: list[dict[str, Any]], instances_dir: Path, say: Callable[[str], None]
) -> list[str]:
    """Servers that ran at backup time and were booted from a volume run again (a
    hard reboot makes their domain anew); returns notes on those that cannot."""
    notes, rebooted = [], []
    for server in servers:
        if server.get("status") != "ACTIVE":
            continue
        label = f"{server['name']} ({server['id']})"
        if not server.get("volume_backed"):
            notes.append(f"{label} booted from an image: its disk was not in the backup")
            continue
        # Its directory holds nothing of value (the disk is the volume), but the
        # console log is written there.
        (instances_dir / server["id"]).mkdir(parents=True, exist_ok=True)
        try:
            conn.compute.reboot_server(server["id"], "HARD")
        except openstack.exceptions.SDKException as exc:
            notes.append(f"{label} could not be started: {exc}")
            continue
        rebooted.append(server["id"])
    if rebooted:
        say(f"Starting the {len(rebooted)} server(s) booted from volumes that ran at backup time")
        failed = power.wait_for_status(conn, rebooted, "ACTIVE", power.START_TIMEOUT, "start")
        notes.extend(f"{ident} did not start" for ident in failed)
    return notes
