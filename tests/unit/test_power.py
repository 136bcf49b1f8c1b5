"""Stopping and starting the cloud: what is written down, in which order containers
stop, and which instances come back."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openstack.exceptions
import pytest

from dietstack.engine.converge import LABEL_SERVICE
from dietstack.errors import DietStackError
from dietstack.hosts.dockerdata import ContainerState
from dietstack.ops import power

from .helpers import make_env


def state(name: str, service: str, status: str = "running") -> ContainerState:
    return ContainerState(name, status, "healthy", {LABEL_SERVICE: service}, 0)


def test_containers_stop_in_reverse_order_firewall_last() -> None:
    found = {
        s.name: s
        for s in (
            state("firewall", "firewall"),
            state("mariadb", "mariadb"),
            state("keystone", "keystone"),
            state("nova-api", "nova"),
            state("nova-conductor", "nova"),
            state("horizon", "horizon"),
            state("heat-engine", "heat", status="exited"),
        )
    }
    order = power.stop_order(make_env(), found)
    assert order[0] == "horizon" and order[-2:] == ["mariadb", "firewall"]
    assert order.index("nova-conductor") < order.index("nova-api") < order.index("keystone")
    assert "heat-engine" not in order  # already stopped


def test_what_ran_is_kept_across_a_second_stop(tmp_path: Path) -> None:
    power.remember(tmp_path, ["a", "b"])
    power.remember(tmp_path, [])
    power.remember(tmp_path, ["b", "c"])
    assert power.remembered(tmp_path) == ["a", "b", "c"]
    power.forget(tmp_path)
    assert power.remembered(tmp_path) == []


def test_a_damaged_list_is_an_error_with_a_way_out(tmp_path: Path) -> None:
    power.stopped_file(tmp_path).write_text("{")
    with pytest.raises(DietStackError) as raised:
        power.remembered(tmp_path)
    assert "openstack server start" in raised.value.hint


class FakeNova:
    """Servers change status as soon as they are told to."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[str, str]] = []

    def servers(self, all_projects: bool, status: str) -> list[SimpleNamespace]:
        assert all_projects
        return [SimpleNamespace(id=i) for i, s in self.statuses.items() if s == status]

    def get_server(self, ident: str) -> SimpleNamespace:
        if ident not in self.statuses:
            raise openstack.exceptions.NotFoundException()
        return SimpleNamespace(id=ident, status=self.statuses[ident])

    def stop_server(self, ident: str) -> None:
        self.calls.append(("stop", ident))
        self.statuses[ident] = "SHUTOFF"

    def start_server(self, ident: str) -> None:
        self.calls.append(("start", ident))
        self.statuses[ident] = "ACTIVE" if ident != "broken" else "ERROR"


def conn(nova: FakeNova) -> Any:
    return SimpleNamespace(compute=nova)


def test_stop_shuts_down_only_running_instances() -> None:
    nova = FakeNova({"a": "ACTIVE", "b": "SHUTOFF", "c": "ACTIVE"})
    running = power.running_instances(conn(nova))
    assert running == ["a", "c"]
    power.shut_down_instances(conn(nova), running, print)
    assert nova.calls == [("stop", "a"), ("stop", "c")]
    assert set(nova.statuses.values()) == {"SHUTOFF"}


def test_start_brings_back_exactly_what_ran_and_names_what_did_not() -> None:
    nova = FakeNova({"a": "SHUTOFF", "b": "SHUTOFF", "broken": "SHUTOFF", "d": "ACTIVE"})
    problems = power.start_instances(conn(nova), ["a", "broken", "gone", "d"], print)
    assert nova.calls == [("start", "a"), ("start", "broken")]
    assert nova.statuses["b"] == "SHUTOFF"  # it was off before the stop
    assert problems == ["gone (deleted meanwhile)", "broken (ERROR)"]
