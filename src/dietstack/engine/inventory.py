"""The cloud's nodes: this control node plus those listed in nodes.yaml.

The file sits beside the settings and is the truth about the other nodes;
`dietstack node add` and `node remove` write it:

    - name: compute-1              # its host name: Nova's and OVN's name for it
      management_ip: 192.168.1.21  # where the control node reaches it
      roles: [compute]
      ssh: {host: 192.168.1.21, user: root, port: 22, identity: ""}
      tunnel_interface: ""         # a spare NIC for Geneve, or empty
      facts: {ovs_datapath: system, hypervisor: kvm, tunnel_ip: 192.168.1.21, mtu: "1500"}

A node's name is its identity, taken at `node add` (with its SSH host key, pinned
in known_hosts beside this file): a node that later answers with another host name
is refused, since its name picks the secrets it is given.

This node is always the first node (render.Env.nodes) and is not listed. Every
node-only port of the firewall and the NFS export admit exactly the nodes'
addresses, so adding a node here admits it everywhere at once. Without the file
the inventory is this node alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from dietstack.errors import DietStackError
from dietstack.hosts.files import write_atomic
from dietstack.hosts.sshhost import SshTarget
from dietstack.model import COMPUTE

FILE_NAME = "nodes.yaml"
ROLES = (COMPUTE,)
KEYS = ("name", "management_ip", "roles", "ssh", "tunnel_interface", "facts")
SSH_KEYS = ("host", "user", "port", "identity")


def path_for(settings_path: Path) -> Path:
    return settings_path.parent / FILE_NAME


def _problems(index: int, item: object, this_ip: str, seen: set[str]) -> list[str]:
    where = f"node {index + 1}"
    if not isinstance(item, dict):
        return [f"{where}: expected a mapping with name, management_ip and roles"]
    problems = []
    name = item.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: `name` must be the node's host name")
    elif name in seen:
        problems.append(f"{where}: the name {name!r} is listed twice")
    else:
        seen.add(name)
        where = f"node {name!r}"
    address = str(item.get("management_ip", ""))
    try:
        ipaddress.ip_address(address)
    except ValueError:
        problems.append(f"{where}: management_ip {address!r} is not an IP address")
    if address == this_ip:
        problems.append(f"{where}: management_ip {address} is this control node's own address")
    roles = item.get("roles", list(ROLES))
    if not isinstance(roles, list) or not set(map(str, roles)) <= set(ROLES):
        problems.append(f"{where}: roles must be a list of {', '.join(ROLES)}; got {roles!r}")
    ssh = item.get("ssh", {})
    if not isinstance(ssh, dict) or not set(ssh) <= set(SSH_KEYS):
        problems.append(f"{where}: ssh must be a mapping of {', '.join(SSH_KEYS)}")
    elif not str(ssh.get("port", 22)).isdigit():
        problems.append(f"{where}: ssh port {ssh.get('port')!r} is not a number")
    if not isinstance(item.get("facts", {}), dict):
        problems.append(f"{where}: facts must be a mapping (deploy writes it)")
    unknown = set(item) - set(KEYS)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return problems


def load(path: Path, this_ip: str) -> tuple[NodeRecord, ...]:
    """The other nodes, checked; every problem is reported at once."""
    if not path.exists():
        return ()
    try:
        data = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as exc:
        raise DietStackError(
            f"{path} is not valid YAML: {exc}", hint="fix the file or remove it"
        ) from None
    if not isinstance(data, list):
        raise DietStackError(f"{path}: expected a list of nodes", hint="see `dietstack --help`")
    seen: set[str] = set()
    problems = [p for i, item in enumerate(data) for p in _problems(i, item, this_ip, seen)]
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise DietStackError(
            f"{path} has invalid entries; nothing was changed:\n{listing}",
            hint="fix the entries named above and run the command again",
        )
    return tuple(NodeRecord.from_dict(item) for item in data)


def save(path: Path, nodes: Iterable[NodeRecord]) -> None:
    """Write the inventory atomically (it holds no secrets)."""
    header = "# The cloud's nodes besides this one; `dietstack node add/remove` write it.\n"
    text = header + yaml.safe_dump([node.as_dict() for node in nodes], sort_keys=False)
    write_atomic(path, text, 0o644)


@dataclass(frozen=True)
class NodeRecord:
    """One compute node, as the inventory keeps it: how it is reached, the identity it
    joined with (its name, pinned with its SSH host key at `node add`) and the facts
    its last deploy found. A value: a changed node is a new record."""

    name: str
    management_ip: str
    ssh: SshTarget
    roles: tuple[str, ...] = ROLES
    #: A spare NIC of the node for Geneve tunnels, or empty.
    tunnel_interface: str = ""
    facts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> NodeRecord:
        ssh = dict(item.get("ssh") or {})
        return cls(
            name=str(item["name"]),
            management_ip=str(item["management_ip"]),
            ssh=SshTarget(
                host=str(ssh.get("host") or item["management_ip"]),
                user=str(ssh.get("user") or "root"),
                port=int(ssh.get("port") or 22),
                identity=str(ssh.get("identity") or ""),
            ),
            roles=tuple(str(role) for role in item.get("roles", ROLES)),
            tunnel_interface=str(item.get("tunnel_interface") or ""),
            facts=MappingProxyType({str(k): str(v) for k, v in (item.get("facts") or {}).items()}),
        )

    def as_dict(self) -> dict[str, Any]:
        """The record as nodes.yaml holds it."""
        return {
            "name": self.name,
            "management_ip": self.management_ip,
            "roles": list(self.roles),
            "ssh": self.ssh.as_dict() | {"host": self.ssh.host},
            "tunnel_interface": self.tunnel_interface,
            "facts": dict(self.facts),
        }

    def with_facts(self, found: Mapping[str, str]) -> NodeRecord:
        return replace(self, facts=MappingProxyType(dict(found)))

    def rendered(self) -> dict[str, Any]:
        """What the containers see of a node: its name, roles and addresses."""
        return {
            "name": self.name,
            "management_ip": self.management_ip,
            "roles": list(self.roles),
            "tunnel_ip": str(self.facts.get("tunnel_ip") or self.management_ip),
            "mtu": str(self.facts.get("mtu") or ""),
        }

    def own_settings(self) -> dict[str, Any]:
        """The settings that are the node's own, over the cloud's."""
        return {
            "management_ip": self.management_ip,
            "management_interface": self.facts.get("management_interface", ""),
            # br-ex and floating IPs live on the control node only.
            "external_interface": "",
            "tunnel_interface": self.tunnel_interface,
        }


def named(records: Iterable[NodeRecord], name: str) -> NodeRecord:
    """The node of that name, or an error listing the nodes there are."""
    listed = tuple(records)
    for record in listed:
        if record.name == name:
            return record
    names = ", ".join(r.name for r in listed) or "none yet"
    raise DietStackError(
        f"there is no node {name!r} (nodes: {names})", hint="`dietstack node list` shows them"
    )
