"""ICMP echo from this host (as root), so that no ping binary is needed: whether a
VM answers on its floating IP, and how long it went unanswered while it moved."""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(address: str, timeout: float = 2.0) -> bool:
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    payload = b"dietstack-verify"
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, source = sock.recvfrom(1024)
            except TimeoutError:
                return False
            icmp = data[(data[0] & 0x0F) * 4 :]
            if source[0] == address and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                return True
    return False


class PingWatch:
    """Pings an address every `interval` seconds in the background; the longest
    run without an answer is what an instance's users saw of a migration."""

    def __init__(self, address: str, interval: float = 0.2) -> None:
        self.address = address
        self.interval = interval
        self.answers: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            self.answers.append((sent, ping(self.address, timeout=1.0)))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - sent)))

    def __enter__(self) -> PingWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def longest_gap(self) -> float:
        """The longest time without an answer, from the first ping sent to the last
        (a silence at either end counts)."""
        if not self.answers:
            return 0.0
        marks = [self.answers[0][0], *(sent for sent, ok in self.answers if ok)]
        marks.append(self.answers[-1][0])
        return max(later - earlier for earlier, later in itertools.pairwise(marks))
