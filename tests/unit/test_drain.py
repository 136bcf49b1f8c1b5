"""Draining a node: what moves how, what stays and why, and when nothing is changed."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from dietstack.errors import DietStackError
from dietstack.ops import drain
from dietstack.ops.icmp import PingWatch
from dietstack.progress import Progress


@dataclass
class FakeCompute:
    """Nova as openstacksdk shows it; a move ends as `outcome` says."""

    by_id: dict[str, SimpleNamespace]
    hosts: tuple[str, ...] = ("node-a", "node-b")
    outcome: str = "completed"
    calls: list[tuple[str, str]] = field(default_factory=list)
    migrations_of: dict[str, list[SimpleNamespace]] = field(default_factory=dict)

    def services(self, **query: Any) -> list[SimpleNamespace]:
        found = [
            SimpleNamespace(host=host, status="enabled", state="up", binary="nova-compute")
            for host in self.hosts
        ]
        return [s for s in found if query.get("host") in (None, s.host)]

    def disable_service(self, service: Any, disabled_reason: str) -> None:
        self.calls.append(("disable", service.host))

    def enable_service(self, service: Any) -> None:
        self.calls.append(("enable", service.host))

    def _migrate(self, server: Any, status_after: str) -> None:
        current = self.by_id[server.id]
        record = SimpleNamespace(id=len(self.calls), status=self.outcome, dest_compute="node-b")
        self.migrations_of.setdefault(server.id, []).append(record)
        if self.outcome == "completed":
            current.compute_host = "node-b"
            current.status = status_after

    def live_migrate_server(self, server: Any, host: Any, block_migration: str) -> None:
        self.calls.append(("live", server.name))
        self._migrate(server, server.status)

    def migrate_server(self, server: Any) -> None:
        self.calls.append(("cold", server.name))
        self._migrate(server, "VERIFY_RESIZE")

    def confirm_server_resize(self, server: Any) -> None:
        self.calls.append(("confirm", server.name))
        self.by_id[server.id].status = "SHUTOFF"

    def servers(self, all_projects: bool, compute_host: str) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(**vars(s))
            for s in self.by_id.values()
            if s.compute_host == compute_host
        ]

    def get_server(self, server_id: str) -> SimpleNamespace:
        return SimpleNamespace(**vars(self.by_id[server_id]))

    def migrations(self, instance_uuid: str) -> list[SimpleNamespace]:
        return list(self.migrations_of.get(instance_uuid, []))

    def server_actions(self, server: Any) -> list[SimpleNamespace]:
        return [SimpleNamespace(request_id="req-1", start_time="2026-12-01")]

    def get_server_action(self, request_id: str, server: Any) -> SimpleNamespace:
        event = {"event": "live_migration", "result": "Error", "traceback": "x\nMigrationError: no"}
        return SimpleNamespace(events=[event])


def server(name: str, status: str) -> SimpleNamespace:
    return SimpleNamespace(
        id=f"id-{name}", name=name, status=status, task_state=None, compute_host="node-a", fault={}
    )


def conn_with(*servers: SimpleNamespace, **options: Any) -> SimpleNamespace:
    return SimpleNamespace(compute=FakeCompute({s.id: s for s in servers}, **options))


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain, "POLL_SECONDS", 0)


def run_drain(conn: Any) -> tuple[list[drain.Moved], list[drain.Stuck]]:
    return drain.drain(conn, "node-a", Progress(total=0, stream=io.StringIO()))


def test_running_instances_move_live_and_stopped_ones_cold() -> None:
    conn = conn_with(server("web", "ACTIVE"), server("db", "SHUTOFF"), server("p", "PAUSED"))
    moved, stuck = run_drain(conn)
    assert stuck == []
    assert [(m.name, m.how, m.target) for m in moved] == [
        ("web", "live", "node-b"),
        ("db", "cold", "node-b"),
        ("p", "live", "node-b"),
    ]
    assert conn.compute.calls[0] == ("disable", "node-a")
    assert ("confirm", "db") in conn.compute.calls
    assert conn.compute.by_id["id-db"].status == "SHUTOFF"


def test_a_failed_migration_is_named_with_novas_reason() -> None:
    conn = conn_with(server("web", "ACTIVE"), outcome="error")
    moved, stuck = run_drain(conn)
    assert moved == []
    (only,) = stuck
    assert only.name == "web"
    assert "migration to node-b error" in only.reason and "MigrationError: no" in only.reason


def test_instances_in_error_stay_with_the_reason() -> None:
    moved, stuck = run_drain(conn_with(server("broken", "ERROR")))
    assert moved == [] and "it is ERROR" in stuck[0].reason


def test_without_another_node_nothing_is_changed() -> None:
    conn = conn_with(server("web", "ACTIVE"), hosts=("node-a",))
    with pytest.raises(DietStackError, match="no other node"):
        run_drain(conn)
    assert conn.compute.calls == []


def test_undrain_enables_the_service() -> None:
    conn = conn_with()
    drain.undrain(conn, "node-a")
    assert conn.compute.calls == [("enable", "node-a")]


def test_ping_gap_counts_silences_anywhere() -> None:
    watch = PingWatch("192.0.2.1")
    watch.answers = [(0.0, True), (0.2, True), (0.4, False), (1.4, True), (1.6, True)]
    assert watch.longest_gap() == pytest.approx(1.2)
    watch.answers = [(0.0, False), (1.0, False), (2.0, True), (2.2, True)]
    assert watch.longest_gap() == pytest.approx(2.0)
    watch.answers = [(0.0, True), (0.2, True), (3.0, False)]
    assert watch.longest_gap() == pytest.approx(2.8)
