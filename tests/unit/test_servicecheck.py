"""A Nova daemon serves once it has reported since its container started."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from dietstack.apis import cloudapi, cloudrest
from dietstack.engine import servicecheck
from dietstack.engine.servicecheck import rows
from dietstack.errors import DietStackError
from dietstack.hosts.dockerdata import ContainerState, parse_time

from .helpers import make_env


def container(name: str, started_at: str) -> ContainerState:
    return ContainerState(name, "running", "healthy", {}, 0, started_at)


def service(binary: str, updated_at: str, state: str = "up", host: str = "node1") -> dict[str, str]:
    return {"binary": binary, "host": host, "state": state, "updated_at": updated_at}


STARTED = "2026-11-25T20:35:40.123456789Z"
NOVA = ("nova-conductor", "nova-scheduler", "nova-compute")


def test_times_from_docker_and_nova_compare_in_utc() -> None:
    assert parse_time(STARTED) == datetime(2026, 11, 25, 20, 35, 40, 123456, tzinfo=UTC)
    assert parse_time("2026-11-25T20:36:05.000000") == datetime(2026, 11, 25, 20, 36, 5, tzinfo=UTC)


def test_a_report_from_before_the_start_means_not_serving_yet() -> None:
    containers = {
        name: container(name, STARTED)
        # The scheduler runs in the conductor's container.
        for name in ("nova-conductor", "nova-compute")
    }
    services = [
        service("nova-conductor", "2026-11-25T20:35:50.000000"),
        service("nova-scheduler", "2026-11-25T20:36:01.000000", state="down"),
        # Reported just before the Docker engine went down: still "up" in Nova.
        service("nova-compute", "2026-11-25T20:35:30.000000"),
        service("nova-compute", "2026-11-25T20:36:30.000000", host="node2"),
    ]
    nova = ("nova-conductor", "nova-scheduler", "nova-compute")
    states = {row.name: row.state for row in rows(services, containers, "node1", nova)}
    assert states == {
        "nova-conductor": "serving",
        "nova-scheduler": "down",
        "nova-compute": "starting",
    }


def test_a_daemon_nova_has_never_heard_of_is_missing() -> None:
    containers = {"nova-compute": container("nova-compute", STARTED)}
    states = {row.name: row.state for row in rows([], containers, "node1")}
    assert set(states.values()) == {"missing"}


def test_a_report_from_before_rabbitmq_started_again_does_not_count() -> None:
    """New certificates restart RabbitMQ under a running nova-compute: until it has
    reported through the new broker, it may be taken for down and get no builds."""
    containers = {"nova-compute": container("nova-compute", STARTED)}
    services = [service("nova-compute", "2026-11-25T20:40:00.000000")]
    bus = "2026-11-25T20:41:00.000000000Z"
    assert [row.state for row in rows(services, containers, "node1", ("nova-compute",))] == [
        "serving"
    ]
    found = rows(services, containers, "node1", ("nova-compute",), bus)
    assert [row.state for row in found] == ["starting"]
    later = [service("nova-compute", "2026-11-25T20:41:10.000000")]
    assert [row.state for row in rows(later, containers, "node1", ("nova-compute",), bus)] == [
        "serving"
    ]


def test_cinder_volume_reports_as_host_at_backend_and_shares_its_container() -> None:
    containers = {"cinder-volume": container("cinder-volume", STARTED)}
    services = [
        service("cinder-scheduler", "2026-11-25T20:36:01.000000", host="control"),
        service("cinder-volume", "2026-11-25T20:36:02.000000", state="down", host="control@nfs"),
    ]
    expected = ("cinder-scheduler", "cinder-volume")
    states = {row.name: row.state for row in rows(services, containers, "control", expected)}
    assert states == {"cinder-scheduler": "serving", "cinder-volume": "down"}


def test_heat_engine_reports_its_status_and_runs_in_the_apis_container() -> None:
    """Heat's list says "status" where Nova's says "state"; a stale row of the engine
    that ran before the container started does not hide the new one's report."""
    containers = {"heat-api": container("heat-api", STARTED)}
    old = {"binary": "heat-engine", "host": "control", "status": "down"}
    new = {"binary": "heat-engine", "host": "control", "status": "up"}
    listed = [
        old | {"updated_at": "2026-11-25T20:30:00.000000"},
        new | {"updated_at": "2026-11-25T20:35:41.000000"},
    ]
    assert [row.state for row in rows(listed, containers, "control", ("heat-engine",))] == [
        "serving"
    ]
    stopped = [old | {"updated_at": "2026-11-25T20:36:00.000000"}]
    assert [row.state for row in rows(stopped, containers, "control", ("heat-engine",))] == ["down"]


def test_a_service_list_that_fails_leaves_only_its_own_project_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Heat's list is answered by its engine: a dead engine must not hide Nova's and
    Cinder's daemons, nor be blamed on them."""
    env = make_env()
    monkeypatch.setattr(cloudapi, "admin", lambda env: SimpleNamespace(current_project_id="p"))
    reported = {
        "nova-api": [service(n, "2026-11-25T20:36:00.000000", host=env.node) for n in NOVA],
        "cinder-api": [service("cinder-scheduler", "2026-11-25T20:36:00.000000", host=env.node)],
    }

    def get(conn: object, url: str, api: str) -> dict[str, object]:
        if api not in reported:
            raise DietStackError(f"{api}: timed out")
        return {"services": reported[api]}

    monkeypatch.setattr(cloudrest, "get", get)
    names = servicecheck.expected(env)
    containers = {
        servicecheck.REPORTING[name]: container(servicecheck.REPORTING[name], STARTED)
        for name in names
    }
    states = {row.name: row.state for row in servicecheck.collect(env, env, containers)}
    assert states["heat-engine"] == "unknown"
    assert states["nova-conductor"] == states["cinder-scheduler"] == "serving"
    assert states["cinder-volume"] == "missing"
    assert list(states) == list(names)
