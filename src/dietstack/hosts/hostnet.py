"""What the host's network looks like: interfaces, addresses and routes.

Read once with `ip -json`; everything else works on the returned snapshot so
that settings defaults and validation can be unit-tested with made-up hosts.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass, field

IPv4Interface = ipaddress.IPv4Interface
IPv4Network = ipaddress.IPv4Network

#: Networks never picked as the default floating-IP range, besides the host's
#: own: Docker's default bridge, which may not exist yet when settings are made.
RESERVED_NETWORKS = (IPv4Network("172.17.0.0/16"),)

#: Interfaces DietStack creates itself; their networks are ours, not collisions.
OWN_INTERFACES = frozenset({"br-ex"})

#: Candidate floating-IP ranges, tried in order until one is free on this host.
EXTERNAL_CANDIDATES = (
    IPv4Network("172.24.4.0/24"),
    IPv4Network("172.25.4.0/24"),
    IPv4Network("10.213.4.0/24"),
    IPv4Network("192.168.213.0/24"),
)


@dataclass(frozen=True)
class HostNetwork:
    """A snapshot of the host's IPv4 configuration."""

    addresses: dict[str, tuple[IPv4Interface, ...]] = field(default_factory=dict)
    routes: tuple[IPv4Network, ...] = ()
    default_interface: str | None = None

    def has_interface(self, name: str) -> bool:
        return name in self.addresses

    def used_networks(self) -> list[IPv4Network]:
        """Every IPv4 network the host is attached to or routes to (not the default)."""
        networks = [
            addr.network
            for name, addrs in self.addresses.items()
            if name not in OWN_INTERFACES
            for addr in addrs
        ]
        networks.extend(self.routes)
        return [net for net in networks if not net.is_loopback]

    def primary_address(self, interface: str) -> IPv4Interface | None:
        addrs = self.addresses.get(interface, ())
        return addrs[0] if addrs else None

    def management_interface(self) -> str:
        """The interface of the default route, else the first one with an address."""
        if self.default_interface and self.addresses.get(self.default_interface):
            return self.default_interface
        for name, addrs in self.addresses.items():
            if name != "lo" and addrs:
                return name
        return "lo"

    def free_external_network(self) -> IPv4Network:
        """The first candidate floating-IP range that collides with nothing on this host."""
        taken = self.used_networks() + list(RESERVED_NETWORKS)
        for candidate in EXTERNAL_CANDIDATES:
            if not any(candidate.overlaps(net) for net in taken):
                return candidate
        return EXTERNAL_CANDIDATES[0]


def _ip_json(*args: str) -> list[dict[str, object]]:
    try:
        out = subprocess.run(
            ["ip", "-json", *args], check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    data = json.loads(out or "[]")
    return data if isinstance(data, list) else []


def probe() -> HostNetwork:
    """Read the live host network with `ip -json` (empty snapshot when `ip` is missing)."""
    addresses: dict[str, tuple[IPv4Interface, ...]] = {}
    for link in _ip_json("-4", "addr", "show"):
        name = str(link.get("ifname", ""))
        infos = link.get("addr_info") or []
        assert isinstance(infos, list)
        addresses[name] = tuple(
            IPv4Interface(f"{info['local']}/{info['prefixlen']}")
            for info in infos
            if isinstance(info, dict) and info.get("family") == "inet"
        )
    # Interfaces without IPv4 addresses (a spare NIC) still exist.
    for link in _ip_json("link", "show"):
        addresses.setdefault(str(link.get("ifname", "")), ())
    routes: list[IPv4Network] = []
    default_interface = None
    for route in _ip_json("-4", "route", "show"):
        dst = str(route.get("dst", ""))
        if dst == "default":
            default_interface = default_interface or str(route.get("dev", "")) or None
            continue
        if route.get("dev") in OWN_INTERFACES:
            continue
        try:
            routes.append(IPv4Network(dst, strict=False))
        except ValueError:
            continue
    return HostNetwork(addresses, tuple(routes), default_interface)
