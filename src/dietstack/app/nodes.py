"""Compute nodes' lifecycle: deploying every node, adding one over SSH, removing one.

The control node (this host) keeps the inventory (inventory.py). Each other node
gets a Deployment of its own (nodedeploy.py) over the command's one link to it,
and the same plan/apply as the control node then runs there. A node is checked
before `node add` changes it (nodechecks.py), and is the node it joined as on
every connection after (nodeidentity.py).

Each step that changes the inventory makes a new Cloud value (cloud.Cloud.saved)
and the steps after it use that one.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dietstack import services
from dietstack.apis import cloudapi
from dietstack.app.cloud import Cloud
from dietstack.app.nodedeploy import detect, prepare
from dietstack.app.nodeimages import ship_images
from dietstack.engine import afterup, deploy, diskspace, nodeaccess, secrets, teardown
from dietstack.engine.deploy import Deployment, StepFailed
from dietstack.engine.inventory import NodeRecord
from dietstack.engine.nodechecks import check_node
from dietstack.engine.nodeidentity import check_identity, reported_name
from dietstack.errors import DietStackError
from dietstack.hosts import facts, hostio
from dietstack.hosts.provision import ensure_docker_on
from dietstack.hosts.sshhost import SshTarget, pin_host_key
from dietstack.ops import goneprovider
from dietstack.progress import Progress
from dietstack.services import placement

READY_TIMEOUT = 240
#: Compute nodes deployed at the same time (each mostly waits on its own engine).
MAX_PARALLEL = 4
#: A certificate's common name holds at most 64 characters; one DNS label 63.
NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


# --- every node --------------------------------------------------------------------


def wait_ready(cloud: Cloud, node: Deployment) -> None:
    """nova-compute serves, the host is in cell1 and its OVN chassis is up."""
    control = cloud.control
    afterup.map_compute_host(control, node.node)
    afterup.wait_serving(control, node)
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


def warn_of_low_space(node: Deployment, progress: Progress) -> None:
    for line in diskspace.node_warnings(node):
        progress.say(f"Warning: {line}")


def deploy_node(cloud: Cloud, record: NodeRecord, progress: Progress) -> NodeRecord:
    """One compute node brought to its plan; its record with the facts found now."""
    node, record = prepare(cloud, record, progress)
    warn_of_low_space(node, progress)
    ship_images(cloud.control, node.runtime, progress.say)
    deploy.apply(node)
    wait_ready(cloud, node)
    return record


def deploy_all(cloud: Cloud, progress: Progress) -> Cloud:
    """The control node first, then the compute nodes side by side; each touches only
    its own containers (the inventory's addresses change every node's firewall).
    Every node that fails is named, not only the first. The facts found on the nodes
    are written to the inventory."""
    warn_of_low_space(cloud.control, progress)
    deploy.apply(cloud.control)
    afterup.finish_control(cloud.control)
    if not cloud.records:
        return cloud
    admit_to_the_queue(cloud)
    progress.say(f"== the compute nodes: {', '.join(r.name for r in cloud.records)}")
    failures: list[DietStackError] = []
    found: dict[str, NodeRecord] = {}
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
        futures = [pool.submit(deploy_node, cloud, record, progress) for record in cloud.records]
        for future in futures:
            try:
                record = future.result()
                found[record.name] = record
            except DietStackError as exc:
                failures.append(exc)
    cloud = cloud.saved(tuple(found.get(r.name, r) for r in cloud.records))
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise DietStackError(
            f"{len(failures)} compute nodes did not come up:\n"
            + "\n".join(f"  - {failure.message}" for failure in failures),
            details="\n\n".join(failure.details for failure in failures if failure.details),
            hint="fix the causes shown above and run `dietstack deploy` again",
        )
    return cloud


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


# --- node add ----------------------------------------------------------------------


def node_name(host: hostio.Host) -> str:
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


def _checked_record(
    cloud: Cloud, target: SshTarget, tunnel_interface: str, progress: Progress
) -> NodeRecord:
    """Who the machine is and what it has; an error listing every problem, before
    anything changes on it."""
    progress.step(f"contacting {target.host} over SSH")
    pin_host_key(target, cloud.links.known_hosts, progress.say)
    host = cloud.links.host(target)
    name = node_name(host)
    existing = next((r for r in cloud.records if r.name == name), None)
    interface, source = facts.route_to(host, str(cloud.control.settings.management_ip))
    record = NodeRecord(
        name=name,
        management_ip=source or target.host,
        ssh=target,
        tunnel_interface=tunnel_interface or (existing.tunnel_interface if existing else ""),
    )
    progress.done(f"{name} at {record.management_ip} (via {interface or 'no route'})")

    progress.step(f"{name}: checking the node")
    record = detect(cloud, record, progress, probe=False)
    problems, warnings = check_node(host, cloud.control, record, cloud.records)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise DietStackError(
            f"{name} is not ready to be a compute node; nothing was changed:\n{listing}",
            hint="fix the problems above and run `dietstack node add` again",
        )
    for warning in warnings:
        progress.say(f"      warning: {warning}")
    progress.done("ready")
    return record


def _listed(records: tuple[NodeRecord, ...], record: NodeRecord) -> tuple[NodeRecord, ...]:
    """The inventory with the node in it; a node added again keeps its place (the
    inventory's order is rendered)."""
    if any(r.name == record.name for r in records):
        return tuple(record if r.name == record.name else r for r in records)
    return (*records, record)


def add(cloud: Cloud, target: SshTarget, tunnel_interface: str, progress: Progress) -> Deployment:
    """`dietstack node add`: every step idempotent, the node checked before it changes."""
    require_images(cloud.control)
    # Its own steps, then every container of the control node and of each node.
    per_node = len(services.all_containers(cloud.control.env))
    progress.total = 7 + per_node * (2 + len(cloud.records))
    record = _checked_record(cloud, target, tunnel_interface, progress)
    name = record.name
    host = cloud.links.host(target, name)

    progress.step(f"{name}: Docker")
    ensure_docker_on(host, progress.say, lambda: cloud.links.runtime(target, name))
    progress.done("running")

    progress.step(f"{name}: shipping the compute role's images")
    sent, seconds = ship_images(cloud.control, cloud.links.runtime(target, name), progress.say)
    progress.done(f"{sent / 1024**2:.0f} MB in {seconds:.0f} s")

    progress.step(f"{name}: admitting it in the inventory, the firewall and the NFS export")
    cloud = cloud.saved(_listed(cloud.records, record))
    paths = cloud.control.paths
    cloud = cloud.with_secrets(
        secrets.ensure_node_certificates(paths.secrets_file, cloud.control.env.nodes)
    )
    deploy.apply(cloud.control)
    admit_to_the_queue(cloud)
    progress.done("admitted")

    progress.say(f"== {name}: starting the compute role")
    node, record = prepare(cloud, record, progress)
    cloud = cloud.saved(_listed(cloud.records, record))
    deploy.apply(node)
    for other in cloud.records:
        if other.name != name:
            progress.say(f"== {other.name}: updating its firewall for {name}")
            deploy.apply(prepare(cloud, other, progress)[0])
    progress.step(f"{name}: waiting for nova-compute, the cell mapping and the OVN chassis")
    wait_ready(cloud, node)
    progress.done("serving")
    return node


# --- node remove ---------------------------------------------------------------------


def _delete_instances(cloud: Cloud, name: str, delete_instances: bool, progress: Progress) -> None:
    conn = cloudapi.admin(cloud.control.env)
    progress.step(f"{name}: instances")
    servers = cloudapi.instances_on(conn, name)
    if servers and not delete_instances:
        listing = "\n".join(f"  - {s.name} ({s.id}, {s.status})" for s in servers)
        raise DietStackError(
            f"{len(servers)} instance(s) live on {name}; nothing was changed:\n{listing}",
            hint="pass --drain to move them to other nodes first, or --delete-instances "
            f"to delete them; a node that is gone: `dietstack node evacuate {name}` first",
        )
    for server in servers:
        conn.compute.delete_server(server)
    for server in servers:
        conn.compute.wait_for_delete(server, wait=300)
    progress.done(f"{len(servers)} deleted" if servers else "none")


def _forget(cloud: Cloud, name: str) -> None:
    """Nova, Placement and OVN forget the node."""
    conn = cloudapi.admin(cloud.control.env)
    service = cloudapi.compute_service(conn, name)
    if service is not None:
        conn.compute.disable_service(service)
        conn.compute.delete_service(service)
    # Instances evacuated from it still hold claims on it that only its own
    # nova-compute would have dropped.
    goneprovider.forget(conn, cloud.control.env.url(placement.PORT, ""), name)
    cloud.control.runtime.exec(
        "ovn-sb-db",
        ["ovn-sbctl", "--db=unix:/run/ovn/ovnsb_db.sock", "--if-exists", "chassis-del", name],
    )
    for agent in cloudapi.ovn_agents(conn, name):
        conn.network.delete_agent(agent)


def require_unreachable(cloud: Cloud, name: str) -> None:
    """A node taken for gone (to evacuate, or remove unreached) must be one: a
    compute node of the inventory that does not answer over SSH as itself. Nova's
    down alone is not proof: a nova-compute that crashed or lost RabbitMQ reports
    down while the node's guests run on."""
    if name == cloud.control.node:
        raise DietStackError(
            f"{name} is the control node: it cannot be evacuated or removed",
            hint="`dietstack restore` of a backup brings a lost control node back",
        )
    record = cloud.record(name)
    try:
        check_identity(cloud.links.host(record.ssh, record.name), record)
    except DietStackError:
        return  # not reached, or another machine answers at its address
    raise DietStackError(
        f"{name} still answers over SSH as itself: it is not gone, its guests may still "
        "run; nothing was changed",
        hint=f"`dietstack deploy` brings back its services; to take a working node out: "
        f"`dietstack node remove {name} --drain`",
    )


def _require_gone(cloud: Cloud, name: str) -> None:
    """--gone is for a node that stopped: not one whose nova-compute still reports."""
    require_unreachable(cloud, name)
    service = cloudapi.compute_service(cloudapi.admin(cloud.control.env), name)
    if service is not None and service.state == "up" and not service.is_forced_down:
        raise DietStackError(
            f"{name}'s nova-compute still reports to Nova: it is not gone; nothing was changed",
            hint=f"`dietstack node remove {name}` (without --gone) removes a node that works",
        )


def remove(
    cloud: Cloud, name: str, delete_instances: bool, progress: Progress, gone: bool = False
) -> Cloud:
    """`dietstack node remove`: Nova, Placement and OVN forget the node, its containers
    go, and the firewall and NFS export close for it. A node that is `gone` is not
    reached: its certificate and RabbitMQ password are revoked all the same."""
    record = cloud.record(name)
    require_images(cloud.control)
    if gone:
        _require_gone(cloud, name)
    per_node = len(services.all_containers(cloud.control.env))
    progress.total = 4 + per_node * len(cloud.records)
    _delete_instances(cloud, name, delete_instances, progress)

    # Its daemons stop first: a running nova-compute or ovn-controller would sign in again.
    progress.step(f"{name}: removing its containers")
    if gone:
        progress.done("not reached (gone); revoking its credentials stops it signing in")
    else:
        try:
            progress.done(destroy(cloud, record, None))
        except DietStackError as exc:
            progress.done(f"not reachable: {exc.message} until it is wiped")

    progress.step(f"{name}: removing it from Nova, Placement and OVN")
    _forget(cloud, name)
    progress.done("forgotten")

    progress.step(f"{name}: closing the firewall and the NFS export")
    cloud = cloud.saved(tuple(r for r in cloud.records if r.name != name))
    # Its certificate is revoked before the nodes are brought up to date: each
    # libvirt takes the new revocation list up where it runs.
    cloud = cloud.with_secrets(secrets.forget_node(cloud.control.paths.secrets_file, name))
    deploy.apply(cloud.control)
    admit_to_the_queue(cloud)
    for other in cloud.records:
        deploy.apply(prepare(cloud, other, progress)[0])
    progress.done("closed")
    return cloud


# --- destroy -------------------------------------------------------------------------


def give_back_tunnel_address(host: hostio.Host, nic: str, cidr: str) -> None:
    """Once Open vSwitch is gone, the tunnel NIC gets back the address it lent br-phy."""
    if nic and cidr and not facts.interface_cidr(host, nic):
        host.call(["ip", "addr", "replace", cidr, "dev", nic])


def destroy(cloud: Cloud, record: NodeRecord, data_dir: Path | None) -> str:
    """A compute node's containers and host tables go, and with `data_dir` its data
    directory; the node stays in the inventory (deploy brings it back). Returns
    what was done there, for the node's line."""
    host = cloud.links.host(record.ssh, record.name)
    runtime = cloud.links.runtime(record.ssh, record.name)
    try:
        removed, _ = teardown.destroy(runtime, None, cloud.control.image_tags.get("ovn"))
    except DietStackError as exc:
        exc.message = f"{exc.message}; its containers stay"
        raise
    give_back_tunnel_address(host, record.tunnel_interface, record.facts.get("tunnel_cidr", ""))
    done = f"removed {removed} container(s)"
    if data_dir is None:
        return done
    try:
        kept = teardown.remove_data_dir_on(host, data_dir)
    except DietStackError as exc:
        exc.message = f"{done}, but {exc.message}; the data stays"
        raise
    return f"{done} and the data" + (f"; {kept}" if kept else "")
