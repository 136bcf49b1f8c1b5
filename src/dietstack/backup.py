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
changes anything, and trusts none of it: whoever made an archive wrote its manifest
too, so only regular files with the names a backup holds are taken, each into its
own directory, and the archive's settings are checked as the settings file's are.
It refuses to write over another cloud, puts the files back, and
deploys: the databases are loaded as soon as MariaDB is up, before any other
service starts. Servers booted from volumes are then started again; servers whose
disk was local to a node have lost it and stay shut off.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack.exceptions
import yaml

from dietstack import RELEASE, __version__, cloudmark, inventory, power, settings
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


def _temporary(path: Path) -> Path:
    """Where `path` is written before it replaces what is there, all at once."""
    return path.with_name(f".{path.name}.tmp")


def _open_private(path: Path) -> Any:
    """A new file only root can read, created so from the start, at `_temporary(path)`."""
    tmp = _temporary(path)
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
        _temporary(archive).replace(archive)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return dict(json.loads(head))


# --- checking an archive ---------------------------------------------------------
#
# An archive is trusted for nothing: whoever made it also wrote its manifest, so
# matching checksums only prove it is intact. Restore takes only the members a
# backup holds, as regular files with plain names, and puts each under its own
# directory, never elsewhere.

#: The names a backup holds (see `members`): these files, and any file in these
#: trees.
EXPECTED_FILES = frozenset(
    {
        MANIFEST,
        SETTINGS_MEMBER,
        DATABASES_MEMBER,
        f"data/{NB_DB}",
        *(f"config/{name}" for name in CONFIG_FILES),
        *(f"data/{name}" for name in DATA_FILES),
    }
)
EXPECTED_TREES = (
    *(f"config/{name}/" for name in CONFIG_DIRS),
    *(f"data/{name}/" for name in (*KEY_DIRS, IMAGES_DIR, VOLUMES_DIR)),
)
#: Every backup holds these, and restore cannot do without them.
REQUIRED_FILES = (SETTINGS_MEMBER, DATABASES_MEMBER, f"data/{NB_DB}")
#: Far beyond any real manifest or settings file.
MANIFEST_LIMIT = 64 << 20
SETTINGS_LIMIT = 1 << 20
#: What reading a truncated, corrupted or foreign file raises.
READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A server's id names its directory under nova/instances.
_SERVER_ID = re.compile(r"[0-9A-Za-z-]{1,64}")

#: A member's size and SHA-256, as read from the archive.
Digest = tuple[int, str]


def _damaged(archive: Path, why: str) -> DietStackError:
    return DietStackError(
        f"{archive} is damaged or not a DietStack backup ({why}); nothing was changed",
        hint="use another copy of the backup",
    )


def _refused(archive: Path, why: str) -> DietStackError:
    return DietStackError(
        f"{archive} holds what no DietStack backup does ({why}); nothing was changed",
        hint="restore only an archive written by `dietstack backup`, from a copy you trust",
    )


def _plain(name: str) -> bool:
    """A relative name without empty, '.' or '..' parts, backslashes or control
    characters: it means the same path to tar, to Python and to the kernel."""
    if any(char == "\\" or ord(char) < 0x20 or char == "\x7f" for char in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _kind(member: tarfile.TarInfo) -> str:
    kinds = (
        (member.issym, "symbolic link"),
        (member.islnk, "hard link"),
        (member.isdir, "directory"),
        (member.ischr, "character device"),
        (member.isblk, "block device"),
        (member.isfifo, "FIFO"),
    )
    return next((name for is_kind, name in kinds if is_kind()), "special file")


def _refusal(member: tarfile.TarInfo) -> str:
    """Why restore does not take this member ('' when it does)."""
    if not _plain(member.name):
        return f"the name {member.name!r} is not a plain relative path and could lead anywhere"
    if not member.isfile():
        return f"{member.name} is a {_kind(member)}; a backup holds regular files only"
    if member.name not in EXPECTED_FILES and not member.name.startswith(EXPECTED_TREES):
        return f"{member.name} is not a file a backup holds"
    return ""


def _listed(entry: Any) -> bool:
    """A manifest's entry for one file: its size and SHA-256."""
    if not isinstance(entry, dict):
        return False
    size, sha256 = entry.get("size"), entry.get("sha256")
    sized = isinstance(size, int) and not isinstance(size, bool) and size >= 0
    return sized and isinstance(sha256, str) and _SHA256.fullmatch(sha256) is not None


def _server_record(record: Any) -> bool:
    """A server as `cloudapi.server_records` notes it."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("id"), str)
        and _SERVER_ID.fullmatch(record["id"]) is not None
        and isinstance(record.get("name"), str)
        and isinstance(record.get("status"), str)
        and isinstance(record.get("volume_backed"), bool)
    )


def _manifest_problem(data: Any) -> str:
    """What sets `data` apart from a manifest DietStack writes ('' when nothing)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return f"it is not of format {FORMAT}"
    for key in ("dietstack", "release", "created", "cloud"):
        if not isinstance(data.get(key), str):
            return f"its {key} is missing or not text"
    files = data.get("files")
    if not isinstance(files, dict) or not all(_listed(entry) for entry in files.values()):
        return "its files are missing or listed without their size and SHA-256"
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        return f"it lists no {missing[0]}"
    servers = data.get("servers", [])
    if not isinstance(servers, list) or not all(_server_record(item) for item in servers):
        return "its servers are not the records a backup notes"
    return ""


def _parse_manifest(archive: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise _damaged(archive, f"its {MANIFEST} is not JSON") from None
    problem = _manifest_problem(data)
    if problem:
        raise _damaged(archive, f"its manifest is not one DietStack writes: {problem}")
    return dict(data)


def _read_limited(archive: Path, handle: Any, name: str, limit: int) -> bytes:
    data: bytes = handle.read(limit + 1)
    if len(data) > limit:
        raise _damaged(archive, f"its {name} is larger than DietStack ever writes one")
    return data


def read_manifest(archive: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # The last member; the first in archives of the earlier layout.
            member = tar.next()
            while member is not None and member.name != MANIFEST:
                member = tar.next()
            if member is None or not member.isfile():
                raise _damaged(archive, f"it holds no {MANIFEST}")
            raw = _read_limited(archive, tar.extractfile(member), MANIFEST, MANIFEST_LIMIT)
    except FileNotFoundError:
        raise DietStackError(f"there is no file {archive}") from None
    except READ_ERRORS as exc:
        raise _damaged(archive, str(exc) or type(exc).__name__) from None
    return _parse_manifest(archive, raw)


def _same_release(archive: Path, head: dict[str, Any]) -> None:
    if head["release"] != RELEASE:
        raise DietStackError(
            f"{archive} is a backup of an OpenStack {head['release']} cloud (DietStack "
            f"{head['dietstack']}); this DietStack deploys {RELEASE}; nothing was changed",
            hint="restore it with the DietStack version that made it",
        )


def _digest(member: tarfile.TarInfo, handle: Any) -> Digest:
    reader = _Checksummed(handle)
    size = sum(len(block) for block in iter(lambda: reader.read(1 << 20), b""))
    return size, reader.digest.hexdigest()


def _read_members(
    archive: Path, keep: Callable[[tarfile.TarInfo, Any], Digest]
) -> tuple[bytes, dict[str, Digest]]:
    """One pass over the archive: the manifest's bytes, and for every other member
    what `keep` read of it. Each member is checked before it is read at all."""
    manifest_bytes: bytes | None = None
    read: dict[str, Digest] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                again = member.name in read or (
                    member.name == MANIFEST and manifest_bytes is not None
                )
                why = _refusal(member) or (f"it holds {member.name} twice" if again else "")
                if why:
                    raise _refused(archive, why)
                handle = tar.extractfile(member)  # a regular file: never None
                if member.name == MANIFEST:
                    manifest_bytes = _read_limited(archive, handle, MANIFEST, MANIFEST_LIMIT)
                else:
                    read[member.name] = keep(member, handle)
    except FileNotFoundError:
        raise DietStackError(f"there is no file {archive}") from None
    except READ_ERRORS as exc:
        raise _damaged(archive, str(exc) or type(exc).__name__) from None
    if manifest_bytes is None:
        raise _damaged(archive, f"it holds no {MANIFEST}")
    return manifest_bytes, read


def _matches(archive: Path, head: dict[str, Any], read: dict[str, Digest]) -> None:
    """Every file the manifest lists was read, nothing else, each as listed."""
    listed: dict[str, dict[str, Any]] = head["files"]
    unlisted = sorted(set(read) - set(listed))
    if unlisted:
        raise _damaged(archive, f"unexpected member {unlisted[0]}")
    missing = sorted(set(listed) - set(read))
    if missing:
        raise _damaged(archive, f"{len(missing)} file(s) missing, e.g. {missing[0]}")
    for name, (size, sha256) in sorted(read.items()):
        if (size, sha256) != (listed[name]["size"], listed[name]["sha256"]):
            raise _damaged(archive, f"{name} does not match its checksum")


def check(archive: Path) -> dict[str, Any]:
    """The manifest, once the release matches and every member is a file a backup
    holds and matches the manifest. Reads the archive, writes nothing."""
    head = read_manifest(archive)
    _same_release(archive, head)
    _, read = _read_members(archive, _digest)
    _matches(archive, head, read)
    return head


# --- restoring -------------------------------------------------------------------


def _restored_mode(member: tarfile.TarInfo) -> int:
    """The config files and the dump hold passwords: 0600. The data keep their read
    bits for group and others from the archive, and never get more (no write for
    others, no execute, no setuid)."""
    if member.name.startswith("data/"):
        return 0o600 | (member.mode & 0o044)
    return 0o600


def _unwritable(path: Path, exc: OSError) -> DietStackError:
    return DietStackError(
        f"writing {path} failed: {exc.strerror}; nothing was restored",
        hint="make room (or fix what the message says), then restore again",
    )


class _Staging:
    """A private directory that restore reads the whole archive into, before any of
    it is put in place."""

    def __init__(self, parent: Path) -> None:
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix=".restore-", dir=parent))
        except OSError as exc:
            raise _unwritable(parent, exc) from None

    def keep(self, member: tarfile.TarInfo, handle: Any) -> Digest:
        """Write a checked member (a plain name: it stays inside root); returns the
        size and SHA-256 of what was written."""
        path = self.root / member.name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise _unwritable(path, exc) from None
        reader, size = _Checksummed(handle), 0
        try:
            for block in iter(lambda: reader.read(1 << 20), b""):
                size += len(block)
                _write_all(fd, block, path)
            os.fchmod(fd, _restored_mode(member))
        finally:
            os.close(fd)
        return size, reader.digest.hexdigest()


def _write_all(fd: int, block: bytes, path: Path) -> None:
    view = memoryview(block)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError as exc:
            raise _unwritable(path, exc) from None


def _destination(name: str, config_dir: Path, data_dir: Path) -> tuple[Path, Path]:
    """The directory a member belongs in, and the file it becomes there."""
    if name == DATABASES_MEMBER:
        return data_dir, data_dir / "state" / PENDING_DUMP
    top, _, rest = name.partition("/")
    root = config_dir if top == "config" else data_dir
    return root, root / rest


def _destinations(names: list[str], config_dir: Path, data_dir: Path) -> dict[str, Path]:
    """Where each member goes, once none would land outside its directory (through
    a link already on this host) or on a directory."""
    places = {}
    for name in names:
        if name == SETTINGS_MEMBER:
            continue  # merged with this host's (restored_settings)
        root, target = _destination(name, config_dir, data_dir)
        if not target.resolve().is_relative_to(root.resolve()):
            why = f"leads outside {root}, through a link on this host"
        elif target.is_dir():
            why = "is a directory"
        else:
            places[name] = target
            continue
        raise DietStackError(
            f"{target} {why}, and {name} from the backup belongs there; nothing was restored",
            hint=f"move {target} away, then restore again",
        )
    return places


def _put(staged: Path, target: Path) -> None:
    """Move a staged file into place; copied where the target is on another file
    system (the config directory often is)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staged.replace(target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with staged.open("rb") as source, _open_private(target) as out:
            shutil.copyfileobj(source, out)
        _temporary(target).chmod(staged.stat().st_mode & 0o777)
        _temporary(target).replace(target)


def extract(archive: Path, config_dir: Path, data_dir: Path) -> None:
    """Put every member where it belongs: config/ beside the settings file, data/
    into data_dir, the dump where deploy loads it from.

    The archive is read once, into a staging directory in data_dir, and checked
    whole there (names, kinds, manifest, checksums, destinations) before anything
    outside it is written: what `check` read earlier is not what is read now."""
    staging = _Staging(data_dir)
    try:
        manifest_bytes, read = _read_members(archive, staging.keep)
        head = _parse_manifest(archive, manifest_bytes)
        _same_release(archive, head)
        _matches(archive, head, read)
        places = _destinations(sorted(read), config_dir, data_dir)
        for done, (name, target) in enumerate(places.items()):
            try:
                _put(staging.root / name, target)
            except OSError as exc:
                raise DietStackError(
                    f"putting {target} in place failed: {exc.strerror}; {done} of "
                    f"{len(places)} files are back",
                    hint="fix what the message says, then `dietstack destroy --data` and "
                    "restore again",
                ) from None
    finally:
        shutil.rmtree(staging.root, ignore_errors=True)


#: Settings that describe a host rather than the cloud: on restore they come from
#: this host's settings file, or are detected anew where there is none (a new host
#: has other NICs and addresses).
HOST_KEYS = ("management_interface", "management_ip", "external_interface", "tunnel_interface")


def archived_settings(archive: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.getmember(SETTINGS_MEMBER)
            if not member.isfile():
                raise _refused(archive, f"{SETTINGS_MEMBER} is a {_kind(member)}")
            handle = tar.extractfile(member)
            text = _read_limited(archive, handle, SETTINGS_MEMBER, SETTINGS_LIMIT)
    except KeyError:
        raise _damaged(archive, f"it holds no {SETTINGS_MEMBER}") from None
    except READ_ERRORS as exc:
        raise _damaged(archive, str(exc) or type(exc).__name__) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise _damaged(archive, f"its {SETTINGS_MEMBER} is not valid YAML") from None
    if not isinstance(data, dict):
        raise _damaged(archive, "its settings file is not a mapping")
    return data


def _settings_problems(values: dict[Any, Any]) -> list[str]:
    """The archive's settings, checked value by value as the settings file's are
    (this host's interfaces are checked later, with the merged settings)."""
    options = {option.key: option for option in settings.OPTIONS}
    problems = []
    for key, value in values.items():
        if key not in options:
            problems.append(f"{key}: unknown setting")
            continue
        try:
            options[key].parse(value)
        except ValueError as exc:
            problems.append(f"{key}: {value!r} {exc}")
    return problems


def restored_settings(archive: Path, settings_file: Path) -> dict[str, Any]:
    """The archive's settings, with this host's own (and its data_dir, if it names
    one). Whatever is taken from the archive, data_dir above all, must be valid:
    an archive's settings are no more trusted than its files."""
    archived = {k: v for k, v in archived_settings(archive).items() if k not in HOST_KEYS}
    here = settings.read_raw(settings_file)
    own = {key: here[key] for key in (*HOST_KEYS, "data_dir") if key in here}
    problems = _settings_problems({k: v for k, v in archived.items() if k not in own})
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise DietStackError(
            f"{archive} holds settings DietStack refuses; nothing was changed:\n{listing}",
            hint="restore a copy of the backup you trust; to keep the data elsewhere, "
            f"set data_dir in {settings_file} first",
        )
    return {**archived, **own}


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
