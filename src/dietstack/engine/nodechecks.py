"""What `node add` checks on a machine before it changes anything on it.

Each problem says what is wrong and how to fix it, and `node add` lists them all
at once and stops; warnings (a slower but working setup) do not stop it. Which
machine the node is, and the address the control node reaches it from, are
nodeidentity.py's checks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from dietstack.engine.deploy import Deployment
from dietstack.engine.inventory import NodeRecord
from dietstack.engine.nodeidentity import identity_problems, route_problems
from dietstack.engine.preflight import free_space, read_meminfo
from dietstack.hosts import hostio
from dietstack.hosts.provision import os_release_is_debian_like

#: What a compute node needs at least, besides its instances.
MIN_NODE_MEMORY = 1 * 1024**3
MIN_NODE_DISK = 4 * 1024**3
#: How far a node's clock may be off the control node's (tokens and reports expire).
MAX_CLOCK_SKEW = 5.0
#: Geneve with OVN's options on IPv4: the smallest underlay MTU worth running.
MIN_MTU = 1280


def _os_problem(host: hostio.Host) -> list[str]:
    text = host.read_text(Path("/etc/os-release")) or ""
    if os_release_is_debian_like(text):
        return []
    pretty = next((line for line in text.splitlines() if line.startswith("PRETTY_NAME=")), "")
    return [
        f"the node runs {pretty[12:].strip(chr(34)) or 'an unknown OS'}; DietStack "
        "supports Debian and Ubuntu nodes"
    ]


def check_node(
    host: hostio.Host,
    control: Deployment,
    record: NodeRecord,
    records: Iterable[NodeRecord],
) -> tuple[list[str], list[str]]:
    """Problems that stop `node add` before anything changes, and warnings."""
    problems: list[str] = []
    warnings: list[str] = []
    found = record.facts
    problems += _os_problem(host)
    problems += identity_problems(control, record, records)
    if not found.get("management_interface"):
        problems.append(
            f"the node has no route to the control node's address {control.env.ip}; "
            "connect it to the management network"
        )
    problems += route_problems(control, record)
    if not hostio.exists(host, Path("/dev/net/tun")):
        problems.append("the node has no /dev/net/tun (the `tun` kernel module); load it")
    memory = read_meminfo(host).get("MemAvailable", 0)
    if memory and memory < MIN_NODE_MEMORY:
        problems.append(
            f"the node has {memory / 1024**3:.1f} GiB of memory available; a compute node "
            f"needs at least {MIN_NODE_MEMORY / 1024**3:.0f} GiB plus its instances'"
        )
    space = free_space(host, control.settings.data_dir)
    if space is not None and space[1] < MIN_NODE_DISK:
        problems.append(
            f"the node has {space[1] / 1024**3:.1f} GiB free for {control.settings.data_dir}; "
            f"a compute node needs at least {MIN_NODE_DISK / 1024**3:.0f} GiB"
        )
    skew = _clock_skew(host)
    if skew is not None and abs(skew) > MAX_CLOCK_SKEW:
        problems.append(
            f"the node's clock is {skew:+.1f} s off the control node's; run NTP "
            "(e.g. `apt-get install systemd-timesyncd` or chrony) on both"
        )
    mtu = int(found.get("mtu") or 1500)
    if mtu < MIN_MTU:
        problems.append(f"the tunnel interface's MTU is {mtu}; Geneve needs at least {MIN_MTU}")
    problems += _tunnel_problems(control, record)
    if not found.get("nfs_client"):
        warnings.append(
            "the node's kernel has no NFS client: its instances' volumes are mounted with "
            "DietStack's userspace NFS client (FUSE, slower); install the kernel's NFS "
            "modules for the kernel's"
        )
        if not hostio.exists(host, Path("/dev/fuse")):
            problems.append(
                "the node's kernel has neither an NFS client nor FUSE (/dev/fuse): volumes "
                "could not be attached there; load the `nfs` or the `fuse` module"
            )
    return problems, warnings


def _clock_skew(host: hostio.Host) -> float | None:
    before = time.time()
    code, output = host.call(["date", "+%s.%N"])
    after = time.time()
    try:
        return float(output.strip()) - (before + after) / 2 if code == 0 else None
    except ValueError:
        return None


def _tunnel_problems(control: Deployment, record: NodeRecord) -> list[str]:
    problems = []
    found = record.facts
    nic = record.tunnel_interface
    if nic and nic == found.get("management_interface"):
        problems.append(
            f"--tunnel-interface {nic} carries the node's management address (and this SSH "
            "session); use a spare NIC, or leave it out"
        )
    elif nic and not found.get("tunnel_ip"):
        problems.append(f"the node's tunnel interface {nic} has no IPv4 address; give it one")
    if found.get("ovs_datapath") == "netdev" and not nic:
        problems.append(
            "the node's kernel has no openvswitch module, and Open vSwitch's userspace "
            "datapath sends Geneve tunnels only through a NIC it owns: pass "
            "--tunnel-interface with a spare NIC that reaches the other nodes (never the "
            "one carrying SSH), or install the kernel's openvswitch module"
        )
    if control.env.ovs_datapath == "netdev" and not control.settings.tunnel_interface:
        problems.append(
            "the control node runs Open vSwitch's userspace datapath (no openvswitch kernel "
            "module) without a tunnel interface: set tunnel_interface in the settings to a "
            "spare NIC that reaches the nodes and run `dietstack deploy`, or load the module"
        )
    return problems
