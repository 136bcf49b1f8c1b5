"""`node add` and `node remove` take their steps in an order that never leaves a node
half-admitted: checked before anything changes, in the inventory before the control
node's firewall and the queue admit it, started before it is waited on; forgotten by
Nova before the firewall closes, its credentials gone before the other nodes update."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dietstack.apis import cloudapi
from dietstack.app import cloud as clouds
from dietstack.app import nodes
from dietstack.app.cloud import Cloud
from dietstack.engine import deploy, inventory, secrets
from dietstack.engine.deployment import Deployment
from dietstack.engine.inventory import NodeRecord
from dietstack.errors import DietStackError
from dietstack.hosts.hostnet import HostNetwork
from dietstack.hosts.runtime import DockerRuntime
from dietstack.hosts.sshhost import SshTarget
from dietstack.progress import Progress

from .fakes import FakeHost
from .helpers import a_control_cloud


class NewNode(FakeHost):
    """A machine answering to its name and routing to the control node over eth0."""

    def __init__(self, name: str, address: str) -> None:
        super().__init__({"hostname": (0, f"{name}\n")})
        self.name, self.address = name, address

    def call(self, command: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        if command[:5] == ["ip", "-json", "-4", "route", "get"]:
            self.commands.append(command)
            return 0, json.dumps([{"dev": "eth0", "prefsrc": self.address}])
        return super().call(command, stdin)

    def docker_url(self) -> str:
        return "unix:///run/compute-2-docker.sock"


@pytest.fixture()
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every step of a node's lifecycle, recorded in the order it is taken."""
    taken: list[str] = []

    def apply(deployment: Deployment) -> None:
        taken.append(f"apply {deployment.node}")

    def prepare(
        cloud: Cloud, record: NodeRecord, progress: Progress, probe: bool = True
    ) -> tuple[Deployment, NodeRecord]:
        taken.append(f"prepare {record.name}")
        facts = {**cloud.control.facts, "node_name": record.name}
        return replace(cloud.control, facts=facts), record

    def note(step: str, result: Any = None) -> Any:
        def record(*args: object, **kwargs: object) -> Any:
            taken.append(step)
            return result

        return record

    monkeypatch.setattr(deploy, "apply", apply)
    monkeypatch.setattr(nodes, "prepare", prepare)
    monkeypatch.setattr(nodes, "pin_host_key", note("pin host key", True))
    monkeypatch.setattr(nodes, "check_node", note("check", ([], [])))
    monkeypatch.setattr(nodes, "ensure_docker_on", note("docker"))
    monkeypatch.setattr(nodes, "ship_images", note("ship images", (0, 0.0)))
    monkeypatch.setattr(nodes, "admit_to_the_queue", note("queue"))
    monkeypatch.setattr(nodes, "wait_ready", note("wait ready"))
    monkeypatch.setattr(nodes, "require_images", note("images here"))
    monkeypatch.setattr(secrets, "ensure_node_certificates", note("certificates", {}))
    monkeypatch.setattr(secrets, "forget_node", note("forget credentials", {}))
    monkeypatch.setattr(nodes, "_delete_instances", note("instances"))
    monkeypatch.setattr(nodes, "destroy", note("remove containers", "removed 8 container(s)"))
    monkeypatch.setattr(nodes, "_forget", note("Nova, Placement and OVN forget it"))

    def saved(self: Cloud, records: tuple[NodeRecord, ...]) -> Cloud:
        taken.append(f"inventory: {', '.join(r.name for r in records)}")
        return self.with_records(records)

    monkeypatch.setattr(Cloud, "saved", saved)
    monkeypatch.setattr(DockerRuntime, "connect", staticmethod(lambda url, name: object()))
    return taken


def a_cloud(host: HostNetwork, tmp_path: Path, *records: NodeRecord) -> Cloud:
    names = ["node1", "compute-1", "compute-2"]
    return a_control_cloud(host, tmp_path, records, secrets.names(names))


def existing_node(name: str, address: str) -> NodeRecord:
    return NodeRecord(name, address, SshTarget(address), facts={"tunnel_ip": address})


def test_node_add_checks_then_admits_then_starts_then_waits(
    host: HostNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: list[str]
) -> None:
    cloud = a_cloud(host, tmp_path, existing_node("compute-1", "192.168.1.21"))
    monkeypatch.setattr(clouds, "SshHost", lambda *args: NewNode("compute-2", "192.168.1.22"))
    node = nodes.add(cloud, SshTarget("192.168.1.22"), "", Progress(total=0))
    assert node.node == "compute-2"
    assert steps == [
        "images here",
        "pin host key",
        "check",
        "docker",
        "ship images",
        "inventory: compute-1, compute-2",
        "certificates",
        "apply node1",
        "queue",
        "prepare compute-2",
        "inventory: compute-1, compute-2",
        "apply compute-2",
        "prepare compute-1",
        "apply compute-1",
        "wait ready",
    ]


def test_node_add_that_fails_its_checks_changes_nothing(
    host: HostNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: list[str]
) -> None:
    cloud = a_cloud(host, tmp_path)
    monkeypatch.setattr(clouds, "SshHost", lambda *args: NewNode("compute-2", "192.168.1.22"))
    monkeypatch.setattr(nodes, "check_node", lambda *args: (["no /dev/net/tun"], []))
    with pytest.raises(DietStackError, match="nothing was changed"):
        nodes.add(cloud, SshTarget("192.168.1.22"), "", Progress(total=0))
    assert steps == ["images here", "pin host key"]
    assert not cloud.inputs.inventory_path.exists()


def test_node_remove_forgets_then_closes_then_updates_the_others(
    host: HostNetwork, tmp_path: Path, steps: list[str]
) -> None:
    cloud = a_cloud(
        host,
        tmp_path,
        existing_node("compute-1", "192.168.1.21"),
        existing_node("compute-2", "192.168.1.22"),
    )
    after = nodes.remove(cloud, "compute-1", False, Progress(total=0))
    assert [r.name for r in after.records] == ["compute-2"]
    assert [r.name for r in cloud.records] == ["compute-1", "compute-2"], "a value, unchanged"
    assert steps == [
        "images here",
        "instances",
        "remove containers",
        "Nova, Placement and OVN forget it",
        "inventory: compute-2",
        # Its certificate is revoked before any libvirt is brought up to date.
        "forget credentials",
        "apply node1",
        "queue",
        "prepare compute-2",
        "apply compute-2",
    ]
    assert not inventory.path_for(cloud.config_path).exists()


def test_node_remove_gone_never_reaches_the_node_and_still_revokes_it(
    host: HostNetwork, tmp_path: Path, steps: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = a_cloud(host, tmp_path, existing_node("compute-1", "192.168.1.21"))
    monkeypatch.setattr(nodes, "check_identity", _unreachable)
    monkeypatch.setattr(cloudapi, "admin", lambda env: object())
    monkeypatch.setattr(cloudapi, "compute_service", lambda conn, name: None)
    nodes.remove(cloud, "compute-1", False, Progress(total=0), gone=True)
    assert "remove containers" not in steps
    assert steps.index("Nova, Placement and OVN forget it") < steps.index("forget credentials")


def _unreachable(target: object, record: NodeRecord) -> None:
    raise DietStackError(f"cannot reach {record.name} over SSH")


def test_a_node_that_answers_as_itself_is_not_taken_for_gone(
    host: HostNetwork, tmp_path: Path, steps: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = a_cloud(host, tmp_path, existing_node("compute-1", "192.168.1.21"))
    monkeypatch.setattr(nodes, "check_identity", lambda target, record: None)
    with pytest.raises(DietStackError, match="still answers over SSH as itself"):
        nodes.remove(cloud, "compute-1", False, Progress(total=0), gone=True)
    with pytest.raises(DietStackError, match="is the control node"):
        nodes.require_unreachable(cloud, cloud.control.node)
    assert steps == ["images here"], "nothing changed"
