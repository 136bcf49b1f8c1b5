from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dietstack.apis import cloudapi
from dietstack.hosts.hostnet import HostNetwork


@pytest.fixture(autouse=True)
def ca_file_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cloud's CA file, where a unit test may write it (never /etc/openstack)."""
    path = tmp_path / "dietstack-ca.pem"
    monkeypatch.setattr(cloudapi, "CA_FILE", path)
    return path


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
