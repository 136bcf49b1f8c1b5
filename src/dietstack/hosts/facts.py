"""Facts about one node that deploy finds out and the node's containers render with.

- node_name: the host name Nova and OVN know this node by (one name for both); a
  compute node keeps the name it joined as (nodeidentity.check_identity);
- ovs_datapath: `system` where the kernel has the openvswitch module, else `netdev`
  (Open vSwitch's userspace datapath);
- hypervisor: `kvm` only where a KVM guest really boots, else `qemu` (emulation).
  /dev/kvm existing is not enough: on some hosts KVM guests crash;
- tunnel_ip / tunnel_cidr: where the node's Geneve tunnels end (its tunnel interface,
  else its management address), and mtu: that interface's MTU.

Every fact is read through the host adapter, so the same code serves this host
and a node over SSH.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dietstack.errors import DietStackError
from dietstack.hosts.hostio import Host
from dietstack.services.openvswitch import TUNNEL_BRIDGE

KVM_DEVICE = Path("/dev/kvm")
DEFAULT_MTU = 1500


def ovs_datapath(host: Host, load_modules: bool = True) -> str:
    """`system` where the openvswitch module is loaded (or, when allowed, loads)."""
    check = "test -d /sys/module/openvswitch"
    loaded = host.call(["sh", "-c", f"{check} || modprobe openvswitch" if load_modules else check])
    return "system" if loaded[0] == 0 else "netdev"


def nfs_client(host: Host, load_modules: bool = True) -> bool:
    """Whether the kernel mounts NFS (loading its module, when allowed)."""
    check = "grep -qw nfs /proc/filesystems"
    return host.call(["sh", "-c", f"{check} || modprobe nfs" if load_modules else check])[0] == 0


def hypervisor(
    virt_type: str, has_kvm: bool, kvm_guest_boots: Callable[[], bool]
) -> tuple[str, str]:
    """The virt_type to use, and a one-line notice when `auto` fell back to emulation."""
    if virt_type != "auto":
        return virt_type, ""
    if not has_kvm:
        return "qemu", "no /dev/kvm on this host: virtual machines use QEMU emulation"
    if kvm_guest_boots():
        return "kvm", ""
    return "qemu", "a KVM test guest did not boot on this host: virtual machines use QEMU emulation"


def _ip_json(host: Host, *args: str) -> list[dict[str, Any]]:
    code, output = host.call(["ip", "-json", *args])
    if code != 0:
        return []
    try:
        data = json.loads(output or "[]")
    except json.JSONDecodeError:
        return []
    return data if isinstance(data, list) else []


def interface_cidr(host: Host, interface: str) -> str:
    """The first IPv4 address of an interface, as address/prefix ("" if none)."""
    for link in _ip_json(host, "-4", "addr", "show", "dev", interface):
        for info in link.get("addr_info") or []:
            if info.get("family") == "inet":
                return f"{info['local']}/{info['prefixlen']}"
    return ""


def interface_mtu(host: Host, interface: str) -> int:
    for link in _ip_json(host, "link", "show", "dev", interface):
        return int(link.get("mtu") or DEFAULT_MTU)
    return DEFAULT_MTU


def route_to(host: Host, address: str) -> tuple[str, str]:
    """The interface and source address this node uses to reach `address`."""
    for route in _ip_json(host, "-4", "route", "get", address):
        return str(route.get("dev", "")), str(route.get("prefsrc", ""))
    return "", ""


def tunnel(host: Host, tunnel_interface: str, management_interface: str, ip: str) -> dict[str, str]:
    """Where Geneve tunnels end on this node, and the MTU of the interface they use.

    Once Open vSwitch owns a tunnel interface, its address sits on the tunnel bridge."""
    if not tunnel_interface:
        return {
            "tunnel_ip": ip,
            "tunnel_cidr": "",
            "mtu": str(interface_mtu(host, management_interface)),
        }
    cidr = interface_cidr(host, tunnel_interface) or interface_cidr(host, TUNNEL_BRIDGE)
    if not cidr:
        # Without it the node's tunnels would silently end on another address than
        # the one the other nodes were told: its instances would lose their network.
        raise DietStackError(
            f"{host.name}: tunnel_interface {tunnel_interface} has no IPv4 address "
            f"(nor has {TUNNEL_BRIDGE}, which takes it over once Open vSwitch runs)",
            hint=f"give {tunnel_interface} its address again in {host.name}'s network "
            "configuration (or bring the interface up), then run the command again",
        )
    return {
        "tunnel_ip": cidr.split("/")[0],
        "tunnel_cidr": cidr,
        "mtu": str(interface_mtu(host, tunnel_interface)),
    }


def collect(
    host: Host,
    virt_type: str,
    state_dir: Path,
    kvm_guest_boots: Callable[[], bool] | None,
    load_modules: bool = True,
) -> dict[str, str]:
    """Name, datapath and hypervisor, with the (slow) KVM probe cached per kernel in
    the node's state directory.

    Without a probe (when only planning) an unknown answer is taken as `qemu`
    and not remembered; without `load_modules` no kernel module is loaded.
    """
    cache = state_dir / "facts.json"
    key, has_kvm = _probe_key(host, virt_type)
    cached = _cached(host, cache)
    if cached.get("key") == key:
        chosen, notice = cached["hypervisor"], cached.get("notice", "")
    elif kvm_guest_boots is None:
        chosen, notice = hypervisor(virt_type, has_kvm, lambda: False)
    else:
        chosen, notice = hypervisor(virt_type, has_kvm, kvm_guest_boots)
        record = {"key": key, "hypervisor": chosen, "notice": notice}
        host.write_file(cache, json.dumps(record).encode(), 0o644)
    return {
        "node_name": host.call(["hostname"])[1].strip(),
        "ovs_datapath": ovs_datapath(host, load_modules),
        "hypervisor": chosen,
        "hypervisor_notice": notice,
    }


def probe_wanted(host: Host, virt_type: str, state_dir: Path) -> bool:
    """Would `collect` boot the KVM probe (no answer kept for this kernel, /dev/kvm
    there, `auto`)? Deploy then starts it early, beside the image builds."""
    key, has_kvm = _probe_key(host, virt_type)
    if virt_type != "auto" or not has_kvm:
        return False
    return bool(_cached(host, state_dir / "facts.json").get("key") != key)


def _probe_key(host: Host, virt_type: str) -> tuple[str, bool]:
    """What the kept probe answer depends on, and whether /dev/kvm is there."""
    has_kvm = host.call(["test", "-e", str(KVM_DEVICE)])[0] == 0
    kernel = host.call(["uname", "-r"])[1].strip()
    return f"{kernel} {has_kvm} {virt_type}", has_kvm


def _cached(host: Host, cache: Path) -> dict[str, Any]:
    try:
        found = json.loads(host.read_text(cache) or "{}")
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def of_node(
    host: Host,
    control_ip: str,
    virt_type: str,
    state_dir: Path,
    tunnel_interface: str,
    management_ip: str,
    kvm_guest_boots: Callable[[], bool] | None,
    load_modules: bool = True,
) -> dict[str, str]:
    """A compute node's facts, found on the node itself."""
    interface, source = route_to(host, control_ip)
    found = collect(host, virt_type, state_dir, kvm_guest_boots, load_modules)
    found |= {"management_interface": interface, "management_source": source}
    found |= tunnel(host, tunnel_interface, interface, management_ip)
    found["nfs_client"] = "yes" if nfs_client(host, load_modules) else ""
    return found


def placeholder(name: str = "") -> dict[str, str]:
    """Stand-in facts for work that only needs the shape of the cloud (ports, names)."""
    import socket

    return {
        "node_name": name or socket.gethostname(),
        "ovs_datapath": "netdev",
        "hypervisor": "qemu",
        "hypervisor_notice": "",
    }
