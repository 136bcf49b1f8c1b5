"""How restore reads a backup archive without trusting it (`archives` says what
one may hold, and why).

`check` reads the whole archive and writes nothing: each member is checked before
it is read at all, then the manifest, the release and every checksum. restore
runs it before it changes anything. `extract` reads the archive once more, into a
private staging directory in data_dir, and checks it whole again there before
anything outside is written: the file `check` read may have changed since. Only
then does each file move into its own directory, never through a link already on
this host. `restored_settings` takes the archive's settings, checked as the
settings file's are, with this host's own.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dietstack import releases
from dietstack.engine import afterup, settingsfile
from dietstack.errors import DietStackError
from dietstack.hosts import files
from dietstack.ops import archives, backup
from dietstack.ops.archives import MANIFEST, SETTINGS_MEMBER

#: What reading a truncated, corrupted or foreign file raises.
READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)

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


# --- checking an archive ---------------------------------------------------------


def _parse_manifest(archive: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise _damaged(archive, f"its {MANIFEST} is not JSON") from None
    problem = archives.manifest_problem(data)
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
            raw = _read_limited(archive, tar.extractfile(member), MANIFEST, archives.MANIFEST_LIMIT)
    except FileNotFoundError:
        raise DietStackError(f"there is no file {archive}") from None
    except READ_ERRORS as exc:
        raise _damaged(archive, str(exc) or type(exc).__name__) from None
    return _parse_manifest(archive, raw)


def _same_release(archive: Path, head: dict[str, Any]) -> None:
    if head["release"] not in releases.RELEASES:
        raise DietStackError(
            f"{archive} is a backup of an OpenStack {head['release']!r} cloud (DietStack "
            f"{head['dietstack']}); this DietStack deploys {', '.join(releases.NAMES)}; "
            "nothing was changed",
            hint="restore it with the DietStack version that made it",
        )


def _digest(member: tarfile.TarInfo, handle: Any) -> Digest:
    reader = backup.Checksummed(handle)
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
                why = archives.refusal(member) or (f"it holds {member.name} twice" if again else "")
                if why:
                    raise _refused(archive, why)
                handle = tar.extractfile(member)  # a regular file: never None
                if member.name == MANIFEST:
                    manifest_bytes = _read_limited(
                        archive, handle, MANIFEST, archives.MANIFEST_LIMIT
                    )
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


# --- putting the files in place --------------------------------------------------


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
        reader, size = backup.Checksummed(handle), 0
        try:
            for block in iter(lambda: reader.read(1 << 20), b""):
                size += len(block)
                _write_all(fd, block, path)
            os.fchmod(fd, archives.restored_mode(member))
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
    if name == archives.DATABASES_MEMBER:
        return data_dir, data_dir / "state" / afterup.PENDING_DUMP
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
        mode = staged.stat().st_mode & 0o777
        with staged.open("rb") as source, files.replacing(target, mode) as out:
            shutil.copyfileobj(source, out)


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


# --- the settings ----------------------------------------------------------------


def archived_settings(archive: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.getmember(SETTINGS_MEMBER)
            if not member.isfile():
                raise _refused(archive, f"{SETTINGS_MEMBER} is a {archives.kind(member)}")
            handle = tar.extractfile(member)
            text = _read_limited(archive, handle, SETTINGS_MEMBER, archives.SETTINGS_LIMIT)
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


def restored_settings(archive: Path, settings_file: Path) -> dict[str, Any]:
    """The archive's settings, with this host's own (and its data_dir, if it names
    one). Whatever is taken from the archive, data_dir above all, must be valid:
    an archive's settings are no more trusted than its files."""
    archived = {k: v for k, v in archived_settings(archive).items() if k not in archives.HOST_KEYS}
    here = settingsfile.read_raw(settings_file)
    own = {key: here[key] for key in (*archives.HOST_KEYS, "data_dir") if key in here}
    problems = archives.settings_problems({k: v for k, v in archived.items() if k not in own})
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise DietStackError(
            f"{archive} holds settings DietStack refuses; nothing was changed:\n{listing}",
            hint="restore a copy of the backup you trust; to keep the data elsewhere, "
            f"set data_dir in {settings_file} first",
        )
    return {**archived, **own}
