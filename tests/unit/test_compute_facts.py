from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest

from dietstack import services
from dietstack.engine import kvmprobe
from dietstack.errors import BuildFailed, DietStackError
from dietstack.hosts import facts
from dietstack.ops.icmp import _checksum
from dietstack.progress import Progress
from dietstack.render import Env
from dietstack.services import libvirt, nfs, openvswitch

from .fakes import FakeHost, FakeRuntime
from .helpers import make_env


def test_explicit_virt_type_is_used_without_probing() -> None:
    def probe() -> bool:
        raise AssertionError("must not probe")

    assert facts.hypervisor("qemu", True, probe) == ("qemu", "")
    assert facts.hypervisor("kvm", True, probe) == ("kvm", "")


def test_auto_falls_back_to_emulation_with_a_notice() -> None:
    assert facts.hypervisor("auto", True, lambda: True) == ("kvm", "")
    chosen, notice = facts.hypervisor("auto", True, lambda: False)
    assert chosen == "qemu" and "QEMU emulation" in notice
    chosen, notice = facts.hypervisor("auto", False, lambda: True)
    assert chosen == "qemu" and "no /dev/kvm" in notice


def test_probe_result_is_remembered_on_the_node(tmp_path: Path) -> None:
    node = FakeHost({"uname -r": (0, "6.1.0\n"), "hostname": (0, "compute-1\n")})
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return False

    first = facts.collect(node, "auto", tmp_path / "state", probe)
    second = facts.collect(node, "auto", tmp_path / "state", probe)
    assert first["hypervisor"] == second["hypervisor"] == "qemu" and len(calls) == 1
    assert first["node_name"] == "compute-1"
    cached = node.files[str(tmp_path / "state" / "facts.json")]
    assert json.loads(cached)["hypervisor"] == "qemu"


def test_planning_never_remembers_a_guess(tmp_path: Path) -> None:
    node = FakeHost()
    assert facts.collect(node, "auto", tmp_path / "state", None)["hypervisor"] == "qemu"
    assert node.files == {}


def test_tunnel_facts_follow_the_address_onto_the_bridge() -> None:
    moved = FakeHost(
        {
            "ip -json -4 addr show dev eth1": (0, "[]"),
            "ip -json -4 addr show dev br-phy": (
                0,
                '[{"addr_info": [{"family": "inet", "local": "10.199.0.11", "prefixlen": 24}]}]',
            ),
            "ip -json link show dev eth1": (0, '[{"mtu": 9000}]'),
        }
    )
    assert facts.tunnel(moved, "eth1", "eth0", "10.198.0.11") == {
        "tunnel_ip": "10.199.0.11",
        "tunnel_cidr": "10.199.0.11/24",
        "mtu": "9000",
    }
    plain = FakeHost({"ip -json link show dev eth0": (0, '[{"mtu": 1500}]')})
    assert facts.tunnel(plain, "", "eth0", "10.198.0.11")["tunnel_ip"] == "10.198.0.11"


def env(**settings: object) -> Env:
    base: dict[str, object] = {
        "management_ip": "192.168.1.20",
        "external_cidr": "172.24.4.0/24",
        "external_interface": "",
        "nfs_share": "",
        "ovs_datapath": "netdev",
        "node_name": "node1",
    }
    return Env({**base, **settings}, {})


def test_local_share_is_bind_mounted_where_os_brick_expects_it() -> None:
    local = env()
    assert nfs.share(local) == "192.168.1.20:/cinder" and nfs.served_here(local)
    digest = hashlib.md5(b"192.168.1.20:/cinder", usedforsecurity=False).hexdigest()
    assert nfs.mount_point("/var/lib/nova/mnt", local) == f"/var/lib/nova/mnt/{digest}"
    assert nfs.local_exports(local).text == f"192.168.1.20:/cinder {nfs.LOCAL_EXPORT}\n"
    assert [c.name for c in nfs.containers(local)] == ["nfs-server"]


def test_an_external_share_is_mounted_for_real() -> None:
    nas = env(nfs_share="nas.lan:/volumes")
    assert nfs.share(nas) == "nas.lan:/volumes" and not nfs.served_here(nas)
    assert nfs.local_exports(nas).text == "" and nfs.containers(nas) == []
    assert nfs.local_export_mounts(nas) == ()


def test_single_nic_host_routes_floating_ips_with_nat() -> None:
    script = openvswitch._vswitchd_script(env())
    assert "ip addr replace 172.24.4.1/24 dev br-ex" in script
    assert "nft -f /etc/openvswitch/dietstack-nat.nft" in script
    assert "userspace-tso-enable=true" in script
    assert "masquerade" in openvswitch._nat_rules(env())


def test_spare_nic_is_plugged_into_br_ex_instead() -> None:
    script = openvswitch._vswitchd_script(env(external_interface="eth1", ovs_datapath="system"))
    assert "add-port br-ex eth1" in script
    assert "ip addr replace" not in script and "nft -f" not in script
    assert "userspace-tso" not in script
    # Switching from the single-NIC mode takes its address and NAT away.
    assert "ip addr flush dev br-ex" in script and "nft delete table ip dietstack" in script


def test_a_nic_no_longer_configured_is_unplugged_from_br_ex() -> None:
    for script in (
        openvswitch._external_setup(env()),
        openvswitch._external_setup(env(external_interface="eth2")),
    ):
        assert "del-port br-ex $port" in script
    assert "patch-*|eth2)" in openvswitch._external_setup(env(external_interface="eth2"))


def test_icmp_checksum() -> None:
    # An echo request header with a zero checksum field and no payload.
    assert _checksum(bytes([8, 0, 0, 0, 0, 1, 0, 1])) == 0xF7FD


def test_the_bridges_are_configured_only_once_vswitchd_has_made_their_devices() -> None:
    """After a reboot `add-br` finds the bridge in the database and returns before
    the new vswitchd has made its device: the script waits for the device first."""
    tunnel = env(tunnel_interface="eth1", tunnel_cidr="10.199.0.11/24", ovs_datapath="netdev")
    script = openvswitch._vswitchd_script(tunnel)
    for bridge in ("br-ex", "br-phy"):
        added = script.index(f"add-br {bridge}")
        waited = script.index(f"until [ -e /sys/class/net/{bridge} ]")
        first_use = script.index(f"dev {bridge}")
        assert added < waited < first_use, bridge
    # The line is shell that returns at once for a device that is there.
    done = subprocess.run(["sh", "-eu", "-c", openvswitch._await_device("lo")], timeout=5)
    assert done.returncode == 0


def test_a_tunnel_interface_without_an_address_is_refused_with_the_fix() -> None:
    bare = FakeHost(
        {
            "ip -json -4 addr show dev eth1": (0, "[]"),
            "ip -json -4 addr show dev br-phy": (0, "[]"),
            "ip -json link show dev eth1": (0, '[{"mtu": 1500}]'),
        }
    )
    with pytest.raises(DietStackError) as refused:
        facts.tunnel(bare, "eth1", "eth0", "10.198.0.11")
    assert "tunnel_interface eth1 has no IPv4 address" in refused.value.message
    assert "eth1" in refused.value.hint


def test_the_probe_is_wanted_early_only_when_collect_would_boot_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    node = FakeHost({"uname -r": (0, "6.1.0\n"), "hostname": (0, "compute-1\n")})
    assert facts.probe_wanted(node, "auto", state)
    assert not facts.probe_wanted(node, "qemu", state)
    no_kvm = FakeHost({"test -e /dev/kvm": (1, "")})
    assert not facts.probe_wanted(no_kvm, "auto", state)
    facts.collect(node, "auto", state, lambda: False)
    assert not facts.probe_wanted(node, "auto", state)  # the answer is kept
    node.answers["uname -r"] = (0, "6.2.0\n")
    assert facts.probe_wanted(node, "auto", state)  # a new kernel asks again


def test_an_early_probe_starts_once_its_images_are_there_and_answers_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    booted: list[dict[str, str]] = []

    def boots(runtime, tags, data_dir, progress, node=None):  # type: ignore[no-untyped-def]
        booted.append(tags)
        return True

    monkeypatch.setattr(kvmprobe, "kvm_guest_boots", boots)
    early = kvmprobe.EarlyProbe(FakeRuntime().as_runtime(), tmp_path, Progress(0, io.StringIO()))
    early.images_built({"base": "b:1"})
    assert booted == []
    early.images_built({"base": "b:1", "libvirt": "l:1"})
    early.images_built({"base": "b:1", "libvirt": "l:1", "openstack": "o:1"})
    assert early.answer({"base": "b:1", "libvirt": "l:1", "openstack": "o:1"}) is True
    assert booted == [{"base": "b:1", "libvirt": "l:1"}]


def test_an_early_probe_that_failed_raises_on_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boots(runtime, tags, data_dir, progress, node=None):  # type: ignore[no-untyped-def]
        raise BuildFailed("building the tiny image failed", details="E: Failed to fetch")

    monkeypatch.setattr(kvmprobe, "kvm_guest_boots", boots)
    early = kvmprobe.EarlyProbe(FakeRuntime().as_runtime(), tmp_path, Progress(0, io.StringIO()))
    early.images_built({"base": "b:1", "libvirt": "l:1"})
    with pytest.raises(BuildFailed):
        early.answer({"base": "b:1", "libvirt": "l:1"})


def test_libvirt_sees_dev_kvm_only_where_guests_run_on_kvm() -> None:
    emulated = services.find(make_env(hypervisor="qemu"), "libvirt").prepare
    on_kvm = services.find(make_env(hypervisor="kvm"), "libvirt").prepare
    assert libvirt.HIDE_KVM in emulated and libvirt.KVM_GROUP not in emulated
    assert libvirt.KVM_GROUP in on_kvm and libvirt.HIDE_KVM not in on_kvm
