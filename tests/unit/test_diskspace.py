"""Free-space warnings: the thresholds, one line for a shared file system, and a
node's `df` answer taken as untrusted text."""

from __future__ import annotations

from pathlib import Path

import pytest

from dietstack.engine import diskspace
from dietstack.engine.diskspace import Space

from .fakes import FakeHost

GIB = 1024**3
HEADER = "Filesystem 1-blocks Used Available Capacity Mounted on\n"


def df_of(path: str) -> str:
    """The command line `measure` runs, as FakeHost keys it."""
    return " ".join(["sh", "-c", diskspace.NEAREST_DF, "sh", path])


def df(total: int, free: int, mount: str = "/") -> tuple[int, str]:
    return 0, HEADER + f"/dev/vda {total} {total - free} {free} 50% {mount}\n"


@pytest.mark.parametrize(
    ("total", "free", "low"),
    [
        (100 * GIB, 20 * GIB, False),
        (100 * GIB, 9 * GIB, True),  # under a tenth
        (30 * GIB, 4 * GIB, True),  # under 5 GiB, though over a tenth
        (30 * GIB, 6 * GIB, False),
    ],
)
def test_space_is_low_under_a_tenth_or_5_gib(total: int, free: int, low: bool) -> None:
    assert Space("vm", "data_dir", "/var/lib/dietstack", total, free).low is low


def test_the_warning_names_node_path_free_space_and_what_to_do() -> None:
    text = Space("node-1", "data_dir", "/var/lib/dietstack", 100 * GIB, 3 * GIB).warning()
    assert text.startswith("node-1: data_dir (/var/lib/dietstack) has 3.0 GiB free (3 % of 100")
    assert "docker system prune" in text


@pytest.mark.parametrize(
    "output",
    [
        "",
        HEADER,
        HEADER + "/dev/vda 100 50\n",
        HEADER + "/dev/vda ten 5 5 50% /\n",
        HEADER + "/dev/vda 100 0 200 0% /\n",  # more free than there is
        HEADER + "/dev/vda -1 0 0 0% /\n",
        HEADER + "/dev/vda 100 50 50 50% /\n/dev/vdb 100 50 50 50% /x\n",
        HEADER + "/dev/vda 100 50 50 50% relative\n",
        HEADER + "/dev/vda 100 50 50 50% /\x1b[2J\n",  # a terminal escape
    ],
)
def test_a_df_answer_that_is_not_one_line_of_numbers_is_refused(output: str) -> None:
    assert diskspace.parse_df(output) is None


def test_one_line_when_data_dir_and_docker_share_a_file_system() -> None:
    host = FakeHost(
        {
            df_of("/var/lib/dietstack"): df(100 * GIB, 2 * GIB),
            df_of("/var/lib/docker"): df(100 * GIB, 2 * GIB),
        }
    )
    lines = diskspace.warnings(host, "vm", Path("/var/lib/dietstack"), Path("/var/lib/docker"))
    assert len(lines) == 1 and lines[0].startswith("vm: data_dir and Docker's data")


def test_each_low_file_system_is_named_and_an_unreadable_one_too() -> None:
    host = FakeHost(
        {
            df_of("/srv/data"): df(100 * GIB, 50 * GIB, "/srv"),
            df_of("/var/lib/docker"): df(20 * GIB, 1 * GIB),
        }
    )
    lines = diskspace.warnings(host, "vm", Path("/srv/data"), Path("/var/lib/docker"))
    assert lines == [Space("vm", "Docker's data", "/var/lib/docker", 20 * GIB, GIB, "/").warning()]
    host.answers[df_of("/srv/data")] = (1, "df: /srv/data: No such file or directory")
    lines = diskspace.warnings(host, "vm", Path("/srv/data"), Path("/var/lib/docker"))
    assert lines[0] == "vm: the free space of data_dir (/srv/data) could not be read"


def test_enough_room_says_nothing() -> None:
    host = FakeHost({df_of("/d"): df(100 * GIB, 60 * GIB), df_of("/r"): df(50 * GIB, 40 * GIB)})
    assert diskspace.warnings(host, "vm", Path("/d"), Path("/r")) == []


def test_two_disks_of_the_same_size_are_each_named() -> None:
    host = FakeHost(
        {
            df_of("/srv/data"): df(100 * GIB, 2 * GIB, "/srv"),
            df_of("/var/lib/docker"): df(100 * GIB, 2 * GIB, "/var/lib/docker"),
        }
    )
    lines = diskspace.warnings(host, "vm", Path("/srv/data"), Path("/var/lib/docker"))
    assert [line.split(" (")[0] for line in lines] == ["vm: data_dir", "vm: Docker's data"]
