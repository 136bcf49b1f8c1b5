"""Replacing a file all at once: the mode from the start, nothing left on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dietstack.hosts import files


def test_a_private_file_never_has_a_wider_mode(tmp_path: Path) -> None:
    target = tmp_path / "secrets.yaml"
    seen: list[int] = []
    old = os.umask(0)
    try:
        with files.replacing(target, mode=0o600) as stream:
            seen.append(stat.S_IMODE(os.fstat(stream.fileno()).st_mode))
            stream.write(b"password: x\n")
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"password: x\n"


def test_a_stale_temporary_file_does_not_lend_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "clouds.yaml"
    files.temporary(target).write_text("left by a crash")
    files.temporary(target).chmod(0o644)
    files.write_atomic(target, "admin: secret\n", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "admin: secret\n"
    assert not files.temporary(target).exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "state" / "stopped-instances.json"
    files.write_atomic(target, b"old\n", sync=True)
    with pytest.raises(RuntimeError), files.replacing(target) as stream:
        stream.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["stopped-instances.json"]
