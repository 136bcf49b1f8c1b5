"""What a backup archive holds, and what restore accepts from one.

An archive is a gzip'd tar, 0600 (it holds every password), that ends with a
manifest: DietStack's version and OpenStack release, when it was taken, and the
size and SHA-256 of every other member, each taken from the very bytes written (a
volume in use changes while it is copied). Archives that start with their
manifest (the earlier layout) are read too. It holds:

- config/: the settings file, secrets.yaml, the overrides, the node inventory and
  the nodes' SSH host keys;
- databases.sql: every service's database, dumped in one consistent transaction
  while the cloud runs (mariadb-dump --single-transaction);
- data/keystone/: the fernet and credential keys (tokens and stored credentials
  stay valid);
- data/nova/state/compute_id: the identity of the control node's compute node;
- data/ovn/ovnnb_db.db: OVN's northbound database (networks, routers, ACLs, NAT),
  a consistent copy made by its own server (ovsdb-client backup);
- data/glance/: the images;
- with --volumes, data/cinder-volumes/: the volumes and their snapshots (copied
  while in use, so as consistent as after a power cut).

A backup archive is untrusted input: whoever made it made its manifest too, so
checksums that match prove only that it is intact, not that DietStack wrote it.
Restore (`unpack`) holds every archive to the rules below, and each one closes a
way for an archive to reach beyond what it restores:

- a plain relative name (no leading '/', no empty, '.' or '..' part, no
  backslash or control character): it means the same path to tar, to Python and
  to the kernel, and stays inside the directory it is put in;
- a regular file: a symbolic or hard link would send a write elsewhere on the
  host, and a device or FIFO is nothing a backup copies;
- a name a backup holds, as listed above: anything else (a cron job under
  config/, MariaDB's own files, the dump restore leaves for deploy, a server's
  directory) was put there by hand;
- each name once: in a tar a later copy replaces an earlier one, so the file
  restored need not be the one that was checked;
- a manifest as DietStack writes one, and no larger than one ever is (nor is the
  settings file): both are read into memory, and the server records name
  directories that restore creates;
- the OpenStack release this DietStack deploys: an archive is restored by the
  DietStack version that made it;
- no more than read access for others on a restored file, and none at all on
  the config files and the dump, which hold passwords;
- settings checked value by value as the settings file's are: data_dir, above
  all, decides where restore writes. The settings that describe a host (its NICs
  and addresses) come from this host instead.
"""

from __future__ import annotations

import re
import tarfile
from typing import Any

from dietstack.engine import inventory, settings
from dietstack.services import nfs

FORMAT = 1
MANIFEST = "manifest.json"
DATABASES_MEMBER = "databases.sql"
SETTINGS_MEMBER = "config/settings.yaml"
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

#: The names a backup holds (see `backup.members`): these files, and any file in
#: these trees.
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
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A server's id names its directory under nova/instances.
_SERVER_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
#: Settings that describe a host rather than the cloud: on restore they come from
#: this host's settings file, or are detected anew where there is none (a new host
#: has other NICs and addresses).
HOST_KEYS = ("management_interface", "management_ip", "external_interface", "tunnel_interface")


# --- members ---------------------------------------------------------------------


def _plain(name: str) -> bool:
    """A relative name without empty, '.' or '..' parts, backslashes or control
    characters: it means the same path to tar, to Python and to the kernel."""
    if any(char == "\\" or ord(char) < 0x20 or char == "\x7f" for char in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def kind(member: tarfile.TarInfo) -> str:
    kinds = (
        (member.issym, "symbolic link"),
        (member.islnk, "hard link"),
        (member.isdir, "directory"),
        (member.ischr, "character device"),
        (member.isblk, "block device"),
        (member.isfifo, "FIFO"),
    )
    return next((name for is_kind, name in kinds if is_kind()), "special file")


def refusal(member: tarfile.TarInfo) -> str:
    """Why restore does not take this member ('' when it does)."""
    if not _plain(member.name):
        return f"the name {member.name!r} is not a plain relative path and could lead anywhere"
    if not member.isfile():
        return f"{member.name} is a {kind(member)}; a backup holds regular files only"
    if member.name not in EXPECTED_FILES and not member.name.startswith(EXPECTED_TREES):
        return f"{member.name} is not a file a backup holds"
    return ""


def restored_mode(member: tarfile.TarInfo) -> int:
    """The config files and the dump hold passwords: 0600. The data keep their read
    bits for group and others from the archive, and never get more (no write for
    others, no execute, no setuid)."""
    if member.name.startswith("data/"):
        return 0o600 | (member.mode & 0o044)
    return 0o600


# --- the manifest ----------------------------------------------------------------


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


def manifest_problem(data: Any) -> str:
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


# --- the settings ----------------------------------------------------------------


def settings_problems(values: dict[Any, Any]) -> list[str]:
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
