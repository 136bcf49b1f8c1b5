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
from pathlib import Path
from typing import Any

import yaml

from dietstack.errors import DietStackError
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


def load(path: Path, this_ip: str) -> list[dict[str, Any]]:
    """The other nodes, checked; every problem is reported at once."""
    if not path.exists():
        return []
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
    return [_normal(item) for item in data]


def _normal(item: dict[str, Any]) -> dict[str, Any]:
    ssh = dict(item.get("ssh") or {})
    return {
        "name": item["name"],
        "management_ip": str(item["management_ip"]),
        "roles": [str(role) for role in item.get("roles", list(ROLES))],
        "ssh": {
            "host": str(ssh.get("host") or item["management_ip"]),
            "user": str(ssh.get("user") or "root"),
            "port": int(ssh.get("port") or 22),
            "identity": str(ssh.get("identity") or ""),
        },
        "tunnel_interface": str(item.get("tunnel_interface") or ""),
        "facts": {str(k): str(v) for k, v in (item.get("facts") or {}).items()},
    }


def save(path: Path, nodes: list[dict[str, Any]]) -> None:
    """Write the inventory atomically (it holds no secrets)."""
    header = "# The cloud's nodes besides this one; `dietstack node add/remove` write it.\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + yaml.safe_dump([_normal(node) for node in nodes], sort_keys=False))
    tmp.replace(path)


def rendered(record: dict[str, Any]) -> dict[str, Any]:
    """What the containers see of a node: its name, roles and addresses."""
    facts = record.get("facts") or {}
    return {
        "name": record["name"],
        "management_ip": record["management_ip"],
        "roles": list(record.get("roles") or ROLES),
        "tunnel_ip": str(facts.get("tunnel_ip") or record["management_ip"]),
        "mtu": str(facts.get("mtu") or ""),
    }
