"""A stranger on the LAN: a network namespace routed through this host that is not
a node, to probe which of the host's ports answer someone the firewall does not
trust. Used by the integration tests and benchmarks/exposure.py (needs root)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from dietstack.ops import exposure

STRANGER_HOST_ADDRESS = "198.51.100.1/24"
STRANGER_ADDRESS = "198.51.100.2/24"

_PROBE = """
import socket, sys, concurrent.futures as cf
def probe(target):
    address, port = target.rsplit(":", 1)
    try:
        socket.create_connection((address, int(port)), 3).close()
        return target
    except OSError:
        return None
with cf.ThreadPoolExecutor(64) as pool:
    print(" ".join(t for t in pool.map(probe, sys.argv[1:]) if t))
"""


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


@contextmanager
def lan_stranger(namespace: str, link: str) -> Iterator[str]:
    """A namespace behind a veth whose host end routes it to this host's addresses
    (TEST-NET-2 addresses); removed again afterwards."""
    _ip("netns", "delete", namespace, check=False)
    _ip("link", "delete", link, check=False)
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", link, "type", "veth", "peer", "name", "lan0", "netns", namespace)
        _ip("addr", "add", STRANGER_HOST_ADDRESS, "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", namespace, "addr", "add", STRANGER_ADDRESS, "dev", "lan0")
        _ip("-n", namespace, "link", "set", "lan0", "up")
        _ip("-n", namespace, "route", "add", "default", "via", STRANGER_HOST_ADDRESS.split("/")[0])
        yield namespace
    finally:
        _ip("netns", "delete", namespace, check=False)
        _ip("link", "delete", link, check=False)


def probe_from(namespace: str, targets: list[exposure.Target]) -> list[exposure.Target]:
    """Connect from the namespace to every target at once; those that accepted."""
    command = ["ip", "netns", "exec", namespace, sys.executable, "-c", _PROBE]
    result = subprocess.run([*command, *map(str, targets)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"probing from {namespace} failed: {result.stderr.strip()}")
    found = [exposure.Target.parse(text) for text in result.stdout.split()]
    return [target for target in found if target is not None]
