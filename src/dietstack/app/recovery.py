"""`backup` and `restore` of the whole cloud, as the verbs run them.

The archive's rules (what a member may be, where it may go) are in archives.py
and unpack.py; taking the parts of a backup is backup.py's job. Nothing here prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dietstack.apis import cloudapi
from dietstack.app import cloud as clouds
from dietstack.app.cloud import Cloud
from dietstack.app.lifecycle import deploy_everything
from dietstack.engine import deploy, secrets, settings
from dietstack.errors import DietStackError
from dietstack.hosts import hostnet
from dietstack.hosts.provision import ensure_docker
from dietstack.ops import backup, unpack
from dietstack.progress import Progress


@dataclass(frozen=True)
class BackedUp:
    archive: Path
    head: dict[str, Any]
    servers: int
    seconds: float


def default_archive() -> Path:
    return Path(f"dietstack-backup-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz")


def take_backup(config_path: Path, archive: Path, volumes: bool) -> BackedUp:
    """The whole running cloud written to `archive` (0600: it holds every password)."""
    started = time.monotonic()
    if archive.exists():
        raise DietStackError(f"{archive} exists already", hint="name another file")
    cloud = clouds.deployed(config_path)
    control = cloud.control
    try:
        servers = cloudapi.server_records(cloudapi.admin(control.env))
    except cloudapi.CLOUD_ERRORS as exc:
        raise DietStackError(
            f"the cloud does not answer ({exc}); a backup is taken from a running cloud",
            hint="`dietstack status` shows what is down; `dietstack deploy` repairs it",
        ) from None
    source = backup.Source(config_path, control.settings.data_dir)
    values = secrets.required(cloud.inputs.secrets, control.paths.secrets_file)
    extra = {"servers": servers, "volumes": volumes}
    say, release = control.progress.say, control.settings.release
    head = backup.take(control.runtime, source, values, archive, volumes, extra, say, release)
    return BackedUp(archive, head, len(servers), time.monotonic() - started)


@dataclass(frozen=True)
class Restored:
    cloud: Cloud
    created: str
    seconds: float
    problems: list[str]


def restore(config_path: Path, archive: Path, verbose: bool) -> Restored:
    """The cloud of `archive` brought back on this host: the whole archive is checked
    before anything is written, then it is extracted and deployed."""
    started = time.monotonic()
    say = Progress(total=0).say
    say(f"Checking {archive}")
    head = unpack.check(archive)
    # The databases are of the archive's release: the cloud comes back on it.
    merged = {**unpack.restored_settings(archive, config_path), "release": head["release"]}
    effective = settings.validate(merged, hostnet.probe(), config_path)
    source = backup.Source(config_path, effective.data_dir)
    runtime = ensure_docker(say)
    backup.refuse_to_overwrite(
        head,
        source,
        len(runtime.containers(deploy.LABEL)),
        secrets.read_if_present(secrets.secrets_path(config_path)),
    )
    say(f"Restoring {len(head['files'])} files from the backup of {head['created']}")
    unpack.extract(archive, source.config_dir, source.data_dir)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(merged, sort_keys=False))
    cloud, _ = deploy_everything(config_path, verbose)
    problems = backup.bring_back_servers(
        cloudapi.admin(cloud.control.env),
        head.get("servers", []),
        source.data_dir / "nova" / "instances",
        say,
    )
    return Restored(cloud, str(head["created"]), time.monotonic() - started, problems)
