"""The cloud's nodes: this control node plus those listed in nodes.yaml.

The file sits beside the settings and lists the nodes other than this one:

    - name: compute-1
      management_ip: 192.168.1.21
      roles: [compute]

This node is always the first node (render.Env.nodes) and is not listed. Every
node-only port of the firewall and the NFS export admit exactly the nodes'
management addresses, so adding a node here admits it everywhere at once.
Without the file the inventory is this node alone.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from dietstack.errors import DietStackError

FILE_NAME = "nodes.yaml"
ROLES = ("compute",)


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
    unknown = set(item) - {"name", "management_ip", "roles"}
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
    return [
        {
            "name": item["name"],
            "management_ip": str(item["management_ip"]),
            "roles": [str(role) for role in item.get("roles", list(ROLES))],
        }
        for item in data
    ]
