"""Facts about this node that deploy finds out once and the containers render with.

- node_name: the host name Nova and OVN know this node by;
- ovs_datapath: `system` where the kernel has the openvswitch module, else `netdev`
  (Open vSwitch's userspace datapath);
- hypervisor: `kvm` only where a KVM guest really boots, else `qemu` (emulation).
  /dev/kvm existing is not enough: on some hosts KVM guests crash.
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

KVM_DEVICE = Path("/dev/kvm")


def ovs_datapath() -> str:
    if Path("/sys/module/openvswitch").exists():
        return "system"
    try:
        loaded = subprocess.run(["modprobe", "openvswitch"], capture_output=True).returncode == 0
    except OSError:  # no modprobe: no modules to load either
        loaded = False
    return "system" if loaded else "netdev"


def hypervisor(virt_type: str, kvm_guest_boots: Callable[[], bool]) -> tuple[str, str]:
    """The virt_type to use, and a one-line notice when `auto` fell back to emulation."""
    if virt_type != "auto":
        return virt_type, ""
    if not KVM_DEVICE.exists():
        return "qemu", "no /dev/kvm on this host: virtual machines use QEMU emulation"
    if kvm_guest_boots():
        return "kvm", ""
    return "qemu", "a KVM test guest did not boot on this host: virtual machines use QEMU emulation"


def collect(
    virt_type: str, state_dir: Path, kvm_guest_boots: Callable[[], bool] | None
) -> dict[str, str]:
    """The facts, with the (slow) KVM probe cached per kernel in the state directory.

    Without a probe (when only planning) an unknown answer is taken as `qemu`
    and not remembered.
    """
    cache = state_dir / "facts.json"
    key = f"{platform.release()} {KVM_DEVICE.exists()} {virt_type}"
    try:
        cached = json.loads(cache.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        cached = {}
    if cached.get("key") == key:
        chosen, notice = cached["hypervisor"], cached.get("notice", "")
    elif kvm_guest_boots is None:
        chosen, notice = hypervisor(virt_type, lambda: False)
    else:
        chosen, notice = hypervisor(virt_type, kvm_guest_boots)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "hypervisor": chosen, "notice": notice}))
    return {
        "node_name": socket.gethostname(),
        "ovs_datapath": ovs_datapath(),
        "hypervisor": chosen,
        "hypervisor_notice": notice,
    }


def placeholder() -> dict[str, str]:
    """Stand-in facts for work that only needs the shape of the cloud (ports, names)."""
    return {
        "node_name": socket.gethostname(),
        "ovs_datapath": "netdev",
        "hypervisor": "qemu",
        "hypervisor_notice": "",
    }
