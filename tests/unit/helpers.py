"""What several unit test modules build on: the settings of a typical cloud, its
firewall rules, a node joining it, and a cloud to back up."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import cast

import yaml

from dietstack import services
from dietstack.app import cloud as clouds
from dietstack.engine import secrets, settings
from dietstack.engine.converge import NodePaths
from dietstack.engine.deploy import Deployment
from dietstack.engine.inventory import NodeRecord
from dietstack.hosts.hostnet import HostNetwork
from dietstack.hosts.runtime import DockerRuntime
from dietstack.hosts.sshhost import SshTarget
from dietstack.ops import backup
from dietstack.progress import Progress
from dietstack.render import Env

from .fakes import RoutingHost

# --- a cloud's settings ----------------------------------------------------------

SETTINGS = {
    "release": "2026.1",
    "management_interface": "eth0",
    "management_ip": "192.168.1.20",
    "external_cidr": "172.24.4.0/24",
    "external_interface": "",
    "data_dir": "/var/lib/dietstack",
    "api_workers": 1,
    "virt_type": "auto",
    "base_image": "auto",
    "debian_mirror": "http://deb.debian.org/debian",
    "nfs_share": "",
    "node_name": "node1",
    "ovs_datapath": "netdev",
    "hypervisor": "qemu",
}


def make_env(**changes: object) -> Env:
    """The control node node1 (with compute-1 and compute-2's secrets too), `changes` applied."""
    found: dict[str, object] = {
        "release": "2026.1",
        "management_ip": "192.168.1.20",
        "external_cidr": "172.24.4.0/24",
        "data_dir": "/var/lib/dietstack",
        "api_workers": 1,
        "nfs_share": "",
        "node_name": "node1",
        "ovs_datapath": "netdev",
        "hypervisor": "qemu",
    }
    found.update(changes)
    return Env(
        found, {name: f"s-{name}" for name in secrets.names(["node1", "compute-1", "compute-2"])}
    )


# --- its firewall ----------------------------------------------------------------


def nft_set(rules: str, name: str) -> set[str]:
    """The elements of one named set in the rendered ruleset."""
    block = re.search(rf"set {name} {{(.*?)\n\t}}", rules, re.S)
    assert block, name
    elements = re.search(r"elements = \{ (.*) \}", block.group(1))
    return set(elements.group(1).split(", ")) if elements else set()


def rules_of(env: Env) -> str:
    return services.find(env, "firewall").files[0].text  # type: ignore[union-attr]


# --- a node joining it -----------------------------------------------------------


def control_deployment(host: HostNetwork, datapath: str, **raw: object) -> Deployment:
    effective = settings.validate(raw, host, Path("/etc/dietstack/settings.yaml"))
    paths = NodePaths(Path("/x/secrets.yaml"), Path("/x/overrides"), Path("/var/lib/dietstack"))
    found = {"node_name": "node1", "ovs_datapath": datapath, "hypervisor": "qemu"}
    return Deployment(
        effective,
        {},
        paths,
        None,  # type: ignore[arg-type]  # the checks never use the runtime
        {},
        {},
        Progress(total=0),
        found,
        host=RoutingHost("192.168.1.20"),
    )


def record(**facts: str) -> NodeRecord:
    found = {
        "node_name": "compute-1",
        "management_interface": "eth0",
        "ovs_datapath": "system",
        "tunnel_ip": "192.168.1.21",
        "mtu": "1500",
        "nfs_client": "yes",
        **facts,
    }
    return NodeRecord(found["node_name"], "192.168.1.21", SshTarget("192.168.1.21"), facts=found)


# --- a cloud to back up ----------------------------------------------------------

VALUES = {"mariadb_root_password": "r" * 32, "admin_password": "a" * 32}


class DumpingRuntime:
    """MariaDB and OVN's northbound server, as far as a backup uses them: their
    output lands in their data directories, which are bind mounts."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def exec(self, name: str, command: list[str]) -> tuple[int, str]:
        if name == "mariadb":
            (self.data_dir / "mariadb" / ".dietstack-backup.sql").write_text("CREATE DATABASE x;\n")
        else:
            (self.data_dir / "ovn" / ".dietstack-backup-nb.db").write_text("OVSDB JSON\n")
        return 0, ""


def a_cloud(tmp_path: Path) -> backup.Source:
    etc, data = tmp_path / "etc", tmp_path / "data"
    (etc / "overrides" / "nova").mkdir(parents=True)
    (etc / "settings.yaml").write_text(
        yaml.safe_dump({"data_dir": str(data), "management_ip": "192.0.2.9", "api_workers": 2})
    )
    (etc / "secrets.yaml").write_text(yaml.safe_dump(VALUES))
    (etc / "overrides" / "nova" / "nova.conf").write_text("[DEFAULT]\ndebug = true\n")
    trees = ("mariadb", "ovn", "keystone/fernet-keys", "glance/images", "cinder-volumes")
    for tree in (*trees, "nova/state"):
        (data / tree).mkdir(parents=True)
    (data / "keystone" / "fernet-keys" / "0").write_text("key0")
    (data / "nova" / "state" / "compute_id").write_text("6f7a...\n")
    (data / "glance" / "images" / "abc").write_bytes(b"\x00image" * 100)
    (data / "cinder-volumes" / "volume-1").write_bytes(b"\x00" * 1000)
    return backup.Source(etc / "settings.yaml", data)


def take(tmp_path: Path, volumes: bool = False) -> tuple[backup.Source, Path]:
    source = a_cloud(tmp_path)
    archive = tmp_path / "cloud.tar.gz"
    runtime = cast(DockerRuntime, DumpingRuntime(source.data_dir))
    backup.take(runtime, source, VALUES, archive, volumes, {"servers": []}, print, "2026.1")
    return source, archive


def a_control_cloud(
    host: HostNetwork,
    tmp_path: Path,
    records: tuple[NodeRecord, ...] = (),
    secret_names: Iterable[str] = (),
    read_only: bool = False,
) -> clouds.Cloud:
    """node1, the control node, with the secrets named (each `secret-NAME`) and the
    nodes given; nodes are reached through cloud.SshHost and DockerRuntime.connect."""
    control = control_deployment(host, "system")
    values = {name: f"secret-{name}" for name in secret_names}
    control = replace(control, secrets=values)
    inputs = clouds.Inputs(tmp_path / "settings.yaml", control.settings, values, records)
    cloud = clouds.Cloud(inputs, control, clouds.Links(tmp_path / "known_hosts"), read_only)
    return cloud.with_records(records)
