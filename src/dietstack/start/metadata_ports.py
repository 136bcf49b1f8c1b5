"""Neutron's OVN metadata agent, before it starts: its old veths' ports leave br-int.

The agent's namespaces are mounts in its container's own mount namespace and end
with the container, and their veths end with them; the ports the agent added to
br-int for those veths stay in Open vSwitch's database. Provisioning a network
again, the agent makes a new veth of the same name, finds the port already there
and keeps it; Open vSwitch's userspace datapath (what runs where the kernel module
is missing) does not open the new device behind the old row, so the guests on that
network get no metadata (seen after an upgrade replaced the agent's container, and
after a power loss). With the rows removed first, the agent adds them anew.

A guest's own port is left alone: os-vif sets vm-uuid on it, the agent never does.

Runs on the OpenStack image's Python: ovsdbapp is a dependency of Neutron.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

DB = "unix:/run/openvswitch/db.sock"
BRIDGE = "br-int"
#: Two seconds apart: a minute for Open vSwitch's database to answer.
ATTEMPTS = 30


def is_metadata_veth(name: str, external_ids: Mapping[str, str]) -> bool:
    """The agent's side of a metadata veth: "tap" + a network id's start, with the
    metadata port as iface-id and nothing of a guest's."""
    return name.startswith("tap") and "iface-id" in external_ids and "vm-uuid" not in external_ids


def remove_stale_ports(api: Any) -> list[str]:
    interfaces = api.tables["Interface"].rows.values()
    stale = sorted(row.name for row in interfaces if is_metadata_veth(row.name, row.external_ids))
    if stale:
        with api.transaction(check_error=True) as txn:
            for name in stale:
                txn.add(api.del_port(name, bridge=BRIDGE, if_exists=True))
    return stale


def connect() -> Any:
    from ovsdbapp.backend.ovs_idl import connection
    from ovsdbapp.schema.open_vswitch import impl_idl

    idl = connection.OvsdbIdl.from_server(DB, "Open_vSwitch")
    return impl_idl.OvsdbIdl(connection.Connection(idl, timeout=30))


def main() -> None:
    # After a power loss every container starts at once: Open vSwitch's database may
    # answer a little after this container starts.
    for _ in range(ATTEMPTS):
        try:
            removed = remove_stale_ports(connect())
            break
        except Exception as exc:  # whatever the database connection raised
            error = exc
            time.sleep(2)
    else:
        # The agent starts all the same: without this cleanup it serves what it can.
        print(f"dietstack-start: Open vSwitch's database did not answer: {error}")
        return
    for name in removed:
        print(f"dietstack-start: removed {name} from {BRIDGE}: the agent makes it anew")


if __name__ == "__main__":
    main()
