"""Guests QEMU paused for want of disk space are resumed once there is room again.

The loop libvirt's container starts beside libvirtd runs here once, against
stand-ins for virsh, df and sleep on PATH that record what they were asked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dietstack import services
from dietstack.services import libvirt

from .helpers import make_env

FAKE_VIRSH = """#!/bin/sh
echo "$*" >> "$LOG"
case "$*" in
  *"list --state-paused --name"*) printf 'instance-1\\ninstance-2\\n' ;;
  *"domstate --reason instance-1"*) echo "paused (I/O error)" ;;
  *"domstate --reason instance-2"*) echo "paused (user)" ;;
esac
"""
#: The loop's first sleep returns at once, the second ends the loop.
FAKE_SLEEP = """#!/bin/sh
[ -e "$LOG.slept" ] && exit 1
touch "$LOG.slept"
"""


def run_once(tmp_path: Path, free_kib: int) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "virsh.log"
    for name, text in (
        ("virsh", FAKE_VIRSH),
        ("sleep", FAKE_SLEEP),
        ("df", f"#!/bin/sh\nprintf ' Avail\\n{free_kib}\\n'\n"),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    done = subprocess.run(
        ["sh", "-ec", libvirt.RESUME_AFTER_FULL_DISK + " wait"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


@pytest.mark.parametrize("free_kib", [libvirt.RESUME_FREE_KIB, 10 * libvirt.RESUME_FREE_KIB])
def test_a_guest_paused_by_a_full_disk_is_resumed_once_there_is_room(
    tmp_path: Path, free_kib: int
) -> None:
    asked = run_once(tmp_path, free_kib)
    resumed = [line for line in asked if " resume " in f" {line} "]
    # Only the guest paused by an I/O error; one a user paused stays paused.
    assert resumed == ["-c qemu:///system resume instance-1"]


def test_no_guest_is_resumed_while_the_disk_is_still_full(tmp_path: Path) -> None:
    asked = run_once(tmp_path, libvirt.RESUME_FREE_KIB - 1)
    assert not [line for line in asked if "resume" in line]


def test_libvirt_starts_the_loop_in_the_background() -> None:
    container = services.find(make_env(), "libvirt")
    assert libvirt.RESUME_AFTER_FULL_DISK in container.prepare
    assert libvirt.RESUME_AFTER_FULL_DISK.endswith("&")
