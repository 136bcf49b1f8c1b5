"""The pure render step: settings + secrets (+ user overrides) -> configuration files.

Runs in two places with the same result: inside each container at start (to
write its files) and on the host (to hash them, so a container is recreated
exactly when its rendered configuration changes). Standard library and PyYAML
only, because it runs on the images' system Python.
"""

from __future__ import annotations

import configparser
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from dietstack.model import (
    COMPUTE,
    CONTROL_ROLES,
    ConfigFile,
    Container,
    IniFile,
    Node,
    Sections,
    TextFile,
    rabbitmq_secret_name,
    rabbitmq_user,
)

#: Where containers find their inputs (mounted read-only by the host).
CONTAINER_CONFIG_DIR = Path("/etc/dietstack")
#: Where what only this node's containers use listens (MariaDB, memcached, OVN NB).
LOOPBACK = "127.0.0.1"
#: RabbitMQ: plain AMQP for the control node's own services, on loopback; AMQP over
#: TLS, with the nodes' certificates, for the other nodes.
AMQP_PORT = 5672
AMQPS_PORT = 5671


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split("."))


@dataclass(frozen=True)
class Env:
    """Everything a service description may draw on: settings, secrets, derived URLs.

    The settings are one node's: `management_ip` and the facts (`node_name`, ...)
    are this node's own, while `nodes` lists every node of the cloud, the control
    node first. Endpoints (`url`, `keystone_url`, ...) are always the control node's.
    """

    settings: dict[str, Any]
    secrets: dict[str, str]

    @property
    def ip(self) -> str:
        """This node's management address: what its own daemons listen on."""
        return str(self.settings["management_ip"])

    @property
    def workers(self) -> int:
        return int(self.settings["api_workers"])

    @property
    def data_dir(self) -> str:
        return str(self.settings["data_dir"])

    @property
    def node(self) -> str:
        """This node's name: the host name Nova and OVN know it by."""
        return str(self.settings["node_name"])

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The inventory: every node, the control node first.

        Every port only nodes may reach, and the NFS export, admit exactly these.
        Without a list (an all-in-one cloud) it is this node alone, as the control node.
        """
        listed = tuple(
            Node(
                str(item["name"]),
                str(item["management_ip"]),
                tuple(item.get("roles") or ()),
                str(item.get("tunnel_ip") or ""),
            )
            for item in self.settings.get("nodes") or ()
        )
        if any(node.is_control for node in listed):
            return listed
        alone = Node(self.node, self.ip, CONTROL_ROLES, str(self.settings.get("tunnel_ip") or ""))
        return (alone, *(node for node in listed if node.name != self.node))

    @property
    def release(self) -> str:
        """The OpenStack release the containers run."""
        return str(self.settings["release"])

    def release_at_least(self, release: str) -> bool:
        """Whether the cloud runs `release` or a newer one: for options a release
        added or removed."""
        return _release_key(self.release) >= _release_key(release)

    @property
    def compute_rpc_pin(self) -> str:
        """Nova's compute RPC version cap while an upgrade has old and new services
        side by side ("auto": the oldest compute's); "" otherwise."""
        return str(self.settings.get("compute_rpc_pin") or "")

    @property
    def upgrading(self) -> bool:
        """Old and new services run side by side: database schemas are only expanded
        (what the old code still reads stays); the contract follows once all are new."""
        return bool(self.compute_rpc_pin)

    @property
    def compute_nodes(self) -> tuple[Node, ...]:
        """The nodes that host instances (the control node among them)."""
        return tuple(node for node in self.nodes if COMPUTE in node.roles)

    @property
    def this_node(self) -> Node:
        for node in self.nodes:
            if node.name == self.node:
                return node
        return Node(self.node, self.ip, (COMPUTE,))

    @property
    def control(self) -> Node:
        return self.nodes[0]

    @property
    def roles(self) -> tuple[str, ...]:
        return self.this_node.roles

    @property
    def is_control(self) -> bool:
        return self.this_node.is_control

    @property
    def control_ip(self) -> str:
        """Where every node finds the APIs, the message queue and OVN's databases."""
        return self.control.management_ip

    @property
    def node_ips(self) -> tuple[str, ...]:
        """Every address a node talks from: management and tunnel addresses."""
        return tuple(dict.fromkeys(ip for node in self.nodes for ip in node.addresses))

    @property
    def tunnel_ip(self) -> str:
        """Where this node's Geneve tunnels end: its tunnel interface, else management."""
        return str(self.settings.get("tunnel_ip") or self.ip)

    def url(self, port: int, path: str = "") -> str:
        """An endpoint of the control node: every API speaks HTTPS only."""
        return f"https://{self.control_ip}:{port}{path}"

    @property
    def keystone_url(self) -> str:
        return self.url(5000, "/v3")

    def database_url(self, service: str, database: str | None = None) -> str:
        password = self.secrets[f"{service}_database_password"]
        # Only the control node's own services use the databases (over loopback).
        return f"mysql+pymysql://{service}:{password}@{LOOPBACK}:3306/{database or service}"

    @property
    def ovs_datapath(self) -> str:
        """`system` with the kernel's openvswitch module, else the userspace `netdev`."""
        return str(self.settings["ovs_datapath"])

    @property
    def hypervisor(self) -> str:
        """The virt_type in effect: `kvm` where a KVM guest really runs, else `qemu`."""
        return str(self.settings["hypervisor"])

    @property
    def transport_url(self) -> str:
        """The control node's services share one RabbitMQ user and reach it over
        loopback; each compute node has its own user (its password is all it holds
        of RabbitMQ) and reaches it over TLS with its certificate."""
        if self.is_control:
            password = self.secrets["rabbitmq_password"]
            return f"rabbit://openstack:{password}@{LOOPBACK}:{AMQP_PORT}/openstack"
        user, password = rabbitmq_user(self.node), self.secrets[rabbitmq_secret_name(self.node)]
        return f"rabbit://{user}:{password}@{self.control_ip}:{AMQPS_PORT}/openstack"

    @property
    def memcached_servers(self) -> str:
        return f"{LOOPBACK}:11211"


#: What a container renders in place of a secret it was not given: it is given only
#: those its own description holds, but describing the node's other containers (to
#: find its own) draws on theirs too.
WITHHELD = "secret-withheld-from-this-container"


class Withheld(dict[str, str]):
    """A container's own secrets; any other name reads as WITHHELD."""

    def __missing__(self, key: str) -> str:
        return WITHHELD


def load_env(directory: Path = CONTAINER_CONFIG_DIR) -> Env:
    settings = yaml.safe_load((directory / "settings.yaml").read_text()) or {}
    secrets = yaml.safe_load((directory / "secrets.yaml").read_text()) or {}
    return Env(settings, Withheld(secrets))


def _ini_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def render_ini(sections: Sections) -> str:
    lines = ["# Rendered by DietStack at container start; do not edit.", ""]
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_ini_value(value)}" for key, value in options.items())
        lines.append("")
    return "\n".join(lines)


def read_overrides(path: Path) -> Sections:
    """An INI override file as sections; options are kept exactly as written."""
    parser = configparser.RawConfigParser(strict=False, default_section="\0none")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    merged: Sections = {}
    for section in parser.sections():
        merged[section] = dict(parser.items(section))
    if parser.defaults():
        merged["DEFAULT"] = dict(parser.defaults())
    return merged


def merge(base: Sections, overrides: Sections) -> Sections:
    merged = {section: dict(options) for section, options in base.items()}
    for section, options in overrides.items():
        merged.setdefault(section, {}).update(options)
    return merged


def override_path(overrides_dir: Path, container: Container, file: ConfigFile) -> Path:
    """overrides/<service>/<file name>, e.g. overrides/nova/nova.conf."""
    return overrides_dir / container.service / Path(file.path).name


def render_files(container: Container, overrides_dir: Path | None) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of every file the container needs."""
    rendered: dict[str, tuple[bytes, int]] = {}
    for file in container.files:
        if isinstance(file, IniFile):
            sections = file.sections
            extra = override_path(overrides_dir, container, file) if overrides_dir else None
            if extra is not None and extra.is_file():
                sections = merge(sections, read_overrides(extra))
            rendered[file.path] = (render_ini(sections).encode(), file.mode)
        else:
            rendered[file.path] = (file.text.encode(), file.mode)
    return rendered


def live_paths(container: Container) -> set[str]:
    return {file.path for file in container.files if isinstance(file, TextFile) and file.live}


def config_hash(container: Container, image_id: str, overrides_dir: Path | None) -> str:
    """Changes whenever anything that defines the running container changes; of its
    live files, only where they are (their content is live_hash's)."""
    digest = hashlib.sha256()
    spec = asdict(container)
    spec.pop("files")
    digest.update(json.dumps(spec, sort_keys=True, default=str).encode())
    digest.update(image_id.encode())
    live = live_paths(container)
    for path, (content, mode) in sorted(render_files(container, overrides_dir).items()):
        digest.update(f"{path}\0{mode:o}\0".encode())
        digest.update(b"live" if path in live else content)
    return digest.hexdigest()


def live_hash(container: Container) -> str:
    """The hash of the content of the container's live files ("" when it has none)."""
    live = sorted(
        (file.path, file.text)
        for file in container.files
        if isinstance(file, TextFile) and file.live
    )
    if not live:
        return ""
    return hashlib.sha256(json.dumps(live).encode()).hexdigest()


def write_files(files: dict[str, tuple[bytes, int]], root: Path = Path("/")) -> None:
    for path, (content, mode) in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
