"""The metadata agent's stale br-int ports: only its own veths go, never a guest's."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from dietstack.start import metadata_ports


class FakeOvs:
    """Open vSwitch's database as ovsdbapp shows it: Interface rows, transactions."""

    def __init__(self, rows: dict[str, dict[str, str]]) -> None:
        interfaces = {
            i: SimpleNamespace(name=name, external_ids=ids)
            for i, (name, ids) in enumerate(rows.items())
        }
        self.tables = {"Interface": SimpleNamespace(rows=interfaces)}
        self.deleted: list[tuple[str, str]] = []

    @contextmanager
    def transaction(self, check_error: bool) -> Any:
        assert check_error
        yield SimpleNamespace(add=lambda command: self.deleted.append(command))

    def del_port(self, name: str, bridge: str, if_exists: bool) -> tuple[str, str]:
        assert if_exists
        return (bridge, name)


def test_only_the_agents_own_veths_leave_br_int() -> None:
    ovs = FakeOvs(
        {
            "tapc80a2940-70": {"iface-id": "41769129-8ed6-4f67-97ac-b98f483f4b6b"},
            "tapcc0b5889-47": {"iface-id": "cc0b5889", "vm-uuid": "7c84ac7d", "attached-mac": "x"},
            "br-int": {},
            "ovn-ds-nod-0": {},
            "patch-br-int-to-provnet-1": {},
        }
    )
    assert metadata_ports.remove_stale_ports(ovs) == ["tapc80a2940-70"]
    assert ovs.deleted == [("br-int", "tapc80a2940-70")]


def test_nothing_stale_writes_nothing() -> None:
    ovs = FakeOvs({"tapcc0b5889-47": {"iface-id": "cc0b5889", "vm-uuid": "7c84ac7d"}})
    assert metadata_ports.remove_stale_ports(ovs) == []
    assert ovs.deleted == []
