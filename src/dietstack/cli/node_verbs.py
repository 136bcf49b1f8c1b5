"""`dietstack node`: add, list, drain, undrain, evacuate and remove compute nodes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from dietstack.apis import cloudapi
from dietstack.app import cloud as clouds
from dietstack.app import nodelist, nodes
from dietstack.app.cloud import Cloud
from dietstack.cli.base import Context, cli, pass_context
from dietstack.errors import DietStackError
from dietstack.hosts.provision import ensure_command
from dietstack.hosts.sshhost import SshTarget
from dietstack.ops import drain, evacuate
from dietstack.progress import Progress


@cli.group("node")
def node_group() -> None:
    """Add, list and remove compute nodes (reached over SSH)."""


@node_group.command("add")
@click.argument("host")
@click.option("--user", default="root", show_default=True, help="SSH user (root, or sudo-less).")
@click.option("--port", default=22, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--identity",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Private key for SSH (default: ssh's own keys).",
)
@click.option(
    "--tunnel-interface",
    default="",
    help="A spare NIC of the node for Geneve tunnels (needed without the openvswitch module).",
)
@pass_context
def node_add(
    ctx: Context, host: str, user: str, port: int, identity: Path | None, tunnel_interface: str
) -> None:
    """Make HOST a compute node of this cloud (over SSH, as root, key auth)."""
    progress = Progress(total=7)
    started = time.monotonic()
    ensure_command("ssh", "openssh-client", "nodes are reached over SSH", progress.say)
    cloud = clouds.for_change(ctx.config_path, progress)
    cloud = cloud.with_secrets(clouds.stored_secrets(cloud))
    target = SshTarget(host, user, port, str(identity.resolve()) if identity else "")
    node = nodes.add(cloud, target, tunnel_interface, progress)
    click.echo(f"{node.node} is a compute node of the cloud ({time.monotonic() - started:.0f} s).")


@node_group.command("list")
@pass_context
def node_list(ctx: Context) -> None:
    """Every node: address, role, health, nova-compute, OVN chassis, instances, free RAM."""
    cloud = clouds.read_only(ctx.config_path)
    click.echo(nodelist.render_rows(nodelist.rows(cloud)))


@node_group.command("remove")
@click.argument("name")
@click.option(
    "--drain", "drain_first", is_flag=True, help="Move its instances to other nodes first."
)
@click.option(
    "--delete-instances", is_flag=True, help="Delete the instances that live on the node."
)
@click.option(
    "--gone",
    is_flag=True,
    help="The node is gone for good: take it out without reaching it (after `dietstack "
    "node evacuate`); its certificate and RabbitMQ password are revoked.",
)
@pass_context
def node_remove(
    ctx: Context, name: str, drain_first: bool, delete_instances: bool, gone: bool
) -> None:
    """Remove compute node NAME from the cloud (refused while instances live there,
    unless they are moved away with --drain, or deleted)."""
    if gone and drain_first:
        raise DietStackError(
            "--drain needs the node running; a gone node's instances are rebuilt elsewhere",
            hint=f"`dietstack node evacuate {name}`, then `dietstack node remove {name} --gone`",
        )
    progress = Progress(total=4)
    cloud = clouds.for_change(ctx.config_path, progress)
    cloud.record(name)
    if not (drain_first or delete_instances or gone) and sys.stdin.isatty():
        count = len(cloudapi.instances_on(cloudapi.admin(cloud.control.env), name))
        drain_first = count > 0 and click.confirm(
            f"{count} instance(s) live on {name}. Drain it first (move them to other nodes)?",
            default=True,
        )
    if drain_first:
        _drain(cloud, name)
    nodes.remove(cloud, name, delete_instances, progress, gone)
    click.echo(f"{name} is no longer part of the cloud.")


def _drain(cloud: Cloud, name: str) -> None:
    started = time.monotonic()
    moved, stuck = drain.drain(cloudapi.admin(cloud.control.env), name, Progress(total=1))
    for item in moved:
        click.echo(f"  {item.name}: {item.how} migration to {item.target} ({item.seconds:.0f} s)")
    if stuck:
        listing = "\n".join(f"  - {item.name} ({item.server_id}): {item.reason}" for item in stuck)
        raise DietStackError(
            f"{len(stuck)} instance(s) could not leave {name}; it stays disabled:\n{listing}",
            hint="deal with them (e.g. `openstack server show ID`), then run "
            f"`dietstack node drain {name}` again",
        )
    click.echo(
        f"{name} is drained: no instances, nothing new is scheduled there "
        f"({time.monotonic() - started:.0f} s)."
    )


@node_group.command("drain")
@click.argument("name")
@pass_context
def node_drain(ctx: Context, name: str) -> None:
    """Empty node NAME for maintenance: disable its nova-compute and move every
    instance to other nodes (live, or cold when stopped)."""
    cloud = clouds.deployed(ctx.config_path)
    _drain(cloud, clouds.require_node(cloud, name))


@node_group.command("undrain")
@click.argument("name")
@pass_context
def node_undrain(ctx: Context, name: str) -> None:
    """Let the scheduler place instances on node NAME again."""
    cloud = clouds.deployed(ctx.config_path)
    drain.undrain(cloudapi.admin(cloud.control.env), clouds.require_node(cloud, name))
    click.echo(f"{name} takes new instances again.")


@node_group.command("evacuate")
@click.argument("name")
@click.option(
    "--rebuild-local",
    is_flag=True,
    help="Also rebuild instances booted from an image, from that image (their disk was "
    "on the node: what they wrote there is lost).",
)
@pass_context
def node_evacuate(ctx: Context, name: str, rebuild_local: bool) -> None:
    """Rebuild the instances of node NAME, which is gone for good, on the other nodes
    (Nova's evacuate; refused while its nova-compute still reports). Then `dietstack
    node remove NAME --gone` takes it out."""
    cloud = clouds.deployed(ctx.config_path)
    host = clouds.require_node(cloud, name)
    nodes.require_unreachable(cloud, host)
    started = time.monotonic()
    done, left = evacuate.evacuate(
        cloudapi.admin(cloud.control.env), host, rebuild_local, Progress(total=1)
    )
    for item in done:
        click.echo(f"  {item.name}: rebuilt on {item.target} ({item.seconds:.0f} s)")
    if left:
        listing = "\n".join(f"  - {item.name} ({item.server_id}): {item.reason}" for item in left)
        raise DietStackError(
            f"{len(left)} instance(s) of {name} were not rebuilt:\n{listing}",
            hint=f"deal with them, then `dietstack node evacuate {name}` again",
        )
    click.echo(
        f"{name}: {len(done)} instance(s) rebuilt elsewhere ({time.monotonic() - started:.0f} s); "
        f"`dietstack node remove {name} --gone` takes the node out (should it come "
        f"back instead: `dietstack node undrain {name}`)."
    )
