"""Preflight: which listening ports belong to containers deploy will remove."""

from __future__ import annotations

import os
from pathlib import Path

from dietstack.engine import preflight

from .helpers import make_env

HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  inode\n"
)


def row(port: int, state: str, inode: int) -> str:
    # sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode, ...
    fields = ["0:", f"0200000C:{port:04X}", "00000000:0000", state, "0:0", "0:0", "0", "0", "0"]
    return " ".join([*fields, str(inode), "1"]) + "\n"


def fake_proc(tmp_path: Path, sockets: dict[int, list[int]], table: str) -> Path:
    for pid, inodes in sockets.items():
        fd_dir = tmp_path / str(pid) / "fd"
        fd_dir.mkdir(parents=True)
        for number, inode in enumerate(inodes):
            os.symlink(f"socket:[{inode}]", fd_dir / str(number))
        os.symlink("/dev/null", fd_dir / "99")
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(HEADER + table)
    return tmp_path


def test_listening_ports_of_given_processes_only(tmp_path: Path) -> None:
    table = row(8775, "0A", 111) + row(8774, "0A", 222) + row(40000, "01", 333)
    proc = fake_proc(tmp_path, {10: [111, 333], 20: [222]}, table)
    assert preflight.listening_ports([10], proc) == {8775}
    assert preflight.listening_ports([10, 20], proc) == {8774, 8775}


def test_a_process_that_has_gone_is_ignored(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {}, row(8775, "0A", 111))
    assert preflight.listening_ports([4242], proc) == set()


def test_a_dashboard_port_that_another_service_uses_is_named() -> None:
    assert preflight.port_clashes(make_env()) == []
    assert preflight.port_clashes(make_env(dashboard_port=8080)) == []
    (problem,) = preflight.port_clashes(make_env(dashboard_port=5000))
    assert problem.startswith("dashboard_port: 5000 is also the port of keystone")
    assert "e.g. 8080" in problem
