"""An upgrade under way, remembered in the state directory from the moment it begins
to change the cloud until it is done: `dietstack upgrade` resumes it, and `deploy`
refuses to run meanwhile; nor does it change a deployed cloud's release."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from dietstack import releases
from dietstack.errors import DietStackError

STATE_FILE = "upgrade.json"


@dataclass(frozen=True)
class UnderWay:
    """An upgrade that has begun changing the cloud (kept in the state directory)."""

    source: str
    target: str
    backup: str

    @staticmethod
    def read(state_dir: Path) -> UnderWay | None:
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return UnderWay(str(data["source"]), str(data["target"]), str(data["backup"]))

    def write(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / STATE_FILE).write_text(json.dumps(asdict(self)) + "\n")

    @staticmethod
    def clear(state_dir: Path) -> None:
        (state_dir / STATE_FILE).unlink(missing_ok=True)


def refuse_a_release_change(
    config_path: Path, running: str | None, wanted: str, state_dir: Path
) -> None:
    """A deployed cloud changes release through `upgrade` alone (checks, backup, order)."""
    underway = UnderWay.read(state_dir)
    if underway is not None:
        raise DietStackError(
            f"an upgrade from OpenStack {underway.source} to {underway.target} is under way; "
            "nothing was changed",
            hint="`dietstack upgrade` finishes it (or `dietstack restore "
            f"{underway.backup}` on a cleared host brings back the {underway.source} cloud)",
        )
    if running is None or running == wanted:
        return
    if running in releases.RELEASES[wanted].upgrades_from:
        hint = (
            f"`dietstack upgrade --to {wanted}` moves the cloud there (checks first, a "
            f"backup, then every service in order); or set `release: '{running}'` again"
        )
    else:
        hint = f"set `release: '{running}'` again in {config_path}"
    raise DietStackError(
        f"{config_path} says release {wanted}, but this cloud runs OpenStack {running}; "
        "nothing was changed",
        hint=hint,
    )
