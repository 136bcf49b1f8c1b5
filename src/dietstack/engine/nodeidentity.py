"""Which machine a compute node is, and the checks that refuse any other.

A node is the host name it had at `node add`, and the SSH host keys it showed
then: sshhost.pin_host_key pins them in the cloud's known_hosts, and ssh accepts
no other key for the node from then on. The name picks the node's role and its
certificate, so whatever answers to it is given that node's secrets:

- every later connection asks the node for its host name and checks it against
  the inventory (check_identity); a node reporting another name is refused before
  anything is sent to it, and deploy renders with the name it joined as;
- `node add` refuses a second machine with a name already in the inventory (a
  cloned machine keeps its original's host name), the control node's name, or
  another node's management address (identity_problems);
- `node add` refuses a node the control node would reach from another address
  than its management address, the only one the nodes' firewalls admit
  (route_problems).
"""

from __future__ import annotations

from collections.abc import Iterable

from dietstack.engine.deploy import Deployment
from dietstack.engine.inventory import NodeRecord
from dietstack.errors import DietStackError
from dietstack.hosts import facts, hostio


class NodeRenamed(DietStackError):
    """A node answers with another host name than the one it joined as."""


def reported_name(host: hostio.Host) -> str:
    """The host name the node answers with now."""
    return hostio.run(host, ["hostname"], "reading the host name", "check the node").strip()


def check_identity(host: hostio.Host, record: NodeRecord) -> None:
    """A node is the name it joined as. Its name picks its role and its certificate,
    so a node answering with the control node's name (or another node's) would be
    given their secrets: it is refused before anything is sent to it."""
    name, reported = record.name, reported_name(host)
    if reported == name:
        return
    raise NodeRenamed(
        f"{name} ({record.management_ip}) now reports host name {reported!r} but joined "
        f"as {name!r}; nothing was sent to it",
        hint=f"set its host name back (`hostnamectl set-hostname {name}`); if the rename was "
        f"intended: `dietstack node remove {name}`, then `dietstack node add "
        f"{record.ssh.host}`",
    )


def _same_machine(one: NodeRecord, other: NodeRecord) -> bool:
    """A node added again: it answers at the same management or SSH address."""
    return one.management_ip == other.management_ip or one.ssh.host == other.ssh.host


def identity_problems(
    control: Deployment, record: NodeRecord, records: Iterable[NodeRecord]
) -> list[str]:
    """The node's name and address are its own: Nova and OVN know nodes by name, and
    its secrets are those of the node its name picks."""
    name, address = record.name, record.management_ip
    problems = []
    if name == control.node:
        problems.append(
            f"the node's host name {name!r} is the control node's; give it its own host "
            "name (Nova and OVN know nodes by it)"
        )
    for other in records:
        if other.name == name and not _same_machine(other, record):
            # A cloned machine keeps its original's host name.
            problems.append(
                f"this machine ({address}) has the host name {name!r} of node {name} "
                f"({other.management_ip}), another machine; give this one its own host "
                "name (`hostnamectl set-hostname NAME`), or if it replaces that node, "
                f"`dietstack node remove {name}` first"
            )
        elif other.name != name and other.management_ip == address:
            problems.append(f"management address {address} is already node {other.name!r}")
    return problems


def route_problems(control: Deployment, record: NodeRecord) -> list[str]:
    """The nodes' firewalls admit the control node by its management address alone, so
    what it sends a node (libvirt's migrations, for one) must leave from that address."""
    address, own = record.management_ip, str(control.settings.management_ip)
    interface, source = facts.route_to(control.host, address)
    if not interface:
        return [
            f"this control node has no route to the node's address {address}; connect the "
            "node to the management network"
        ]
    if source == own:
        return []
    return [
        f"this control node reaches the node's address {address} from {source or 'no address'} "
        f"(through {interface}), not from its management address {own}, the only one the "
        "nodes' firewalls admit; put the node on the management network, or route it from "
        f"that address (`ip route replace NETWORK via GATEWAY src {own}`)"
    ]
