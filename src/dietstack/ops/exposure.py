"""What a probe of this node should find open: the ports DietStack's containers
listen on, at the host addresses an instance or a LAN device can route to, and
which of them the cloud's users may reach.

`dietstack verify` probes those targets from an instance; the tests and the
benchmark also from a network namespace that stands for a stranger on the LAN
(tests/integration/stranger.py). `forbidden` names each answer that should not
have come.

An instance's traffic routed on through this host leaves with the host's
address, so from an instance's point of view the other nodes and the NAS are
targets too (`instance_addresses`): they trust that address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass

from dietstack import services
from dietstack.engine import preflight
from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.hosts import hostnet
from dietstack.hosts.runtime import DockerRuntime
from dietstack.model import USERS, Port
from dietstack.render import Env
from dietstack.services import firewall


@dataclass(frozen=True)
class Target:
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Target | None:
        """ADDRESS:PORT as __str__ writes it; None for anything else."""
        address, _, port = text.strip().rpartition(":")
        return cls(address, int(port)) if address and port.isdigit() else None


def listening(runtime: DockerRuntime) -> dict[int, str]:
    """TCP port -> the DietStack container listening on it (on any address)."""
    found: dict[int, str] = {}
    for name in sorted(runtime.containers(LABEL_CONTAINER)):
        for port in preflight.listening_ports(runtime.pids(name)):
            found.setdefault(port, name)
    return found


def declared(env: Env) -> dict[int, Port]:
    """TCP port -> its declaration, for every port of every range."""
    return {
        number: port
        for port in services.declared_ports(env)
        if port.protocol == "tcp"
        for number in port.numbers
    }


def host_addresses(network: hostnet.HostNetwork) -> list[str]:
    """Every IPv4 address of this host that is not loopback (others can route to them)."""
    return sorted(
        {
            str(address.ip)
            for addresses in network.addresses.values()
            for address in addresses
            if not address.ip.is_loopback
        }
    )


def node_addresses(env: Env) -> list[str]:
    """Every node's IPv4 addresses (management and tunnel), this host's included."""
    return sorted({ip for ip in env.node_ips if ipaddress.ip_address(ip).version == 4})


def nas_addresses(env: Env) -> list[str]:
    """The IPv4 addresses of the NAS named by nfs_share, resolved as this host does
    (none when the control node serves the share, or the name does not resolve)."""
    host = firewall.nas_host(env)
    if not host:
        return []
    try:
        found = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return []
    return sorted({str(address[4][0]) for address in found})


def instance_addresses(env: Env, network: hostnet.HostNetwork) -> list[str]:
    """Where an instance's probe aims: this host's addresses, every node's, and the
    NAS's; each must refuse it but on the user ports (the NAS on every port)."""
    found = set(host_addresses(network)) | set(node_addresses(env)) | set(nas_addresses(env))
    return sorted(found)


def targets(env: Env, listening_ports: dict[int, str], addresses: list[str]) -> list[Target]:
    """Every listening port, and the first port of each declared range (opened on
    demand, e.g. VNC), at every address."""
    ports = set(listening_ports)
    ports.update(port.number for port in services.declared_ports(env) if port.protocol == "tcp")
    return [Target(address, port) for address in addresses for port in sorted(ports)]


def user_ports(env: Env) -> set[int]:
    return {number for number, port in declared(env).items() if port.audience == USERS}


def forbidden(
    env: Env,
    answered: list[Target],
    listening_ports: dict[int, str],
    nas: Collection[str] = (),
) -> list[str]:
    """Each answer from a port the cloud's users may not reach, with its owner; and
    from an instance's point of view, each answer of the NAS (addresses in `nas`)."""
    ports = declared(env)
    problems = []
    for target in sorted(answered, key=lambda t: (t.port, t.address)):
        if target.address in nas:
            problems.append(f"{target} (the NAS of nfs_share, which trusts this host's address)")
            continue
        port = ports.get(target.port)
        if port is not None and port.audience == USERS:
            continue
        if port is None:
            owner = listening_ports.get(target.port, "no DietStack container")
            problems.append(f"{target} ({owner}, a port no service declares)")
        else:
            problems.append(f"{target} ({port.purpose}; only for: {port.audience})")
    return problems
