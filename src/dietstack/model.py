"""The vocabulary services are described in: containers, their files and checks.

Pure data, standard library only: the same definitions are read by the host
(to plan and create containers) and by the start program inside each container
(to render its configuration), so both always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: An INI file as sections of options; rendered in the order given.
Sections = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class IniFile:
    path: str
    sections: Sections
    mode: int = 0o640


@dataclass(frozen=True)
class TextFile:
    path: str
    text: str
    mode: int = 0o640
    #: Written into the running container when it changes, then the container's
    #: `reload` commands run: the container is not made anew (libvirt's certificates,
    #: whose container holds the running guests).
    live: bool = False


ConfigFile = IniFile | TextFile


@dataclass(frozen=True)
class Mount:
    """A host path (absolute, or relative to the data directory) inside a container."""

    source: str
    target: str
    read_only: bool = False
    #: "rshared" lets mounts made inside the container show on the host, "rslave"
    #: lets a container see them; both need the host directory on a shared mount.
    propagation: str = ""


@dataclass(frozen=True)
class Tmpfs:
    """A directory in memory (tmpfs), empty at each start of the container: for
    state worth nothing after a restart, kept off the disk so a full disk cannot
    stop the service."""

    target: str
    size_mib: int


#: Every image's start program (its entrypoint, under tini).
START_PROGRAM = "/usr/lib/dietstack/dietstack-start"
#: Where the start program's own modules are (dietstack/start/ of this package).
START_PACKAGE = "/usr/lib/dietstack/dietstack"
#: Put before an OpenStack daemon: its oslo.privsep calls and its one worker run in
#: its own process instead of in helper and child processes (see
#: dietstack/start/in_process.py).
IN_PROCESS = ("python3", f"{START_PACKAGE}/start/in_process.py")


@dataclass(frozen=True)
class Healthcheck:
    """How a container checks itself. A small shell loop inside the container (its
    watcher, started beside the service) runs the check every `interval` seconds,
    every few seconds until the first pass, and keeps the verdict in a symbolic
    link, HEALTH_LINK, which deploy and status read through Docker's cheap file
    stat. Docker's own health checks are not used: each is a `docker exec`, whose
    machinery (dockerd, containerd, the shim, runc) costs about 0.1 s of CPU, so
    28 of them a minute were most of what an idle cloud burned. A daemon that
    exits is restarted at once by the restart policy; the watcher catches one that
    hangs: unhealthy after `retries` failures, ended after two more (start/heal.py).
    deploy, start and status run the check themselves when they need an answer
    sooner than the watcher's next one."""

    test: tuple[str, ...]
    interval: int = 60
    timeout: int = 10
    retries: int = 3
    start_period: int = 120


@dataclass(frozen=True)
class Privileges:
    """What a container may do beyond Docker's defaults; explicit, never --privileged."""

    capabilities: tuple[str, ...] = ()
    dropped_capabilities: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    device_cgroup_rules: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    pid_host: bool = False


#: The watcher's verdict on its container: a symbolic link to "STATUS FAILURES", with
#: STATUS healthy, unhealthy or starting (a link, so Docker's stat shows it).
HEALTH_LINK = "/run/dietstack-health"
#: How often the watcher checks while its container has not passed once yet.
STARTING_INTERVAL = 5

#: Where a container keeps the hash of the live files it holds now.
LIVE_HASH_FILE = "/run/dietstack-live.sha256"


#: Who may reach a port. The firewall (services/firewall.py) enforces it.
#: The cloud's users: anyone on the LAN and every instance (the APIs, noVNC).
USERS = "users"
#: The cloud's own nodes only: their management addresses, from the inventory.
NODES = "nodes"
#: This host only: what only containers on this node use (bound to loopback too).
HOST = "host"
AUDIENCES = (USERS, NODES, HOST)


@dataclass(frozen=True)
class Port:
    """A port a container listens on, and who may reach it."""

    number: int
    audience: str
    #: What it is for, as the README's port table and the firewall's comments say.
    purpose: str
    protocol: str = "tcp"
    #: The last port of a range opened on demand (e.g. one VNC port per instance).
    last: int = 0

    @property
    def numbers(self) -> range:
        return range(self.number, max(self.number, self.last) + 1)

    @property
    def span(self) -> str:
        """nftables' spelling: 5672 or 5900-5999."""
        return f"{self.number}-{self.last}" if self.last else str(self.number)

    @property
    def opened_at_start(self) -> bool:
        """Single ports are taken when the container starts; ranges only on demand."""
        return not self.last


#: What a node does: the control plane, or hosting instances. The control node
#: has both; a compute node only the compute role.
CONTROL = "control"
COMPUTE = "compute"
#: The roles of the node that runs the control plane (it hosts instances too).
CONTROL_ROLES = (CONTROL, COMPUTE)


@dataclass(frozen=True)
class Node:
    """One machine of the cloud, as the inventory knows it."""

    name: str
    management_ip: str
    roles: tuple[str, ...]
    #: Where its Geneve tunnels end, when not on the management address.
    tunnel_ip: str = ""

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address the other nodes see it talk from."""
        return tuple(dict.fromkeys(filter(None, (self.management_ip, self.tunnel_ip))))

    @property
    def is_control(self) -> bool:
        return CONTROL in self.roles


#: Where a container finds the public TLS files: the CA (or bundle) the cloud's clients
#: trust, and the server certificate and key only the APIs, the dashboard and the
#: console proxy hold.
PUBLIC_TLS_DIR = "/etc/dietstack-tls"
PUBLIC_CA = f"{PUBLIC_TLS_DIR}/public-ca.pem"
PUBLIC_CERT = f"{PUBLIC_TLS_DIR}/public.crt"
PUBLIC_KEY = f"{PUBLIC_TLS_DIR}/public.key"
#: The secret holding what PUBLIC_CA holds: the cloud's own CA, or the CA of the
#: user's certificate.
PUBLIC_TRUST = "tls_trust"


#: What marks a node's certificate: libvirt admits this organisation only, so no
#: other certificate of the cloud's CA opens a node's libvirt.
NODE_ORGANIZATION = "dietstack-node"
#: What marks the certificate of the control node's services that nodes connect to
#: over TLS (RabbitMQ, OVN's databases) and that connect to them as clients (ovn-northd,
#: Neutron): signed by the same CA, but libvirt admits no such certificate.
SERVICE_ORGANIZATION = "dietstack-services"
#: The secrets holding that certificate and its key.
SERVICES_TLS = ("tls_services_key", "tls_services_certificate")


def tls_secret_names(node: str) -> tuple[str, str]:
    """The secrets holding a node's TLS key and certificate (live migration)."""
    return f"libvirt_{node}_key", f"libvirt_{node}_certificate"


def rabbitmq_user(node: str) -> str:
    """A compute node's own RabbitMQ user: removing the node removes its access."""
    return f"node-{node}"


def rabbitmq_secret_name(node: str) -> str:
    """The secret holding a compute node's RabbitMQ password."""
    return f"rabbitmq_{node}_password"


@dataclass(frozen=True)
class Container:
    """One long-running container, or a one-shot step when `oneshot` is set."""

    name: str
    service: str
    image: str
    command: tuple[str, ...]
    files: tuple[ConfigFile, ...] = ()
    volumes: tuple[Mount, ...] = ()
    healthcheck: Healthcheck | None = None
    depends_on: tuple[str, ...] = ()
    privileges: Privileges = field(default_factory=Privileges)
    environment: tuple[tuple[str, str], ...] = ()
    #: Shell commands run inside the container, after its files are written and
    #: before its command starts (e.g. create an empty database file once).
    prepare: tuple[str, ...] = ()
    oneshot: bool = False
    #: Ports it listens on and who may reach each; single ones are checked to be
    #: free before deploy.
    ports: tuple[Port, ...] = ()
    #: Shell commands run inside the running container after its live files changed.
    reload: tuple[str, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """A service in the Keystone catalog, published on the management address."""

    service_type: str
    name: str
    port: int
    path: str = ""
    description: str = ""
