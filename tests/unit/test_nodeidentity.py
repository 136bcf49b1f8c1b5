"""A node is the machine it joined as: its name, its host key and its route."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from dietstack.app import cloud as clouds
from dietstack.app import nodedeploy, nodes
from dietstack.app.cloud import Cloud
from dietstack.engine import nodechecks, nodeidentity, secrets
from dietstack.engine.inventory import NodeRecord
from dietstack.errors import DietStackError
from dietstack.hosts import hostio
from dietstack.hosts.hostnet import HostNetwork
from dietstack.hosts.runtime import DockerRuntime
from dietstack.hosts.sshhost import SshTarget
from dietstack.progress import Progress

from .fakes import FakeHost, RoutingHost, fake_ssh, healthy_node
from .helpers import a_control_cloud, control_deployment, record

# --- a node is the name it joined as --------------------------------------------------

COMPUTE_SECRETS = [
    "libvirt_ca_certificate",
    "libvirt_compute-1_certificate",
    "libvirt_compute-1_key",
    "libvirt_crl",
    "metadata_proxy_shared_secret",
    "nova_keystone_password",
    "nova_ssh_host_private_key",
    "nova_ssh_host_public_key",
    "nova_ssh_private_key",
    "nova_ssh_public_key",
    "rabbitmq_compute-1_password",
    "tls_trust",
]


class SshNode(FakeHost):
    """A healthy node over SSH, at `address`, that answers `hostname` with each of
    `names` in turn (the last one from then on), as a node renamed while it is being
    deployed would."""

    def __init__(self, *names: str, address: str = "192.168.1.21") -> None:
        route = [{"dev": "eth0", "prefsrc": address}]
        super().__init__(
            {
                "date +%s.%N": (0, f"{time.time():.3f}\n"),
                "ip -json -4 route get 192.168.1.20": (0, json.dumps(route)),
            },
            {
                "/etc/os-release": 'ID=debian\nPRETTY_NAME="Debian GNU/Linux 13 (trixie)"\n',
                "/proc/meminfo": "MemAvailable:   8000000 kB\n",
            },
        )
        self.names = list(names)

    def call(self, command: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        if command != ["hostname"]:
            return super().call(command, stdin)
        self.commands.append(command)
        return 0, f"{self.names.pop(0) if len(self.names) > 1 else self.names[0]}\n"

    def docker_url(self) -> str:
        return "unix:///run/fake-node-docker.sock"


def joined(name: str, address: str) -> NodeRecord:
    """A node as the inventory lists it once `node add` has taken it."""
    found = {"node_name": name, "ovs_datapath": "system", "hypervisor": "qemu"}
    return NodeRecord(
        name,
        address,
        SshTarget(address),
        facts=found | {"tunnel_ip": address, "mtu": "1500", "management_interface": "eth0"},
    )


def cloud_of(host: HostNetwork, tmp_path: Path, *records: NodeRecord) -> Cloud:
    """node1, the control node, with every secret of the cloud (its nodes' certificates
    too), and the nodes given."""
    names = ["node1", *(r.name for r in records)]
    return a_control_cloud(host, tmp_path, records, secrets.names(names))


def reached_over_ssh(monkeypatch: pytest.MonkeyPatch, node: SshNode) -> list[str]:
    """SSH and Docker connections reach `node`; returns the Docker engines connected to."""
    engines: list[str] = []

    def connect_engine(url: str, name: str) -> DockerRuntime:
        engines.append(name)
        return cast(DockerRuntime, None)

    monkeypatch.setattr(nodes, "pin_host_key", lambda target, known_hosts, say: False)
    monkeypatch.setattr(clouds, "SshHost", lambda name, target, known_hosts: node)
    monkeypatch.setattr(DockerRuntime, "connect", connect_engine)
    return engines


def test_a_node_reporting_another_host_name_is_refused_before_anything_is_sent(
    host: HostNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = cloud_of(host, tmp_path, joined("compute-1", "192.168.1.21"))
    node = SshNode("node1")
    engines = reached_over_ssh(monkeypatch, node)
    built: list[object] = []
    monkeypatch.setattr(nodedeploy, "node_deployment", lambda *args: built.append(args))
    with pytest.raises(nodeidentity.NodeRenamed) as refused:
        nodedeploy.prepare(cloud, cloud.records[0], Progress(total=0))
    assert refused.value.message == (
        "compute-1 (192.168.1.21) now reports host name 'node1' but joined as 'compute-1'; "
        "nothing was sent to it"
    )
    assert "`dietstack node remove compute-1`, then `dietstack node add 192.168.1.21`" in (
        refused.value.hint
    )
    # Asked its name, and nothing else: no facts, no Docker engine, no files.
    assert node.commands == [["hostname"]] and node.files.keys() == {
        "/etc/os-release",
        "/proc/meminfo",
    }
    assert engines == [] and built == []


def test_a_node_renamed_while_deployed_still_gets_only_its_own_secrets(
    host: HostNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its record names it: answering with the control node's name once past the check
    (its facts then say `node1`) gives it neither the control node's secrets nor its
    certificate."""
    cloud = cloud_of(host, tmp_path, joined("compute-1", "192.168.1.21"))
    node = SshNode("compute-1", "node1")
    reached_over_ssh(monkeypatch, node)
    deployment, found = nodedeploy.prepare(cloud, cloud.records[0], Progress(total=0), False)
    assert found.facts["node_name"] == "node1"
    assert sorted(deployment.secrets) == COMPUTE_SECRETS
    assert deployment.node == "compute-1" and not deployment.env.is_control
    assert deployment.secrets["libvirt_compute-1_key"] == "secret-libvirt_compute-1_key"


class PassedTheChecks(Exception):
    """`node add` went on to install Docker: its checks found no problem."""


def passed_the_checks(host: hostio.Host, say: object, connect: object) -> None:
    raise PassedTheChecks


def test_node_add_of_another_machine_with_a_nodes_host_name_is_refused_naming_both(
    host: HostNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cloned machine keeps its original's host name: adding it would take that
    node's place in the inventory."""
    existing = joined("compute-1", "192.168.1.21")
    cloud = cloud_of(host, tmp_path, existing)
    reached_over_ssh(monkeypatch, SshNode("compute-1", address="192.168.1.22"))
    monkeypatch.setattr(nodes, "ensure_docker_on", passed_the_checks)
    with pytest.raises(DietStackError) as refused:
        nodes.add(cloud, SshTarget("192.168.1.22"), "", Progress(total=0))
    message = refused.value.message
    assert message.startswith("compute-1 is not ready to be a compute node; nothing was changed")
    assert (
        "this machine (192.168.1.22) has the host name 'compute-1' of node compute-1 "
        "(192.168.1.21), another machine; give this one its own host name" in message
    )
    assert cloud.records == (existing,) and not cloud.inputs.inventory_path.exists()


@pytest.mark.parametrize(
    "ssh_host, address",
    [
        ("192.168.1.21", "192.168.1.21"),
        ("compute-1.lan", "192.168.1.21"),
        ("192.168.1.21", "192.168.2.21"),
    ],
    ids=["same-addresses", "another-ssh-name", "new-management-address"],
)
def test_node_add_of_a_node_already_in_the_inventory_passes_its_checks(
    host: HostNetwork,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ssh_host: str,
    address: str,
) -> None:
    """`node add` again is how a node is updated: the same machine, known by its
    management address or the address SSH reaches it at."""
    cloud = cloud_of(host, tmp_path, joined("compute-1", "192.168.1.21"))
    reached_over_ssh(monkeypatch, SshNode("compute-1", address=address))
    monkeypatch.setattr(nodes, "ensure_docker_on", passed_the_checks)
    with pytest.raises(PassedTheChecks):
        nodes.add(cloud, SshTarget(ssh_host), "", Progress(total=0))


def test_only_the_host_key_pinned_at_node_add_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose host key changed (another machine at its address) is not reached:
    neither the system's known_hosts nor DNS can vouch for another key."""
    changed = (
        'echo "$@" > "$(dirname "$0")/args"; '
        "echo '@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@' >&2; "
        "echo 'Host key verification failed.' >&2; exit 255"
    )
    node = fake_ssh(tmp_path, monkeypatch, changed)
    with pytest.raises(DietStackError, match="not the one pinned on first contact"):
        node.call(["hostname"])
    options = (tmp_path / "bin" / "args").read_text().split()
    for option in (
        f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "GlobalKnownHostsFile=/dev/null",
        "VerifyHostKeyDNS=no",
        "StrictHostKeyChecking=yes",
    ):
        assert option in options


# --- the control node reaches it from its management address ----------------------


def test_a_node_the_control_node_reaches_from_another_address_is_refused(
    host: HostNetwork,
) -> None:
    """The nodes' firewalls admit the control node's management address only: a node
    reached from another one (a routed network) would refuse live migrations."""
    control = control_deployment(host, "system")
    control = replace(control, host=RoutingHost("10.0.0.5"))
    problems, _ = nodechecks.check_node(healthy_node(), control, record(), [])
    assert len(problems) == 1, problems
    assert "reaches the node's address 192.168.1.21 from 10.0.0.5 (through eth0)" in problems[0]
    assert "management address 192.168.1.20" in problems[0]
    assert "src 192.168.1.20" in problems[0] and "management network" in problems[0]
    control = replace(control, host=FakeHost())
    problems, _ = nodechecks.check_node(healthy_node(), control, record(), [])
    assert problems == [
        "this control node has no route to the node's address 192.168.1.21; connect the "
        "node to the management network"
    ]
