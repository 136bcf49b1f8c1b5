"""A compute node's Deployment: its facts, its settings and its share of the secrets.

The node is reached through the command's one link to it (cloud.Links), checked
to be the node it joined as (nodeidentity.py), and deployed with the same
plan/apply as the control node, from inputs it is given, never from what it
reports its name to be.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from dietstack import services
from dietstack.app.cloud import Cloud
from dietstack.engine import kvmprobe
from dietstack.engine.converge import NodePaths
from dietstack.engine.deploy import Deployment
from dietstack.engine.inventory import NodeRecord
from dietstack.engine.nodeidentity import check_identity
from dietstack.errors import DietStackError
from dietstack.hosts import facts
from dietstack.progress import Progress
from dietstack.render import Env, render_files

#: Where a node keeps its inputs: like the control node's defaults.
NODE_CONFIG_DIR = Path("/etc/dietstack")
#: What a compute node renders with of the facts found on it (besides its name).
NODE_FACTS = ("ovs_datapath", "hypervisor", "tunnel_ip", "tunnel_cidr", "mtu", "nfs_client")


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


def node_deployment(cloud: Cloud, record: NodeRecord, progress: Progress) -> Deployment:
    """A compute node's Deployment from its record (and the facts the record holds)."""
    control = cloud.control
    node_facts = {
        # The name it joined as, never the one it reports: the name picks the role and
        # the certificate its secrets are rendered for.
        "node_name": record.name,
        **{key: record.facts.get(key, "") for key in NODE_FACTS},
    }
    node = Deployment(
        settings=control.settings,
        secrets={},
        paths=NodePaths(
            secrets_file=NODE_CONFIG_DIR / "secrets.yaml",
            overrides_dir=NODE_CONFIG_DIR / "overrides",
            data_dir=control.settings.data_dir,
        ),
        runtime=cloud.links.runtime(record.ssh, record.name),
        image_tags=control.image_tags,
        image_ids=control.image_ids,
        progress=progress,
        facts=node_facts,
        nodes=control.nodes,
        host=cloud.links.host(record.ssh, record.name),
        own_settings=record.own_settings(),
        overrides_source=control.paths.overrides_dir,
        compute_rpc_pin=control.compute_rpc_pin,
    )
    return replace(node, secrets=secrets_for(node.rendered_settings, control.secrets))


def detect(cloud: Cloud, record: NodeRecord, progress: Progress, probe: bool) -> NodeRecord:
    """The record with the facts found on the node now. With `probe` the KVM probe may
    run there; a read-only command neither probes nor loads a kernel module."""
    control = cloud.control
    host = cloud.links.host(record.ssh, record.name)

    def kvm_probe() -> bool:
        runtime = cloud.links.runtime(record.ssh, record.name)
        node = kvmprobe.NodeCopy(host, runtime, control.settings.data_dir)
        return kvmprobe.kvm_guest_boots(
            control.runtime, control.image_tags, control.paths.data_dir, progress, node
        )

    found = facts.of_node(
        host,
        str(control.settings.management_ip),
        control.settings.virt_type,
        control.settings.data_dir / "state",
        record.tunnel_interface,
        record.management_ip,
        kvm_probe if probe else None,
        load_modules=not cloud.read_only,
    )
    return record.with_facts(found)


def prepare(
    cloud: Cloud, record: NodeRecord, progress: Progress, probe: bool = True
) -> tuple[Deployment, NodeRecord]:
    """Check the node is the node it joined as, then its Deployment and its record.

    A read-only cloud takes the facts its last deploy recorded, so nothing on the
    node changes; otherwise the facts are found again."""
    check_identity(cloud.links.host(record.ssh, record.name), record)
    if not cloud.read_only or not record.facts:
        record = detect(cloud, record, progress, probe and not cloud.read_only)
    return node_deployment(cloud, record, progress), record


def reachable(cloud: Cloud, complain: Callable[[str], None]) -> list[Deployment]:
    """Each compute node's Deployment as deployed, for verbs that use what runs there;
    a node that cannot be reached (or is not the node it joined as) is named through
    `complain` and skipped. The nodes are reached side by side (each over its own
    SSH connection), and named in the inventory's order."""

    def reach(record: NodeRecord) -> Deployment | DietStackError:
        try:
            return prepare(cloud, record, Progress(total=0), probe=False)[0]
        except DietStackError as exc:
            return exc

    with ThreadPoolExecutor(REACHED_AT_ONCE) as pool:
        answers = list(pool.map(reach, cloud.records))
    found = []
    for record, answer in zip(cloud.records, answers, strict=True):
        if isinstance(answer, DietStackError):
            complain(f"{record.name}: {answer.message}")
            continue
        found.append(answer)
    return found


#: Nodes reached at once: each mostly waits on its SSH connection.
REACHED_AT_ONCE = 8
