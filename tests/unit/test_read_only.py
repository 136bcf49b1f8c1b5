"""The verbs that only look change nothing on any host: every command they run on this
host and on a node, every file they would write and every Docker call is recorded,
and none of them changes anything."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from dietstack import cli
from dietstack.apis import cloudapi
from dietstack.app import cloud as clouds
from dietstack.engine import publictls, secrets, servicecheck
from dietstack.hosts import hostnet
from dietstack.hosts.hostnet import HostNetwork
from dietstack.hosts.runtime import DockerRuntime
from dietstack.model import COMPUTE, CONTROL_ROLES, PUBLIC_TRUST, Node
from dietstack.ops import status

from .fakes import FakeHost

#: Docker calls that look; any other call is a change.
LOOKING = {"root_dir", "image_id", "images", "containers", "state", "pids", "logs", "logs_tail"}
#: Words that mark a command as changing its host.
CHANGING = ("modprobe", "mkdir", "rm ", "chmod", "chown", "apt", "systemctl", "dockerd", "mount")


class RecordingHost(FakeHost):
    """A host that answers the read-only probes and records every command and write."""

    def __init__(self, name: str) -> None:
        super().__init__(
            {"hostname": (0, f"{name}\n"), "uname -r": (0, "6.1.0\n")},
            {"/proc/meminfo": "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\n"},
        )
        self.name = name
        self.writes: list[str] = []

    def write_file(self, path: Path, content: bytes, mode: int) -> None:
        self.writes.append(str(path))

    def docker_url(self) -> str:
        return f"unix:///run/{self.name}-docker.sock"

    def changes(self) -> list[str]:
        ran = [" ".join(command) for command in self.commands]
        return self.writes + [c for c in ran if any(word in c for word in CHANGING)]


class RecordingRuntime:
    """A Docker engine with no containers that records every call that is not a look."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.changes: list[str] = []

    def containers(self, label: str) -> dict[str, Any]:
        return {}

    def images(self, label: str) -> list[Any]:
        return []

    def image_id(self, ref: str) -> str | None:
        return f"sha256:{ref}"

    def logs(self, *args: object) -> list[bytes]:
        return [b"a line\n"]

    def __getattr__(self, name: str) -> Any:
        def call(*args: object, **kwargs: object) -> Any:
            if name not in LOOKING:
                self.changes.append(name)
            return None

        return call


class FakeConnection:
    """The cloud's APIs, as far as `node list` asks them."""

    class _Empty:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: iter(())

    compute = network = placement = _Empty()


@pytest.fixture()
def cloud_files(tmp_path: Path, host: HostNetwork) -> Path:
    """A deployed cloud's files: settings, secrets, one node, the facts deploy recorded."""
    config = tmp_path / "etc" / "settings.yaml"
    config.parent.mkdir()
    data = tmp_path / "data"
    config.write_text(yaml.safe_dump({"data_dir": str(data)}))
    (config.parent / "nodes.yaml").write_text(
        yaml.safe_dump(
            [
                {
                    "name": "compute-1",
                    "management_ip": "192.168.1.21",
                    "facts": {"ovs_datapath": "system", "tunnel_ip": "192.168.1.21"},
                }
            ]
        )
    )
    secrets_file = secrets.secrets_path(config)
    secrets.ensure(secrets_file)
    nodes = [
        Node("node1", "192.168.1.20", CONTROL_ROLES),
        Node("compute-1", "192.168.1.21", (COMPUTE,)),
    ]
    secrets.ensure_node_certificates(secrets_file, nodes)
    names = publictls.Names.of(["192.168.1.20", "node1"])
    trust = secrets.ensure_public_tls(secrets_file, names)[PUBLIC_TRUST]
    # Deploy wrote the CA beside clouds.yaml.
    cloudapi.CA_FILE.write_text(trust)
    rendered = data / "config" / "settings.yaml"
    rendered.parent.mkdir(parents=True)
    rendered.write_text(
        yaml.safe_dump({"node_name": "node1", "ovs_datapath": "system", "hypervisor": "qemu"})
    )
    return config


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch, host: HostNetwork) -> dict[str, Any]:
    """Every host and engine the verbs reach, recording; nothing may start Docker."""
    found: dict[str, Any] = {"hosts": [], "runtimes": []}

    def local() -> RecordingHost:
        made = RecordingHost("node1")
        found["hosts"].append(made)
        return made

    def node(name: str, target: object, known_hosts: Path) -> RecordingHost:
        made = RecordingHost(name)
        found["hosts"].append(made)
        return made

    def engine(url: str = "", node: str = "this host") -> RecordingRuntime:
        made = RecordingRuntime(node)
        found["runtimes"].append(made)
        return made

    def no_starting(*args: object) -> None:
        raise AssertionError("a verb that only looks started Docker")

    monkeypatch.setattr(hostnet, "probe", lambda: host)
    monkeypatch.setattr(clouds, "LocalHost", local)
    monkeypatch.setattr(clouds, "SshHost", node)
    monkeypatch.setattr(clouds, "ensure_docker", no_starting)
    monkeypatch.setattr(DockerRuntime, "connect", staticmethod(engine))
    monkeypatch.setattr(status, "probe", lambda url, verify: ("HTTP 200", 1.0))
    monkeypatch.setattr(servicecheck, "fetch", lambda *args: {})
    monkeypatch.setattr(servicecheck, "node_rows", lambda *args: [])
    monkeypatch.setattr(cloudapi, "admin", lambda env: FakeConnection())
    return found


@pytest.mark.parametrize(
    "verb",
    [
        ["plan"],
        ["deploy", "--dry-run"],
        ["status"],
        ["node", "list"],
        ["logs", "nova-api", "--tail", "1"],
        ["logs", "--node", "compute-1", "nova-compute", "--tail", "1"],
        ["config", "show"],
        ["images", "list"],
        ["certs", "list"],
    ],
    ids=lambda verb: " ".join(verb),
)
def test_a_verb_that_only_looks_changes_nothing(
    verb: list[str],
    cloud_files: Path,
    recorded: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = sorted(str(p) for p in cloud_files.parent.parent.rglob("*"))
    monkeypatch.setattr(sys, "argv", ["dietstack", "--config", str(cloud_files), *verb])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    err = capsys.readouterr().err
    assert exited.value.code in (0, 1, None), err
    assert "Traceback" not in err
    for reached in recorded["hosts"]:
        assert reached.changes() == [], reached.name
    for engine in recorded["runtimes"]:
        assert engine.changes == [], engine.node
    assert sorted(str(p) for p in cloud_files.parent.parent.rglob("*")) == before
    if verb[0] in ("plan", "node", "status") or "--node" in verb:
        assert any(h.name == "compute-1" for h in recorded["hosts"]), "the node was not looked at"


def test_the_recording_host_sees_a_change(cloud_files: Path, recorded: dict[str, Any]) -> None:
    """The check above can fail: a cloud opened for a change loads modules."""
    cloud = clouds.read_only(cloud_files)
    from dietstack.app import nodedeploy

    changing = replace(cloud, read_only=False)
    nodedeploy.detect(changing, cloud.records[0], changing.control.progress, probe=False)
    assert any("modprobe" in change for h in recorded["hosts"] for change in h.changes())
