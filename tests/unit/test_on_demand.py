"""The on-demand starter, with a real echo daemon behind it on loopback ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dietstack.start import on_demand

SCRIPT = Path(on_demand.__file__)
#: Appends a line to a file at each start, then echoes every connection.
ECHO = """
import socket, sys, threading
open(sys.argv[2], "a").write("started\\n")
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    threading.Thread(target=echo, args=(server.accept()[0],), daemon=True).start()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def starts(log: Path) -> int:
    return log.read_text().count("started") if log.exists() else 0


@pytest.fixture
def starter(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    front, behind, log = free_port(), free_port(), tmp_path / "starts"
    command = [sys.executable, "-c", ECHO, str(behind), str(log)]
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), f"127.0.0.1:{front}", f"127.0.0.1:{behind}", "2", "--"]
        + command
    )
    try:
        # The front port takes connections into its backlog before the daemon's
        # first start has ended, so that start is waited for on its own.
        wait_for("the starter to listen", lambda: _answers(front))
        wait_for("the daemon's first start", lambda: starts(log) >= 1)
        yield front, behind, log
    finally:
        process.terminate()
        process.wait(10)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def echoed(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as client:
        client.sendall(payload)
        received = b""
        while len(received) < len(payload):
            received += client.recv(65536)
        return received


def test_the_daemon_starts_once_ends_when_idle_and_starts_again_for_a_client(
    starter: tuple[int, int, Path],
) -> None:
    front, behind, log = starter
    assert starts(log) == 1  # at start, to show it can come up
    wait_for("the idle daemon to end", lambda: not _answers(behind), timeout=20)
    # A port check (connect, say nothing, close) starts nothing.
    for _ in range(3):
        socket.create_connection(("127.0.0.1", front), timeout=2).close()
    time.sleep(1)
    assert starts(log) == 1
    payload = b"hello " * 20000
    assert echoed(front, payload) == payload
    assert starts(log) == 2
    # Two clients at once share the one daemon.
    assert echoed(front, b"a") == b"a" and echoed(front, b"b") == b"b"
    assert starts(log) == 2


def test_a_daemon_that_cannot_come_up_ends_the_starter(tmp_path: Path) -> None:
    front, behind = free_port(), free_port()
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), f"127.0.0.1:{front}", f"127.0.0.1:{behind}", "5", "--"]
        + failing,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "the daemon exited with 3" in result.stderr


def test_bad_arguments_are_refused() -> None:
    assert on_demand.main(["127.0.0.1:1", "127.0.0.1:2"]) == 2
    with pytest.raises(ValueError, match="HOST:PORT"):
        on_demand.address("6080")


def test_a_half_close_is_passed_on_and_the_reply_still_arrives(
    starter: tuple[int, int, Path],
) -> None:
    front, _, _ = starter
    payload = b"x" * 300000
    with socket.create_connection(("127.0.0.1", front), timeout=15) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)  # all sent: the daemon sees the end
        received = b""
        while data := client.recv(65536):
            received += data
    assert received == payload


def test_a_client_reset_mid_relay_leaves_the_starter_serving(
    starter: tuple[int, int, Path],
) -> None:
    front, _, _ = starter
    for _ in range(5):
        client = socket.create_connection(("127.0.0.1", front), timeout=15)
        client.sendall(b"y" * 1000)
        # Closing with unread data sends a reset.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
    assert echoed(front, b"still here") == b"still here"
