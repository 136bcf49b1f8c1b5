from __future__ import annotations

import ipaddress

import pytest

from dietstack.hosts.hostnet import HostNetwork


@pytest.fixture
def host() -> HostNetwork:
    """A single-NIC host on a typical home LAN, with Docker's bridge present."""
    return HostNetwork(
        addresses={
            "lo": (ipaddress.IPv4Interface("127.0.0.1/8"),),
            "eth0": (ipaddress.IPv4Interface("192.168.1.20/24"),),
            "eth1": (),
            "docker0": (ipaddress.IPv4Interface("172.17.0.1/16"),),
        },
        routes=(
            ipaddress.IPv4Network("192.168.1.0/24"),
            ipaddress.IPv4Network("172.17.0.0/16"),
        ),
        default_interface="eth0",
    )
