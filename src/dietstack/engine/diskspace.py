"""Free space under data_dir and Docker's data, judged before it runs out.

A full disk is what a home cloud meets first: instance disks, volumes, images and
the databases all live under data_dir, and every image layer and container log
under Docker's root. `deploy` and `status` warn while there is still room to act.
What a node's `df` prints is that node's word about itself: it is parsed strictly
and anything else is reported as unreadable, never trusted as a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dietstack.engine.deployment import Deployment
from dietstack.errors import DietStackError
from dietstack.hosts.hostio import Host

#: Warn below either: a tenth of the file system, or 5 GiB (what one small image,
#: a few instance disks and a database backup take).
LOW_FRACTION = 0.10
LOW_BYTES = 5 * 1024**3
#: `df` of the nearest directory that exists: data_dir is made by the first deploy.
NEAREST_DF = 'p="$1"; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; exec df -P -B1 "$p"'


@dataclass(frozen=True)
class Space:
    node: str
    what: str
    path: str
    total: int
    free: int
    #: The mount point df names: two paths on one file system share it.
    mount: str = ""

    @property
    def low(self) -> bool:
        return self.free < LOW_BYTES or self.free < self.total * LOW_FRACTION

    def warning(self) -> str:
        share = 100 * self.free / self.total if self.total else 0
        return (
            f"{self.node}: {self.what} ({self.path}) has {self.free / 1024**3:.1f} GiB free "
            f"({share:.0f} % of {self.total / 1024**3:.0f} GiB): new servers, volumes and "
            "images fail when it is full; free some space there (`docker system prune` "
            "removes unused images) or move data_dir to a larger disk"
        )


def parse_df(output: str) -> tuple[int, int, str] | None:
    """(total, free bytes, mount point) from `df -P -B1 PATH`: a header, then one
    line whose 2nd and 4th fields are whole numbers and whose last is an absolute
    path. Anything else is None."""
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) != 2:
        return None
    fields = lines[1].split()
    if len(fields) < 6 or not (fields[1].isdigit() and fields[3].isdigit()):
        return None
    total, free, mount = int(fields[1]), int(fields[3]), fields[-1]
    if total <= 0 or free > total or not mount.startswith("/") or not mount.isprintable():
        return None
    return total, free, mount


def measure(host: Host, node: str, what: str, path: Path) -> Space | str:
    """The space of the file system holding `path` on `host`, or why it is unknown."""
    code, output = host.call(["sh", "-c", NEAREST_DF, "sh", str(path)])
    parsed = parse_df(output) if code == 0 else None
    if parsed is None:
        return f"{node}: the free space of {what} ({path}) could not be read"
    return Space(node, what, str(path), *parsed)


def warnings(host: Host, node: str, data_dir: Path, docker_root: Path) -> list[str]:
    """A line for each low (or unreadable) file system of one node; one line when
    data_dir and Docker's root are on the same file system."""
    found = [
        measure(host, node, "data_dir", data_dir),
        measure(host, node, "Docker's data", docker_root),
    ]
    spaces = [item for item in found if isinstance(item, Space)]
    lines = [item for item in found if isinstance(item, str)]
    if len(spaces) == 2 and spaces[0].mount == spaces[1].mount:
        # The same file system seen twice (its free space may move between reads).
        first = spaces[0]
        spaces = [Space(node, "data_dir and Docker's data", first.path, first.total, first.free)]
    return lines + [space.warning() for space in spaces if space.low]


def node_warnings(node: Deployment) -> list[str]:
    """The free-space warnings of one deployed node, read on that node."""
    try:
        docker_root = node.runtime.root_dir()
    except DietStackError as exc:
        return [f"{node.node}: the free space of Docker's data could not be read ({exc.message})"]
    return warnings(node.host, node.node, node.paths.data_dir, docker_root)
