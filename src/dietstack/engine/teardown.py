"""Removing a node's deployment: its containers, DietStack's host tables, and with
`--data` its data directory (never a file system mounted inside it)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from dietstack.engine.deployment import LABEL
from dietstack.engine.settingvalues import unfit_data_dir
from dietstack.errors import DietStackError, printable
from dietstack.hosts.dockerdata import RunSpec
from dietstack.hosts.hostio import Host
from dietstack.hosts.runtime import DockerRuntime
from dietstack.model import Privileges
from dietstack.services import firewall


def remove_host_tables(runtime: DockerRuntime, ovn_image: str | None) -> str:
    """Delete DietStack's nftables tables (firewall, br-ex NAT) from the host; returns
    a note when that was not possible.

    The host may have no `nft` of its own: it runs in the image that applied them."""
    manual = f"`nft delete table inet {firewall.TABLE}` and `nft delete table ip dietstack`"
    if ovn_image is None:
        # Only that image applies them: without it, they are gone or were removed by hand.
        return f"the ovn image is missing, so any firewall table left must be removed with {manual}"
    spec = RunSpec(
        name="dietstack-remove-host-tables",
        image=ovn_image,
        command=("--", *firewall.REMOVE_COMMAND),
        labels={},
        privileges=Privileges(capabilities=("NET_ADMIN",)),
    )
    code, output = runtime.run_oneshot(spec)
    if code != 0:
        raise DietStackError(
            f"removing DietStack's firewall and NAT tables failed: {output.strip()}",
            hint=f"run {manual}",
        )
    return ""


def _mount_points() -> set[Path]:
    """Every mount point of this host, bind mounts of a directory of the same file
    system too (which st_dev does not tell apart)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    # The fifth field; the kernel writes space, tab, newline and backslash as \ooo.
    fields = [line.split(" ")[4] for line in lines if line.count(" ") >= 4]
    return {Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), f)) for f in fields}


def _remove_within(path: Path, device: int, mounts: set[Path], kept: list[Path]) -> bool:
    """Remove `path` and all it holds on `device`; False when something had to stay."""
    status = path.lstat()
    if status.st_dev != device or path in mounts:
        kept.append(path)
        return False
    if not stat.S_ISDIR(status.st_mode):
        path.unlink()
        return True
    # A list, not a generator: every child is visited even after one had to stay.
    emptied = all([_remove_within(child, device, mounts, kept) for child in path.iterdir()])
    if emptied:
        path.rmdir()
    return emptied


def remove_data_dir(data_dir: Path) -> list[Path]:
    """Delete data_dir and all it holds on its own file system, as `rm -rf
    --one-file-system` does: a file system mounted inside (a NAS share under
    nova/mnt) stays as it is, with all it holds. Returns those mount points. A
    data_dir that is a link or a mount point itself is emptied and kept."""
    top, mounts = data_dir.resolve(), _mount_points()
    kept: list[Path] = []
    try:
        device = top.stat().st_dev
        emptied = all([_remove_within(child, device, mounts, kept) for child in top.iterdir()])
        if emptied and not data_dir.is_symlink() and top not in mounts:
            top.rmdir()
    except OSError as exc:
        raise DietStackError(
            f"removing {exc.filename or data_dir} failed: {exc.strerror}",
            hint="stop what uses it, then run `dietstack destroy --data` again",
        ) from None
    return kept


def _left_mounted(data_dir: Path, kept: list[Path]) -> str:
    listed = ", ".join(str(path) for path in kept)
    return (
        f"{len(kept)} mounted file system(s) in {data_dir} stay as they are, with all they "
        f"hold: {listed}. Unmount each (`umount PATH`), then remove what is left with "
        f"`rm -rf --one-file-system {data_dir}`"
    )


#: remove_data_dir on another node, whose host may have no Python: a shell script of
#: the same rules. It prints each mount point it keeps; `rm` removes whole subtrees
#: that hold no mount point (the kernel's table says which do, bind mounts of the
#: same file system too), and the directories around a kept one stay.
_REMOVE_ON_NODE = r"""
top=$(readlink -f -- "$1") && [ -d "$top" ] || exit 0
# The kernel writes a space in a mount point as \040 (a tab \011, a newline \012),
# which printf's %b reads as the character.
mounts=$(cut -d' ' -f5 /proc/self/mountinfo | while IFS= read -r point; do
    point=$(printf '%b' "$point")
    case $point in "$top" | "$top"/*) printf '%s\n' "$point" ;; esac
done)
status=0
clear() {
    local entry
    for entry in "$1"/* "$1"/.[!.]* "$1"/..?*; do
        # First: a file system whose daemon has gone (FUSE) fails even -e.
        if printf '%s\n' "$mounts" | grep -Fxq -- "$entry"; then
            printf '%s\n' "$entry"
        elif [ ! -e "$entry" ] && [ ! -L "$entry" ]; then
            continue
        elif [ -d "$entry" ] && [ ! -L "$entry" ] &&
            printf '%s\n' "$mounts" | grep -Fq -- "$entry/"; then
            clear "$entry"
            rmdir -- "$entry" 2>/dev/null || :
        else
            rm -rf --one-file-system -- "$entry" || status=1
        fi
    done
}
clear "$top"
printf '%s\n' "$mounts" | grep -Fxq -- "$top" || [ -L "$1" ] || rmdir -- "$top" 2>/dev/null || :
exit $status
"""


def remove_data_dir_on(host: Host, data_dir: Path) -> str:
    """remove_data_dir on a node over its link; returns a note on what was kept.
    Settings are checked on the control node only: a link on the node that leads
    data_dir somewhere shared is refused here."""
    code, output = host.call(["readlink", "-f", "--", str(data_dir)])
    # Checked as the node wrote it; an error escapes what it shows (errors.printable).
    real = output.strip() if code == 0 else ""
    why = unfit_data_dir(real) if real else ""
    if why:
        raise DietStackError(
            f"{data_dir} leads (through a link) to {real}, {why}: nothing was removed",
            hint=f"remove the link, or what DietStack left in {real}, by hand",
        )
    code, output = host.call(["sh", "-c", _REMOVE_ON_NODE, "dietstack-destroy", str(data_dir)])
    if code != 0:
        raise DietStackError(
            f"removing {data_dir} failed",
            details=output.strip(),
            hint="unmount what is mounted there, then run `dietstack destroy --data` again",
        )
    # The note is printed as it is: a compromised node must not write control
    # sequences to the admin's terminal.
    kept = [Path(printable(line)) for line in output.splitlines() if line.strip()]
    return _left_mounted(data_dir, kept) if kept else ""


def destroy(
    runtime: DockerRuntime, data_dir: Path | None, ovn_image: str | None
) -> tuple[int, str]:
    """Remove every DietStack container and its host tables, and the data when given
    (never what is mounted in it). Returns how many containers were removed and a
    note on what was left, if anything."""
    names = sorted(runtime.containers(LABEL))
    for name in names:
        runtime.remove(name)
    note = remove_host_tables(runtime, ovn_image)
    if data_dir is not None and data_dir.exists():
        kept = remove_data_dir(data_dir)
        if kept:
            note = "; ".join(filter(None, [note, _left_mounted(data_dir, kept)]))
    return len(names), note
