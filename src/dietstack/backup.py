"""`dietstack backup` and `dietstack restore`: the whole cloud in one archive.

The archive (a gzip'd tar, 0600: it holds every password) ends with a manifest:
DietStack's version and OpenStack release, when it was taken, and the size and
SHA-256 of every other member, each taken from the very bytes written (a volume
in use changes while it is copied). Archives that start with their manifest (the
earlier layout) are read too. It holds:

- config/: the settings file, secrets.yaml, the overrides and the node inventory;
- databases.sql: every service's database, dumped in one consistent transaction
  while the cloud runs (mariadb-dump --single-transaction);
- data/keystone/: the fernet and credential keys (tokens and stored credentials
  stay valid);
- data/ovn/ovnnb_db.db: OVN's northbound database (networks, routers, ACLs, NAT),
  a consistent copy made by its own server (ovsdb-client backup);
- data/glance/: the images;
- with --volumes, data/cinder-volumes/: the volumes and their snapshots (copied
  while in use, so as consistent as after a power cut).

restore checks the whole archive (manifest, release, every checksum) before it
changes anything, refuses to write over another cloud, puts the files back, and
deploys: the databases are loaded as soon as MariaDB is up, before any other
service starts. Servers booted from volumes are then started again; servers whose
disk was local to a node have lost it and stay shut off.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack.exceptions
import yaml

from dietstack import RELEASE, __version__, cloudmark, inventory, power
from dietstack.errors import DietStackError
from dietstack.runtime import DockerRuntime
from dietstack.services import mariadb, nfs

FORMAT = 1
MANIFEST = "manifest.json"
DATABASES_MEMBER = "databases.sql"
SETTINGS_MEMBER = "config/settings.yaml"
#: Where restore leaves the dump for deploy to load once MariaDB runs.
PENDING_DUMP = "restore-databases.sql"
#: Files in data_dir that are the cloud's state, by archive name -> data_dir path.
KEY_DIRS = ("keystone/fernet-keys", "keystone/credential-keys")
IMAGES_DIR = "glance"
NB_DB = "ovn/ovnnb_db.db"
#: nova-compute refuses to start where it ran before without this file: the
#: identity of this host's compute node (the control node's; other nodes keep theirs).
DATA_FILES = ("nova/state/compute_id",)
VOLUMES_DIR = nfs.EXPORT_DIR
#: What the config directory holds besides the settings file: the secrets, the node
#: inventory and the nodes' SSH host keys (SSH keys to the nodes stay where they are).
CONFIG_FILES = ("secrets.yaml", inventory.FILE_NAME, "known_hosts")
CONFIG_DIRS = ("overrides",)


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
    found: dict[str, Path] = {SETTINGS_MEMBER: source.settings_file}
    for name in CONFIG_FILES:
        if (source.config_dir / name).is_file():
            found[f"config/{name}"] = source.config_dir / name
    for directory in CONFIG_DIRS:
        for path in _files_under(source.config_dir / directory):
            found[f"config/{path.relative_to(source.config_dir)}"] = path
    found[DATABASES_MEMBER] = staged / DATABASES_MEMBER
    found[f"data/{NB_DB}"] = staged / "ovnnb_db.db"
    for name in DATA_FILES:
        if (source.data_dir / name).is_file():
            found[f"data/{name}"] = source.data_dir / name
    trees = [*KEY_DIRS, IMAGES_DIR, *([VOLUMES_DIR] if volumes else [])]
    for tree in trees:
        for path in _files_under(source.data_dir / tree):
            found[f"data/{path.relative_to(source.data_dir)}"] = path
    return found


def _dump_databases(runtime: DockerRuntime, out: Path, data_dir: Path) -> None:
    """One transaction over every service database; written inside MariaDB's data
    directory (a bind mount), then moved out."""
    inside = "/var/lib/mysql/.dietstack-backup.sql"
    databases = " ".join(mariadb.DATABASES)
    command = (
        f"mariadb-dump --protocol=socket --single-transaction --routines --triggers "
        f"--events --databases {databases} > {inside}.tmp && mv {inside}.tmp {inside}"
    )
    code, output = runtime.exec("mariadb", ["sh", "-c", command])
    if code != 0:
        raise DietStackError(f"dumping the databases failed: {output.strip()[-2000:]}")
    shutil.move(str(data_dir / "mariadb" / ".dietstack-backup.sql"), out)


def _copy_nb_database(runtime: DockerRuntime, out: Path, data_dir: Path) -> None:
    inside = "/var/lib/ovn/.dietstack-backup-nb.db"
    command = f"ovsdb-client backup unix:/run/ovn/ovnnb_db.sock OVN_Northbound > {inside}"
    code, output = runtime.exec("ovn-nb-db", ["sh", "-c", command])
    if code != 0:
        raise DietStackError(f"copying OVN's northbound database failed: {output.strip()}")
    shutil.move(str(data_dir / "ovn" / ".dietstack-backup-nb.db"), out)


def _sha256_stream(handle: Any) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


class _Checksummed:
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
        reader = _Checksummed(handle)
        tar.addfile(info, reader)
    return {"size": info.size, "sha256": reader.digest.hexdigest()}


def manifest(
    files: dict[str, dict[str, Any]], values: dict[str, str], extra: dict[str, Any]
) -> bytes:
    data = {
        "format": FORMAT,
        "dietstack": __version__,
        "release": RELEASE,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cloud": cloudmark.fingerprint(values),
        "holds_secrets": "this archive holds every password of the cloud: keep it private",
        **extra,
        "files": files,
    }
    return json.dumps(data, indent=2).encode() + b"\n"


def _open_private(path: Path) -> Any:
    """A new file only root can read, created so from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    return os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def take(
    runtime: DockerRuntime,
    source: Source,
    values: dict[str, str],
    archive: Path,
    volumes: bool,
    extra: dict[str, Any],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Write the archive; returns its manifest."""
    staged = source.data_dir / "state" / ".backup"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(mode=0o700, parents=True)
    try:
        say("Dumping the databases (one transaction, the cloud keeps running)")
        _dump_databases(runtime, staged / DATABASES_MEMBER, source.data_dir)
        say("Copying OVN's northbound database")
        _copy_nb_database(runtime, staged / "ovnnb_db.db", source.data_dir)
        found = members(source, volumes, staged)
        say(f"Writing {archive}: {len(found)} files, each checksummed as it is written")
        with (
            _open_private(archive) as raw,
            tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar,
        ):
            files = {name: add_checksummed(tar, name, path) for name, path in sorted(found.items())}
            head = manifest(files, values, extra)
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(head), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(head))
        archive.with_name(f".{archive.name}.tmp").replace(archive)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return dict(json.loads(head))


# --- checking an archive ---------------------------------------------------------


def _damaged(archive: Path, why: str) -> DietStackError:
    return DietStackError(
        f"{archive} is damaged or not a DietStack backup ({why}); nothing was changed",
        hint="use another copy of the backup",
    )


def read_manifest(archive: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # The last member; the first in archives of the earlier layout.
            member = tar.next()
            while member is not None and member.name != MANIFEST:
                member = tar.next()
            if member is None:
                raise _damaged(archive, f"it holds no {MANIFEST}")
            handle = tar.extractfile(member)
            data = json.loads(handle.read() if handle else b"")
    except FileNotFoundError:
        raise DietStackError(f"there is no file {archive}") from None
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise _damaged(archive, str(exc) or type(exc).__name__) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "files" not in data:
        raise _damaged(archive, "its manifest is not one DietStack writes")
    return data


def check(archive: Path) -> dict[str, Any]:
    """The manifest, once the release matches and every member's checksum does."""
    head = read_manifest(archive)
    if head.get("release") != RELEASE:
        raise DietStackError(
            f"{archive} is a backup of an OpenStack {head.get('release')} cloud (DietStack "
            f"{head.get('dietstack')}); this DietStack deploys {RELEASE}; nothing was changed",
            hint="restore it with the DietStack version that made it",
        )
    expected: dict[str, dict[str, Any]] = head["files"]
    seen = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name == MANIFEST:
                    continue
                if member.name not in expected or not member.isfile() or not _safe(member.name):
                    raise _damaged(archive, f"unexpected member {member.name}")
                handle = tar.extractfile(member)
                if handle is None or _sha256_stream(handle) != expected[member.name]["sha256"]:
                    raise _damaged(archive, f"{member.name} does not match its checksum")
                seen.add(member.name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _damaged(archive, str(exc) or type(exc).__name__) from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise _damaged(archive, f"{len(missing)} file(s) missing, e.g. {missing[0]}")
    return head


def _safe(name: str) -> bool:
    """Only names restore knows where to put: nothing outside its targets."""
    parts = Path(name).parts
    if name == DATABASES_MEMBER:
        return True
    return not name.startswith("/") and ".." not in parts and parts[0] in ("config", "data")


# --- restoring -------------------------------------------------------------------


def extract(archive: Path, config_dir: Path, data_dir: Path) -> None:
    """Put every member where it belongs: config/ beside the settings file, data/
    into data_dir, the dump where deploy loads it from."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name in (MANIFEST, SETTINGS_MEMBER):
                continue  # the settings are merged with this host's (restored_settings)
            if member.name == DATABASES_MEMBER:
                target = data_dir / "state" / PENDING_DUMP
            elif member.name.startswith("config/"):
                target = config_dir / member.name.removeprefix("config/")
            else:
                target = data_dir / member.name.removeprefix("data/")
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = tar.extractfile(member)
            assert handle is not None
            with _open_private(target) as out:
                shutil.copyfileobj(handle, out)
            target.with_name(f".{target.name}.tmp").replace(target)
            if member.name.startswith("data/"):
                os.chmod(target, member.mode & 0o777)


#: Settings that describe a host rather than the cloud: on restore they come from
#: this host's settings file, or are detected anew where there is none (a new host
#: has other NICs and addresses).
HOST_KEYS = ("management_interface", "management_ip", "external_interface", "tunnel_interface")


def archived_settings(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive, "r:gz") as tar:
        handle = tar.extractfile(SETTINGS_MEMBER)
        data = yaml.safe_load(handle.read() if handle else b"") or {}
    if not isinstance(data, dict):
        raise _damaged(archive, "its settings file is not a mapping")
    return data


def restored_settings(archive: Path, settings_file: Path) -> dict[str, Any]:
    """The archive's settings, with this host's own."""
    merged = {k: v for k, v in archived_settings(archive).items() if k not in HOST_KEYS}
    if settings_file.exists():
        here = yaml.safe_load(settings_file.read_text()) or {}
        merged.update({key: here[key] for key in (*HOST_KEYS, "data_dir") if key in here})
    return merged


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


def load_pending_dump(runtime: DockerRuntime, data_dir: Path) -> bool:
    """Load the databases restore left behind, once MariaDB runs; True if it did."""
    pending = data_dir / "state" / PENDING_DUMP
    if not pending.exists():
        return False
    inside = data_dir / "mariadb" / ".dietstack-restore.sql"
    shutil.move(str(pending), inside)
    command = "mariadb --protocol=socket < /var/lib/mysql/.dietstack-restore.sql"
    code, output = runtime.exec("mariadb", ["sh", "-c", command])
    if code != 0:
        shutil.move(str(inside), pending)  # a later deploy tries again
        raise DietStackError(f"loading the restored databases failed: {output.strip()[-2000:]}")
    inside.unlink()
    return True


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
