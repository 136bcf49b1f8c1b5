"""One command's view of the cloud: its inputs read once, one link per node.

Every verb opens the cloud here, in one of three ways:

- `for_deploy`: deploy, start and restore may change the hosts: Docker is
  installed and started, the images are built, the secrets and node certificates
  are made, and the facts of this host are found (the KVM probe included);
- `for_change`: node add, remove and drain change the cloud with the images that
  are there; Docker is started if needed, the facts are found again;
- `read_only`: plan, status, node list, logs and the other verbs that only look
  change nothing on any host. Facts are those the last deploy recorded (in the
  rendered settings on this host, in the inventory for the other nodes), found
  without loading any module where no deploy recorded them yet.

The result is a `Cloud` value: the settings, the stored secrets and the inventory
as read at the start, the control node's Deployment, and the `Links` that hold
one host adapter and one Docker runtime per node for the whole command. A change
to the inventory makes a new `Cloud` (`with_records`); nothing is written back
into a Cloud, a Deployment or a node record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import yaml

from dietstack.engine import (
    cloudmark,
    deploy,
    inventory,
    kvmprobe,
    preflight,
    publictls,
    secrets,
    settings,
    upgradestate,
)
from dietstack.engine.converge import NodePaths
from dietstack.engine.deploy import Deployment
from dietstack.engine.inventory import NodeRecord
from dietstack.errors import DietStackError, DockerUnavailable
from dietstack.hosts import facts, hostnet
from dietstack.hosts.hostio import Host, LocalHost
from dietstack.hosts.provision import ensure_docker
from dietstack.hosts.runtime import DockerRuntime
from dietstack.hosts.sshhost import SshHost, SshTarget
from dietstack.model import CONTROL_ROLES, PUBLIC_TRUST
from dietstack.progress import Progress
from dietstack.render import Env
from dietstack.services import horizon

KNOWN_HOSTS = "known_hosts"


@dataclass(frozen=True)
class Inputs:
    """What a command reads from the control host once: settings, secrets, inventory."""

    config_path: Path
    settings: settings.Settings
    #: The stored secrets; empty before the first deploy.
    secrets: dict[str, str]
    records: tuple[NodeRecord, ...]

    @property
    def paths(self) -> NodePaths:
        return NodePaths(
            secrets_file=secrets.secrets_path(self.config_path),
            overrides_dir=self.config_path.parent / "overrides",
            data_dir=self.settings.data_dir,
        )

    @property
    def known_hosts(self) -> Path:
        return self.config_path.parent / KNOWN_HOSTS

    @property
    def inventory_path(self) -> Path:
        return inventory.path_for(self.config_path)

    def deployed_release(self) -> str | None:
        """The OpenStack release the last deploy ran (None before the first)."""
        rendered = self.paths.effective_settings
        if not rendered.exists():
            return None
        return str((yaml.safe_load(rendered.read_text()) or {}).get("release") or "") or None

    def deployed_facts(self) -> dict[str, Any]:
        """The facts the last deploy rendered this node's containers with (none before)."""
        rendered = self.paths.effective_settings
        if not rendered.exists():
            return {}
        written = dict(yaml.safe_load(rendered.read_text()) or {})
        # The node list is the inventory's, read afresh; the rest are facts.
        own = {*self.settings.as_dict(), "nodes"}
        return {key: value for key, value in written.items() if key not in own}


def read_inputs(config_path: Path) -> Inputs:
    """Settings (checked), stored secrets and inventory: each read once per command."""
    effective = settings.load(config_path, hostnet.probe())
    return Inputs(
        config_path=config_path,
        settings=effective,
        secrets=secrets.read_if_present(secrets.secrets_path(config_path)),
        records=inventory.load(inventory.path_for(config_path), str(effective.management_ip)),
    )


# --- links to the nodes ----------------------------------------------------------------

OpenHost = Callable[[str, SshTarget, Path], Host]
OpenRuntime = Callable[[Host, str], DockerRuntime]


def _ssh_host(name: str, target: SshTarget, known_hosts: Path) -> Host:
    return SshHost(name, target, known_hosts)


def _forwarded_engine(host: Host, name: str) -> DockerRuntime:
    # Links open every node's host with `_ssh_host`: an SshHost.
    return DockerRuntime.connect(cast(SshHost, host).docker_url(), name)


class Links:
    """One host adapter and one Docker runtime per node for a whole command: a node is
    reached over one SSH connection and one forwarded Docker socket, however many
    steps use it."""

    def __init__(
        self,
        known_hosts: Path,
        open_host: OpenHost = _ssh_host,
        open_runtime: OpenRuntime = _forwarded_engine,
    ) -> None:
        self.known_hosts = known_hosts
        self._open_host = open_host
        self._open_runtime = open_runtime
        self._hosts: dict[SshTarget, Host] = {}
        self._runtimes: dict[SshTarget, DockerRuntime] = {}

    def host(self, target: SshTarget, name: str = "") -> Host:
        if target not in self._hosts:
            self._hosts[target] = self._open_host(name or target.host, target, self.known_hosts)
        return self._hosts[target]

    def runtime(self, target: SshTarget, name: str) -> DockerRuntime:
        if target not in self._runtimes:
            self._runtimes[target] = self._open_runtime(self.host(target, name), name)
        return self._runtimes[target]


# --- the cloud ---------------------------------------------------------------------------


def control_record(control_facts: dict[str, Any], management_ip: str) -> dict[str, Any]:
    """The control node's own entry of the node list the containers render with."""
    return {
        "name": control_facts["node_name"],
        "management_ip": management_ip,
        "roles": list(CONTROL_ROLES),
        "tunnel_ip": control_facts.get("tunnel_ip") or management_ip,
        "mtu": control_facts.get("mtu", ""),
    }


def node_list(control: Deployment, records: tuple[NodeRecord, ...]) -> list[dict[str, Any]]:
    """Every node, the control node first."""
    own = control_record(control.facts, str(control.settings.management_ip))
    return [own, *(record.rendered() for record in records)]


@dataclass(frozen=True)
class Cloud:
    """The cloud as one command sees it (see the module's docstring)."""

    inputs: Inputs
    control: Deployment
    links: Links
    #: Whether the command may change the hosts (deploy, node add) or only look.
    read_only: bool

    @property
    def records(self) -> tuple[NodeRecord, ...]:
        return self.inputs.records

    @property
    def config_path(self) -> Path:
        return self.inputs.config_path

    def record(self, name: str) -> NodeRecord:
        return inventory.named(self.records, name)

    def with_records(self, records: tuple[NodeRecord, ...]) -> Cloud:
        """The cloud with another inventory (not written: see `saved`)."""
        control = replace(self.control, nodes=node_list(self.control, records))
        return replace(self, inputs=replace(self.inputs, records=records), control=control)

    def saved(self, records: tuple[NodeRecord, ...]) -> Cloud:
        """The cloud with this inventory, written to nodes.yaml."""
        inventory.save(self.inputs.inventory_path, records)
        return self.with_records(records)

    def with_secrets(self, values: dict[str, str]) -> Cloud:
        return replace(self, control=replace(self.control, secrets=values))


def _control_facts(
    local: Host,
    effective: settings.Settings,
    paths: NodePaths,
    probe: Callable[[], bool] | None,
    may_load_modules: bool,
) -> dict[str, str]:
    found = facts.collect(
        local, effective.virt_type, paths.state_dir, probe, load_modules=may_load_modules
    )
    found |= facts.tunnel(
        local,
        effective.tunnel_interface,
        effective.management_interface,
        str(effective.management_ip),
    )
    return found


def _open(
    inputs: Inputs,
    runtime: DockerRuntime,
    values: dict[str, str],
    found: dict[str, Any],
    progress: Progress,
    read_only: bool,
    images: tuple[dict[str, str], dict[str, str]] | None = None,
) -> Cloud:
    """The Cloud value, running the images given (tags and IDs), else those of this
    DietStack version that are here."""
    tags, ids = images or deploy.images_for(runtime, inputs.settings, progress, build=False)
    control = Deployment(
        settings=inputs.settings,
        secrets=values,
        paths=inputs.paths,
        runtime=runtime,
        image_tags=tags,
        image_ids=ids,
        progress=progress,
        facts=found,
        host=LocalHost(),
    )
    control = replace(control, nodes=node_list(control, inputs.records))
    return Cloud(inputs, control, Links(inputs.known_hosts), read_only)


def refuse_a_release_change(inputs: Inputs) -> None:
    upgradestate.refuse_a_release_change(
        inputs.config_path,
        inputs.deployed_release(),
        inputs.settings.release,
        inputs.paths.state_dir,
    )


def for_deploy(config_path: Path, progress: Progress, upgrading: bool = False) -> Cloud:
    """The cloud for `deploy`, `start` and `restore` (and `upgrade`, which alone may
    change the release): checked, images built, secrets made."""
    inputs = read_inputs(config_path)
    if not upgrading:
        refuse_a_release_change(inputs)
    paths = inputs.paths
    cloudmark.check(paths.data_dir, paths.secrets_file, inputs.secrets)
    runtime = ensure_docker(progress.say)
    env_for_checks = Env(
        {**inputs.settings.as_dict(), **facts.placeholder()}, secrets.placeholder()
    )
    preflight.check_host(env_for_checks, paths.data_dir, runtime)
    # The KVM probe needs only two small images: on a first deploy it runs while
    # the large ones still build.
    early = kvmprobe.EarlyProbe(runtime, paths.data_dir, progress)
    wanted = facts.probe_wanted(LocalHost(), inputs.settings.virt_type, paths.state_dir)
    images = deploy.images_for(
        runtime,
        inputs.settings,
        progress,
        build=True,
        images_built=early.images_built if wanted else None,
    )
    tags = images[0]
    values = secrets.ensure(paths.secrets_file)
    cloudmark.record(paths.data_dir, values)

    def probe() -> bool:
        return early.answer(tags)

    found = _control_facts(LocalHost(), inputs.settings, paths, probe, may_load_modules=True)
    if found["hypervisor_notice"]:
        progress.say(f"Note: {found['hypervisor_notice']}")
    cloud = _open(inputs, runtime, values, found, progress, read_only=False, images=images)
    secrets.ensure_node_certificates(paths.secrets_file, cloud.control.env.nodes)
    env = cloud.control.env
    names = publictls.Names.of(horizon.names(env))
    own = preflight.user_certificate(env)
    return cloud.with_secrets(secrets.ensure_public_tls(paths.secrets_file, names, own))


def for_change(config_path: Path, progress: Progress) -> Cloud:
    """The cloud for verbs that change it with the images there are (node add, remove,
    drain): Docker started if needed, facts found again, no image built."""
    inputs = read_inputs(config_path)
    refuse_a_release_change(inputs)
    paths = inputs.paths
    cloudmark.check(paths.data_dir, paths.secrets_file, inputs.secrets)
    runtime = ensure_docker(progress.say)
    values = secrets.or_placeholders(inputs.secrets)
    found = _control_facts(LocalHost(), inputs.settings, paths, None, may_load_modules=True)
    return _open(inputs, runtime, values, found, progress, read_only=False)


def engine_or_explain() -> DockerRuntime:
    """This host's Docker engine, for verbs that must not start it."""
    try:
        return DockerRuntime.connect()
    except DockerUnavailable as exc:
        raise DietStackError(
            f"the Docker engine does not answer on this host ({exc.message}); this command "
            "only looks, and starts nothing",
            hint="`dietstack deploy` (or `dietstack start`) starts the Docker engine and the cloud",
        ) from None


def read_only(config_path: Path, progress: Progress | None = None) -> Cloud:
    """The cloud as deployed, for verbs that only look: nothing on any host changes."""
    inputs = read_inputs(config_path)
    runtime = engine_or_explain()
    values = secrets.or_placeholders(inputs.secrets)
    found = inputs.deployed_facts()
    if not found.get("node_name"):
        found = _control_facts(
            LocalHost(), inputs.settings, inputs.paths, None, may_load_modules=False
        )
    return _open(inputs, runtime, values, found, progress or Progress(total=0), read_only=True)


def require_node(cloud: Cloud, name: str) -> str:
    """A node that runs nova-compute: any node of the inventory, the control node too."""
    known = [node.name for node in cloud.control.env.nodes]
    if name not in known:
        raise DietStackError(
            f"there is no node {name!r} (nodes: {', '.join(known)})",
            hint="`dietstack node list` shows them",
        )
    return name


def for_teardown(config_path: Path, progress: Progress) -> Cloud:
    """The cloud for `destroy`: whatever state it is in, with the facts it was
    deployed with (Docker started if needed; nothing else is checked or found)."""
    inputs = read_inputs(config_path)
    runtime = ensure_docker(progress.say)
    found = {**facts.placeholder(), **inputs.deployed_facts()}
    values = secrets.or_placeholders(inputs.secrets)
    return _open(inputs, runtime, values, found, progress, read_only=False)


def deployed(config_path: Path, progress: Progress | None = None) -> Cloud:
    """A deployed cloud, read only, for verbs that use its APIs (stop, verify, backup):
    its secrets must be there."""
    cloud = read_only(config_path, progress)
    secrets.required(cloud.inputs.secrets, cloud.control.paths.secrets_file)
    return cloud


def deployed_env(config_path: Path) -> Env:
    """The Env the control node's containers were rendered with, read from this host's
    files alone (no engine, no node): for verbs that only print (openrc)."""
    inputs = read_inputs(config_path)
    values = secrets.required(inputs.secrets, inputs.paths.secrets_file)
    found = {**facts.placeholder(), **inputs.deployed_facts()}
    return Env({**inputs.settings.as_dict(), **found}, values)


def stored_secrets(cloud: Cloud) -> dict[str, str]:
    """The cloud's real secrets (not stand-ins): a verb that changes nodes needs them."""
    return secrets.required(cloud.inputs.secrets, cloud.control.paths.secrets_file)


def public_ca_certificate(config_path: Path) -> str:
    """What verifies the certificate of the cloud's APIs and dashboard (PEM): its own
    CA, or the CA of the user's certificate."""
    values = secrets.read_existing(secrets.secrets_path(config_path))
    certificate = values.get(PUBLIC_TRUST, "")
    if not certificate:
        raise DietStackError(
            "this cloud has no CA certificate yet",
            hint="run `dietstack deploy`: it makes the CA and the server certificate",
        )
    return certificate
