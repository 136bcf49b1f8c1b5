"""Evacuating a gone node: refused while its nova-compute reports, volume-booted
instances rebuilt elsewhere, image-booted ones only when asked, failures named."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from dietstack.errors import DietStackError
from dietstack.ops import evacuate
from dietstack.progress import Progress


@dataclass
class FakeNova:
    """Nova as openstacksdk shows it: node-a is the gone node unless `a_state` says."""

    by_id: dict[str, SimpleNamespace]
    a_state: str = "down"
    others: tuple[str, ...] = ("node-b",)
    fails: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def services(self, **query: Any) -> list[SimpleNamespace]:
        found = [
            SimpleNamespace(
                host="node-a", status="enabled", state=self.a_state, is_forced_down=False
            )
        ] + [
            SimpleNamespace(host=host, status="enabled", state="up", is_forced_down=False)
            for host in self.others
        ]
        return [s for s in found if query.get("host") in (None, s.host)]

    def update_service_forced_down(self, service: Any, forced: bool) -> None:
        self.calls.append(("forced-down", service.host))

    def disable_service(self, service: Any, disabled_reason: str) -> None:
        self.calls.append(("disable", service.host))

    def servers(self, all_projects: bool, compute_host: str) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(**vars(s))
            for s in self.by_id.values()
            if s.compute_host == compute_host
        ]

    def evacuate_server(self, server: Any) -> None:
        self.calls.append(("evacuate", server.name))
        current = self.by_id[server.id]
        if server.name in self.fails:
            current.status = "ERROR"
            current.fault = {"message": "No valid host was found."}
        else:
            current.compute_host = "node-b"
            # Compute API 2.95 and later: an evacuated instance is left stopped.
            current.status = "SHUTOFF"

    def start_server(self, server: Any) -> None:
        self.calls.append(("start", server.name))
        self.by_id[server.id].status = "ACTIVE"

    def get_server(self, server_id: str) -> SimpleNamespace:
        return SimpleNamespace(**vars(self.by_id[server_id]))


def server(name: str, image: Any, status: str = "ACTIVE") -> SimpleNamespace:
    return SimpleNamespace(
        id=f"id-{name}",
        name=name,
        image=image,
        status=status,
        task_state=None,
        compute_host="node-a",
        fault=None,
    )


def nova(*servers: SimpleNamespace, **kwargs: Any) -> FakeNova:
    return FakeNova({s.id: s for s in servers}, **kwargs)


def run(compute: FakeNova, rebuild_local: bool = False) -> tuple[list[Any], list[Any]]:
    conn = SimpleNamespace(compute=compute)
    return evacuate.evacuate(conn, "node-a", rebuild_local, Progress(total=0, stream=io.StringIO()))


def test_a_node_whose_nova_compute_reports_is_not_evacuated() -> None:
    compute = nova(server("db", {"id": ""}), a_state="up")
    with pytest.raises(DietStackError) as refused:
        run(compute)
    assert "still reports" in refused.value.message and "node drain" in refused.value.hint
    assert compute.calls == []


def test_volume_booted_instances_are_rebuilt_and_image_booted_ones_named() -> None:
    compute = nova(server("db", ""), server("web", {"id": "img-1"}))
    done, left = run(compute)
    assert [(item.name, item.target) for item in done] == [("db", "node-b")]
    assert [item.name for item in left] == ["web"] and "--rebuild-local" in left[0].reason
    assert compute.calls[:2] == [("forced-down", "node-a"), ("disable", "node-a")]
    assert ("evacuate", "web") not in compute.calls


def test_rebuild_local_rebuilds_image_booted_instances_from_their_image() -> None:
    compute = nova(server("web", {"id": "img-1"}), server("off", "", "SHUTOFF"))
    done, left = run(compute, True)
    assert sorted(item.name for item in done) == ["off", "web"] and left == []
    # What ran runs again; what was stopped stays stopped.
    assert ("start", "web") in compute.calls and ("start", "off") not in compute.calls
    assert {s.name: s.status for s in compute.by_id.values()} == {"web": "ACTIVE", "off": "SHUTOFF"}


def test_an_evacuation_that_fails_is_named_with_novas_fault() -> None:
    done, left = run(nova(server("db", ""), fails={"db"}))
    assert done == [] and "No valid host" in left[0].reason


def test_nothing_changes_when_no_other_node_can_take_them() -> None:
    compute = nova(server("db", ""), others=())
    with pytest.raises(DietStackError, match="no other node"):
        run(compute)
    assert compute.calls == []


def test_an_instance_in_the_middle_of_a_task_is_left() -> None:
    done, left = run(nova(server("busy", "", "BUILD")))
    assert done == [] and "BUILD" in left[0].reason


def test_undrain_of_a_node_back_from_the_dead_lifts_forced_down() -> None:
    from dietstack.ops import drain

    calls: list[str] = []
    service = SimpleNamespace(host="node-a", is_forced_down=True)
    compute = SimpleNamespace(
        services=lambda **query: [service],
        update_service_forced_down=lambda s, forced: calls.append(f"forced={forced}"),
        enable_service=lambda s: calls.append("enable"),
    )
    drain.undrain(SimpleNamespace(compute=compute), "node-a")
    assert calls == ["forced=False", "enable"]
