"""Which cloud a data directory belongs to.

The databases in data_dir only open with the passwords in one secrets file. A
settings file elsewhere, with no secrets beside it, would make new passwords and
re-key every running service against databases that do not know them. So data_dir
keeps a fingerprint of its cloud's secrets (a hash; no secret can be read from it),
and deploy refuses secrets whose fingerprint differs, before anything changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dietstack.errors import DietStackError
from dietstack.hosts import files

MARK_FILE = "cloud-id"
#: Every cloud has this secret from its first deploy; it never changes.
KEY_SECRET = "mariadb_root_password"


def fingerprint(values: dict[str, str]) -> str:
    return hashlib.sha256(f"dietstack-cloud\0{values[KEY_SECRET]}".encode()).hexdigest()[:32]


def recorded(data_dir: Path) -> str:
    try:
        return (data_dir / MARK_FILE).read_text().strip()
    except FileNotFoundError:
        return ""


def _holds_a_cloud(data_dir: Path) -> bool:
    """A cloud deployed before fingerprints were kept: its database is there."""
    return (data_dir / "mariadb" / "mysql").is_dir()


def check(data_dir: Path, secrets_file: Path, values: dict[str, str]) -> None:
    """Refuse when data_dir holds a cloud that `values` (read from `secrets_file`,
    empty when there is none) cannot open."""
    mark = recorded(data_dir)
    if not mark and not _holds_a_cloud(data_dir):
        return  # a new cloud
    how = (
        f"use the settings file that deployed this cloud (its secrets.yaml is beside it), "
        f"or copy that secrets.yaml to {secrets_file}; to start a new cloud in "
        f"{data_dir} instead, run `dietstack destroy --data` with that settings file"
    )
    if KEY_SECRET not in values:
        raise DietStackError(
            f"{data_dir} (data_dir) holds a DietStack cloud, but there are no secrets in "
            f"{secrets_file}: deploying would make new passwords that its databases do not "
            "know; nothing was changed",
            hint=how,
        )
    if mark and mark != fingerprint(values):
        raise DietStackError(
            f"the secrets in {secrets_file} belong to another cloud than the one in "
            f"{data_dir} (data_dir); nothing was changed",
            hint=how,
        )


def record(data_dir: Path, values: dict[str, str]) -> None:
    """Remember which secrets this data_dir's cloud has (once; it never changes)."""
    if recorded(data_dir) == fingerprint(values):
        return
    files.write_atomic(data_dir / MARK_FILE, fingerprint(values) + "\n")
