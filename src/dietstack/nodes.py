"""Compute nodes: adding one over SSH, deploying every node, listing and removing them.

The control node (this host) keeps the inventory (inventory.py). For each other
node, deploy builds a Deployment of its own: the node's host adapter and Docker
engine over SSH (sshhost.py), its facts, its settings (its address and
interfaces over the cloud's settings) and only the secrets its containers use.
The same plan/apply as on the control node then runs there.

A node is checked before `node add` changes it (nodechecks.py), and is the node it
joined as on every connection after (nodeidentity.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dietstack import (
    cloudapi,
    deploy,
    facts,
    hostio,
    inventory,
    kvmprobe,
    nodeaccess,
    secrets,
    services,
    status,
)
from dietstack.converge import NodePaths
from dietstack.deploy import Deployment, StepFailed
from dietstack.errors import DietStackError
from dietstack.model import COMPUTE, CONTROL_ROLES
from dietstack.nodechecks import check_node, read_meminfo
from dietstack.nodeidentity import NodeRenamed, check_identity, reported_name
from dietstack.progress import Progress
from dietstack.render import Env, render_files
from dietstack.runtime import DockerRuntime
from dietstack.sshhost import SshHost, SshTarget, pin_host_key

#: Where a node keeps its inputs: like the control node's defaults.
NODE_CONFIG_DIR = Path("/etc/dietstack")
KNOWN_HOSTS = "known_hosts"
READY_TIMEOUT = 240
#: What a compute node renders with of the facts found on it (besides its name).
NODE_FACTS = ("ovs_datapath", "hypervisor", "tunnel_ip", "tunnel_cidr", "mtu", "nfs_client")
#: Compute nodes deployed at the same time (each mostly waits on its own engine).
MAX_PARALLEL = 4


def known_hosts_path(config_path: Path) -> Path:
    return config_path.parent / KNOWN_HOSTS


# --- the inventory as the containers see it --------------------------------------


def control_record(control: Deployment) -> dict[str, Any]:
    """The control node's own entry of the node list the containers render with."""
    found = control.facts
    return {
        "name": found["node_name"],
        "management_ip": str(control.settings.management_ip),
        "roles": list(CONTROL_ROLES),
        "tunnel_ip": found.get("tunnel_ip") or str(control.settings.management_ip),
        "mtu": found.get("mtu", ""),
    }


def node_list(control: Deployment, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every node, the control node first."""
    return [control_record(control), *(inventory.rendered(record) for record in records)]


# --- one node's deployment --------------------------------------------------------


class _Recording(dict[str, str]):
    """Secrets that note which of them were read."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.source = values
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.used.add(key)
        return super().__getitem__(key)

    def __missing__(self, key: str) -> str:
        # Stand-ins (planning) have a value for any name.
        return self.source[key]


def secrets_for(settings: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """Only the secrets the node's containers render into their files."""
    recording = _Recording(values)
    env = Env(settings, recording)
    for container in services.all_containers(env):
        render_files(container, None)
    return {name: recording[name] for name in sorted(recording.used)}


def node_host(record: dict[str, Any], known_hosts: Path) -> SshHost:
    ssh = record["ssh"]
    target = SshTarget(ssh["host"], ssh["user"], int(ssh["port"]), ssh["identity"])
    return SshHost(record["name"], target, known_hosts)


def connect(record: dict[str, Any], known_hosts: Path) -> tuple[SshHost, DockerRuntime]:
    host = node_host(record, known_hosts)
    return host, DockerRuntime.connect(host.docker_url(), record["name"])


def own_settings(record: dict[str, Any]) -> dict[str, Any]:
    """The settings that are the node's own, over the cloud's."""
    found = record.get("facts") or {}
    return {
        "management_ip": record["management_ip"],
        "management_interface": found.get("management_interface", ""),
        # br-ex and floating IPs live on the control node only.
        "external_interface": "",
        "tunnel_interface": record.get("tunnel_interface", ""),
    }


def node_deployment(
    control: Deployment,
    record: dict[str, Any],
    records: list[dict[str, Any]],
    host: hostio.Host,
    runtime: DockerRuntime,
    progress: Progress,
) -> Deployment:
    """A compute node's Deployment: its facts, settings and share of the secrets."""
    node_facts = {
        # The name it joined as, never the one it reports: the name picks the role and
        # the certificate its secrets are rendered for.
        "node_name": record["name"],
        **{key: record["facts"].get(key, "") for key in NODE_FACTS},
    }
    node = Deployment(
        settings=control.settings,
        secrets={},
        paths=NodePaths(
            secrets_file=NODE_CONFIG_DIR / "secrets.yaml",
            overrides_dir=NODE_CONFIG_DIR / "overrides",
            data_dir=control.settings.data_dir,
        ),
        runtime=runtime,
        image_tags=control.image_tags,
        image_ids=control.image_ids,
        progress=progress,
        facts=node_facts,
        nodes=node_list(control, records),
        host=host,
        own_settings=own_settings(record),
        overrides_source=control.paths.overrides_dir,
    )
    return replace(node, secrets=secrets_for(node.rendered_settings, control.secrets))


# --- Docker and images on a node ----------------------------------------------------


def ensure_docker(host: hostio.Host, say: Callable[[str], None]) -> None:
    """Install Docker from the node's distribution packages and start it, if needed."""
    if host.call(["sh", "-c", "command -v dockerd"])[0] != 0:
        say(f"      {host.name}: installing Docker from the distribution's packages")
        # Debian 13 splits the client into docker-cli.
        script = (
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
            'pkgs=docker.io; apt-cache show docker-cli >/dev/null 2>&1 && pkgs="$pkgs docker-cli"; '
            "apt-get install -y -q $pkgs"
        )
        hostio.run(
            host,
            ["sh", "-c", script],
            "installing docker.io",
            "check that the node reaches its package mirror, then run `node add` again",
        )
    if host.call(["docker", "info"])[0] == 0:
        return
    say(f"      {host.name}: starting the Docker engine")
    start = (
        "if [ -d /run/systemd/system ]; then systemctl enable --now docker; else "
        "mkdir -p /var/log/dietstack; setsid nohup dockerd >>/var/log/dietstack/dockerd.log "
        "2>&1 </dev/null & fi"
    )
    hostio.run(host, ["sh", "-c", start], "starting dockerd", "see /var/log/dietstack/dockerd.log")
    for _ in range(60):
        if host.call(["docker", "info"])[0] == 0:
            return
        time.sleep(1)
    raise DietStackError(
        f"{host.name}: the Docker engine did not start within 60 s",
        hint="look at /var/log/dietstack/dockerd.log (or `journalctl -u docker`) on the node",
    )


def compute_images(control: Deployment) -> list[str]:
    """The images a compute node runs (its role's containers and the firewall)."""
    settings = {
        **control.rendered_settings,
        "nodes": [
            {"name": "compute", "management_ip": "192.0.2.254", "roles": [COMPUTE]},
            control_record(control),
        ],
    }
    settings = {**settings, "node_name": "compute", "management_ip": "192.0.2.254"}
    # Only image names are read: stand-in secrets, since this made-up node has no
    # certificate of its own.
    env = Env(settings, secrets.placeholder())
    return sorted({container.image for container in services.all_containers(env)})


def _counted(stream: Iterator[bytes], total: list[int]) -> Iterator[bytes]:
    for chunk in stream:
        total[0] += len(chunk)
        yield chunk


def ship_images(
    control: Deployment, runtime: DockerRuntime, say: Callable[[str], None]
) -> tuple[int, float]:
    """Copy the compute role's images to the node (a save/load stream, no registry);
    images the node has already are skipped. Returns bytes sent and seconds."""
    sent, started = 0, time.monotonic()
    for name in compute_images(control):
        tag = control.image_tags[name]
        if runtime.image_id(tag) == control.image_ids.get(name):
            say(f"      {runtime.node}: {tag} is there already")
            continue
        count = [0]
        began = time.monotonic()
        runtime.load_image(_counted(control.runtime.save_image(tag), count))
        sent += count[0]
        say(
            f"      {runtime.node}: sent {tag}: {count[0] / 1024**2:.0f} MB in "
            f"{time.monotonic() - began:.0f} s"
        )
    return sent, time.monotonic() - started


# --- facts ------------------------------------------------------------------------


def detect(
    host: hostio.Host,
    control: Deployment,
    record: dict[str, Any],
    probe: Callable[[], bool] | None,
) -> dict[str, str]:
    """The node's facts, found on the node itself."""
    interface, source = facts.route_to(host, str(control.settings.management_ip))
    found = facts.collect(
        host, control.settings.virt_type, control.settings.data_dir / "state", probe
    )
    found |= {"management_interface": interface, "management_source": source}
    found |= facts.tunnel(
        host, record.get("tunnel_interface", ""), interface, record["management_ip"]
    )
    nfs = host.call(["sh", "-c", "grep -qw nfs /proc/filesystems || modprobe nfs"])[0] == 0
    found["nfs_client"] = "yes" if nfs else ""
    return found


# --- the whole cloud ----------------------------------------------------------------


@dataclass
class Cloud:
    """The control node's Deployment and the inventory of the other nodes."""

    control: Deployment
    config_path: Path
    records: list[dict[str, Any]]

    @property
    def inventory_path(self) -> Path:
        return inventory.path_for(self.config_path)

    @property
    def known_hosts(self) -> Path:
        return known_hosts_path(self.config_path)

    def save(self) -> None:
        inventory.save(self.inventory_path, self.records)
        self.control.nodes = node_list(self.control, self.records)

    def record(self, name: str) -> dict[str, Any]:
        for record in self.records:
            if record["name"] == name:
                return record
        names = ", ".join(r["name"] for r in self.records) or "none yet"
        raise DietStackError(
            f"there is no node {name!r} (nodes: {names})", hint="`dietstack node list` shows them"
        )


def prepare(
    cloud: Cloud, record: dict[str, Any], progress: Progress, probe: bool = True
) -> Deployment:
    """Connect to a node, check it is the node it joined as, refresh its facts and build
    its Deployment. Without `probe` (planning, status) nothing is written on the node."""
    host = node_host(record, cloud.known_hosts)
    check_identity(host, record)
    runtime = DockerRuntime.connect(host.docker_url(), record["name"])
    control = cloud.control

    def kvm_probe() -> bool:
        node = kvmprobe.NodeCopy(host, runtime, control.settings.data_dir)
        return kvmprobe.kvm_guest_boots(
            control.runtime, control.image_tags, control.paths.data_dir, progress, node
        )

    record["facts"] = detect(host, control, record, kvm_probe if probe else None)
    return node_deployment(control, record, cloud.records, host, runtime, progress)


def wait_ready(cloud: Cloud, node: Deployment) -> None:
    """nova-compute serves, the host is in cell1 and its OVN chassis is up."""
    control = cloud.control
    deploy.map_compute_host(control, node.node)
    deploy.wait_serving(control, node)
    conn = cloudapi.admin(control.env)
    deadline = time.monotonic() + READY_TIMEOUT
    while not cloudapi.chassis_alive(conn, node.node):
        if time.monotonic() > deadline:
            raise StepFailed(
                node.node,
                "ovn-controller",
                "waiting for its OVN chassis to be up",
                node.runtime.logs_tail("ovn-controller"),
            )
        time.sleep(2)


def deploy_node(cloud: Cloud, record: dict[str, Any], progress: Progress) -> Deployment:
    node = prepare(cloud, record, progress)
    ship_images(cloud.control, node.runtime, progress.say)
    deploy.apply(node)
    wait_ready(cloud, node)
    return node


def deploy_all(cloud: Cloud, progress: Progress) -> None:
    """The control node first, then the compute nodes side by side; each touches only
    its own containers (the inventory's addresses change every node's firewall).
    Every node that fails is named, not only the first."""
    deploy.apply(cloud.control)
    deploy.finish_control(cloud.control)
    if not cloud.records:
        return
    admit_to_the_queue(cloud)
    progress.say(f"== the compute nodes: {', '.join(r['name'] for r in cloud.records)}")
    failures: list[DietStackError] = []
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
        futures = [pool.submit(deploy_node, cloud, record, progress) for record in cloud.records]
        for future in futures:
            try:
                future.result()
            except DietStackError as exc:
                failures.append(exc)
    cloud.save()
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise DietStackError(
            f"{len(failures)} compute nodes did not come up:\n"
            + "\n".join(f"  - {failure.message}" for failure in failures),
            details="\n\n".join(failure.details for failure in failures if failure.details),
            hint="fix the causes shown above and run `dietstack deploy` again",
        )


def admit_to_the_queue(cloud: Cloud) -> None:
    """Each compute node of the inventory has its RabbitMQ user, and no other node has."""
    control = cloud.control
    nodeaccess.sync(control.runtime, control.env.nodes, control.secrets)


def require_images(control: Deployment) -> None:
    """Adding or removing a node redeploys the control node: with this DietStack's
    images only, which `dietstack deploy` builds."""
    missing = sorted(
        tag for tag in control.image_tags.values() if control.runtime.image_id(tag) is None
    )
    if missing:
        raise DietStackError(
            f"this version of DietStack's images are not built here yet: {', '.join(missing)}; "
            "nothing was changed",
            hint="run `dietstack deploy` first (it builds them and updates the cloud), then "
            "run this command again",
        )


#: A certificate's common name holds at most 64 characters; one DNS label 63.
NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def node_name(host: SshHost) -> str:
    """The node's short host name, which names it everywhere; refused when unusable."""
    name = reported_name(host)
    if not NODE_NAME.match(name):
        raise DietStackError(
            f"{host.name}: its host name {name[:80]!r} cannot name a compute node; "
            "nothing was changed",
            hint="give the node a short host name of letters, digits and '-' (at most 63), "
            "e.g. `hostnamectl set-hostname compute1`, then run `dietstack node add` again",
        )
    return name


def add(
    cloud: Cloud,
    target: SshTarget,
    tunnel_interface: str,
    progress: Progress,
) -> Deployment:
    """`dietstack node add`: every step idempotent, the node checked before it changes."""
    say = progress.say
    require_images(cloud.control)
    # Its own steps, then every container of the control node and of each node.
    per_node = len(services.all_containers(cloud.control.env))
    progress.total = 7 + per_node * (2 + len(cloud.records))
    progress.step(f"contacting {target.host} over SSH")
    pin_host_key(target, cloud.known_hosts, say)
    host = SshHost(target.host, target, cloud.known_hosts)
    name = node_name(host)
    existing = next((r for r in cloud.records if r["name"] == name), None)
    interface, source = facts.route_to(host, str(cloud.control.settings.management_ip))
    record: dict[str, Any] = {
        "name": name,
        "management_ip": source or target.host,
        "roles": [COMPUTE],
        "ssh": target.as_dict() | {"host": target.host},
        "tunnel_interface": tunnel_interface or (existing or {}).get("tunnel_interface", ""),
        "facts": {},
    }
    progress.done(f"{name} at {record['management_ip']} (via {interface or 'no route'})")

    progress.step(f"{name}: checking the node")
    record["facts"] = detect(host, cloud.control, record, None)
    others = [r for r in cloud.records if r["name"] != name]
    problems, warnings = check_node(host, cloud.control, record, cloud.records)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise DietStackError(
            f"{name} is not ready to be a compute node; nothing was changed:\n{listing}",
            hint="fix the problems above and run `dietstack node add` again",
        )
    for warning in warnings:
        say(f"      warning: {warning}")
    progress.done("ready")

    progress.step(f"{name}: Docker")
    ensure_docker(host, say)
    runtime = DockerRuntime.connect(host.docker_url(), name)
    progress.done("running")

    progress.step(f"{name}: shipping the compute role's images")
    sent, seconds = ship_images(cloud.control, runtime, say)
    progress.done(f"{sent / 1024**2:.0f} MB in {seconds:.0f} s")

    progress.step(f"{name}: admitting it in the inventory, the firewall and the NFS export")
    # A node added again keeps its place: the inventory's order is rendered.
    listed = [record if r["name"] == name else r for r in cloud.records]
    cloud.records = listed if existing else [*others, record]
    cloud.save()
    cloud.control.secrets = secrets.ensure_node_certificates(
        cloud.control.paths.secrets_file, cloud.control.env.nodes
    )
    deploy.apply(cloud.control)
    admit_to_the_queue(cloud)
    progress.done("admitted")

    progress.say(f"== {name}: starting the compute role")
    node = prepare(cloud, record, progress)
    cloud.save()
    deploy.apply(node)
    for other in others:
        progress.say(f"== {other['name']}: updating its firewall for {name}")
        other_node = prepare(cloud, other, progress)
        deploy.apply(other_node)
    progress.step(f"{name}: waiting for nova-compute, the cell mapping and the OVN chassis")
    wait_ready(cloud, node)
    progress.done("serving")
    return node


def remove(cloud: Cloud, name: str, delete_instances: bool, progress: Progress) -> None:
    """`dietstack node remove`: Nova, Placement and OVN forget the node, its containers
    go, and the firewall and NFS export close for it."""
    record = cloud.record(name)
    require_images(cloud.control)
    per_node = len(services.all_containers(cloud.control.env))
    progress.total = 4 + per_node * len(cloud.records)
    conn = cloudapi.admin(cloud.control.env)
    progress.step(f"{name}: instances")
    servers = cloudapi.instances_on(conn, name)
    if servers and not delete_instances:
        listing = "\n".join(f"  - {s.name} ({s.id}, {s.status})" for s in servers)
        raise DietStackError(
            f"{len(servers)} instance(s) live on {name}; nothing was changed:\n{listing}",
            hint="pass --drain to move them to other nodes first, or --delete-instances "
            "to delete them",
        )
    for server in servers:
        conn.compute.delete_server(server)
    for server in servers:
        conn.compute.wait_for_delete(server, wait=300)
    progress.done(f"{len(servers)} deleted" if servers else "none")

    # Its daemons stop first: a running nova-compute or ovn-controller would sign in again.
    progress.step(f"{name}: removing its containers")
    try:
        host, runtime = connect(record, cloud.known_hosts)
        removed, note = deploy.destroy(runtime, None, cloud.control.image_tags.get("ovn"))
        give_back_tunnel_address(host, record)
        progress.done(f"{removed} removed")
    except DietStackError as exc:
        progress.done(f"not reachable ({exc.message}); its containers stay until it is wiped")

    progress.step(f"{name}: removing it from Nova, Placement and OVN")
    service = cloudapi.compute_service(conn, name)
    if service is not None:
        conn.compute.disable_service(service)
        conn.compute.delete_service(service)
    for provider in conn.placement.resource_providers(name=name):
        conn.placement.delete_resource_provider(provider)
    cloud.control.runtime.exec(
        "ovn-sb-db",
        ["ovn-sbctl", "--db=unix:/run/ovn/ovnsb_db.sock", "--if-exists", "chassis-del", name],
    )
    for agent in cloudapi.ovn_agents(conn, name):
        conn.network.delete_agent(agent)
    progress.done("forgotten")

    progress.step(f"{name}: closing the firewall and the NFS export")
    cloud.records = [r for r in cloud.records if r["name"] != name]
    cloud.save()
    deploy.apply(cloud.control)
    admit_to_the_queue(cloud)
    cloud.control.secrets = secrets.forget_node(cloud.control.paths.secrets_file, name)
    for other in cloud.records:
        deploy.apply(prepare(cloud, other, progress))
    progress.done("closed")


def give_back_tunnel_address(host: hostio.Host, record: dict[str, Any]) -> None:
    """Once Open vSwitch is gone, the tunnel NIC gets back the address it lent br-phy."""
    nic = str(record.get("tunnel_interface") or "")
    cidr = str((record.get("facts") or {}).get("tunnel_cidr") or "")
    if nic and cidr and not facts.interface_cidr(host, nic):
        host.call(["ip", "addr", "replace", cidr, "dev", nic])


def destroy(
    record: dict[str, Any], config_path: Path, ovn_image: str | None, data_dir: Path | None
) -> int:
    """`dietstack destroy` on a compute node: its containers and host tables, and with
    `data` its data directory; the node stays in the inventory (deploy brings it back)."""
    host, runtime = connect(record, known_hosts_path(config_path))
    removed, _ = deploy.destroy(runtime, None, ovn_image)
    give_back_tunnel_address(host, record)
    if data_dir is not None:
        # Not into other file systems: volumes may still be mounted there.
        command = ["rm", "-rf", "--one-file-system", str(data_dir)]
        hostio.run(host, command, "removing the data", "unmount what is mounted there")
    return removed


# --- node list ----------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRow:
    name: str
    address: str
    roles: str
    containers: str
    nova_compute: str
    chassis: str
    instances: str
    free_ram: str


def _containers_healthy(runtime: DockerRuntime, env: Env) -> str:
    """How many of the node's containers are healthy, as `status` judges them."""
    wanted = [c for c in services.all_containers(env) if not c.oneshot]
    healthy = sum(1 for row in status.container_rows(runtime, env) if row.ok)
    return f"{healthy}/{len(wanted)}"


def rows(cloud: Cloud) -> list[NodeRow]:
    conn = cloudapi.admin(cloud.control.env)
    servers = list(conn.compute.servers(all_projects=True))
    result = []
    targets: list[tuple[str, str, str, hostio.Host | None, DockerRuntime | None, Env | None]] = [
        (
            cloud.control.node,
            cloud.control.env.ip,
            "control,compute",
            cloud.control.host,
            cloud.control.runtime,
            cloud.control.env,
        )
    ]
    refused: dict[str, str] = {}
    for record in cloud.records:
        try:
            node = prepare(cloud, record, Progress(total=0), probe=False)
            targets.append(
                (
                    record["name"],
                    record["management_ip"],
                    "compute",
                    node.host,
                    node.runtime,
                    node.env,
                )
            )
        except DietStackError as exc:
            refused[record["name"]] = "renamed" if isinstance(exc, NodeRenamed) else "unreachable"
            targets.append((record["name"], record["management_ip"], "compute", None, None, None))
    for name, address, roles, host, runtime, env in targets:
        service = cloudapi.compute_service(conn, name)
        state = "-" if service is None else f"{service.status}/{service.state}"
        chassis = "up" if cloudapi.chassis_alive(conn, name) else "down"
        count = sum(1 for s in servers if s.compute_host == name)
        if host is None or runtime is None or env is None:
            why = refused.get(name, "unreachable")
            result.append(NodeRow(name, address, roles, why, state, chassis, str(count), "-"))
            continue
        free = read_meminfo(host).get("MemAvailable", 0)
        result.append(
            NodeRow(
                name,
                address,
                roles,
                _containers_healthy(runtime, env),
                state,
                chassis,
                str(count),
                f"{free / 1024**3:.1f} GiB",
            )
        )
    return result


def render_rows(found: list[NodeRow]) -> str:
    header = ("NODE", "ADDRESS", "ROLES", "HEALTHY", "NOVA-COMPUTE", "CHASSIS", "VMS", "FREE RAM")
    table = [header] + [
        (
            r.name,
            r.address,
            r.roles,
            r.containers,
            r.nova_compute,
            r.chassis,
            r.instances,
            r.free_ram,
        )
        for r in found
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
