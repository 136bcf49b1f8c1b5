"""A compute node's share of the cloud: its containers, its configuration, its secrets."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import cast

import pytest

from dietstack import services
from dietstack.app import nodedeploy, nodeimages
from dietstack.engine import afterup, deploy, nodechecks, secrets
from dietstack.errors import DietStackError
from dietstack.hosts.dockerdata import ContainerState
from dietstack.hosts.hostnet import HostNetwork
from dietstack.hosts.runtime import DockerRuntime
from dietstack.render import Env, render_files

from .fakes import healthy_node
from .helpers import control_deployment, make_env, nft_set, record, rules_of

CONTROL = {
    "name": "node1",
    "management_ip": "192.168.1.20",
    "roles": ["control", "compute"],
    "tunnel_ip": "10.199.0.2",
    "mtu": "1500",
}
NODE = {
    "name": "compute-1",
    "management_ip": "192.168.1.21",
    "roles": ["compute"],
    "tunnel_ip": "10.199.0.11",
    "mtu": "1450",
}


def compute_env(**changes: object) -> Env:
    """compute-1 as it renders itself."""
    settings = {
        "node_name": "compute-1",
        "management_ip": "192.168.1.21",
        "tunnel_ip": "10.199.0.11",
        "nodes": [CONTROL, NODE],
        **changes,
    }
    return make_env(**settings)


def control_env() -> Env:
    return make_env(nodes=[CONTROL, NODE], tunnel_ip="10.199.0.2")


def text_of(env: Env, name: str, path: str) -> str:
    files = render_files(services.find(env, name), None)
    return files[path][0].decode()


def test_a_compute_node_runs_only_the_compute_role_and_its_firewall() -> None:
    names = [container.name for container in services.all_containers(compute_env())]
    assert names == [
        "firewall",
        "openvswitch-db",
        "openvswitch-vswitchd",
        "ovn-controller",
        "libvirt",
        "nova-ssh",
        "nova-compute",
        "neutron-ovn-metadata-agent",
    ]
    assert "mariadb" in [c.name for c in services.all_containers(control_env())]


def test_a_compute_node_gets_no_database_or_admin_secrets() -> None:
    env = compute_env()
    needed = nodedeploy.secrets_for(env.settings, env.secrets)
    # Its own certificate, not the CA's key nor another node's certificate.
    assert sorted(needed) == [
        "libvirt_ca_certificate",
        "libvirt_compute-1_certificate",
        "libvirt_compute-1_key",
        "libvirt_crl",
        "metadata_proxy_shared_secret",
        "nova_keystone_password",
        "nova_ssh_host_private_key",
        "nova_ssh_host_public_key",
        "nova_ssh_private_key",
        "nova_ssh_public_key",
        "rabbitmq_compute-1_password",
        # The public CA its services verify the APIs with; never the server key.
        "tls_trust",
    ]
    # And the containers render with only those.
    for container in services.all_containers(Env(env.settings, needed)):
        render_files(container, None)


def test_endpoints_are_the_control_nodes_and_listeners_the_nodes_own() -> None:
    nova = text_of(compute_env(), "nova-compute", "/etc/nova/nova.conf")
    assert "my_ip = 192.168.1.21" in nova
    assert "server_listen = 192.168.1.21" in nova
    assert "novncproxy_base_url = https://192.168.1.20:6080/vnc_lite.html" in nova
    # RabbitMQ over TLS only, with the node's own certificate.
    assert "@192.168.1.20:5671/openstack" in nova
    assert "ssl = true" in nova
    assert "ssl_cert_file = /etc/dietstack-tls/messaging/node.crt" in nova
    assert "auth_url = https://192.168.1.20:5000/v3" in nova
    # Its clients verify the APIs with the cloud's CA; it holds no server key.
    assert "cafile = /etc/dietstack-tls/public-ca.pem" in nova
    assert "/etc/dietstack-tls/public.key" not in {
        file.path for c in services.all_containers(compute_env()) for file in c.files
    }
    assert "[database]" not in nova and "keystone_authtoken" not in nova
    agent = text_of(
        compute_env(), "neutron-ovn-metadata-agent", "/etc/neutron/neutron_ovn_metadata_agent.ini"
    )
    assert "nova_metadata_host = 192.168.1.20" in agent
    # OVN's southbound database over SSL, with the node's own certificate.
    assert "ovn_sb_connection = ssl:192.168.1.20:6642" in agent
    assert "ovn_sb_private_key = /etc/ovn/tls/key.pem" in agent
    controller = services.find(compute_env(), "ovn-controller")
    assert "external_ids:ovn-remote=ssl:192.168.1.20:6642" in " ".join(controller.prepare)
    assert "--certificate=/etc/ovn/tls/cert.pem" in controller.command
    assert text_of(compute_env(), "ovn-controller", "/etc/ovn/tls/cert.pem") == (
        "s-libvirt_compute-1_certificate"
    )


def test_only_the_control_node_is_the_gateway_chassis() -> None:
    compute = services.find(compute_env(), "ovn-controller").prepare[-1]
    assert "ovn-encap-ip=10.199.0.11" in compute and "enable-chassis-as-gw" not in compute
    assert "remove Open_vSwitch . external_ids ovn-cms-options" in compute
    control = services.find(control_env(), "ovn-controller").prepare[-1]
    assert "enable-chassis-as-gw" in control and "ovn-bridge-mappings=public:br-ex" in control
    script = "/etc/openvswitch/dietstack-vswitchd.sh"
    assert "br-ex" not in text_of(compute_env(), "openvswitch-vswitchd", script)
    assert "br-ex" in text_of(control_env(), "openvswitch-vswitchd", script)


def test_the_userspace_datapath_takes_over_only_the_tunnel_interface() -> None:
    script = "/etc/openvswitch/dietstack-vswitchd.sh"
    env = compute_env(tunnel_interface="eth1", tunnel_cidr="10.199.0.11/24")
    text = text_of(env, "openvswitch-vswitchd", script)
    assert "add-port br-phy eth1" in text and "ip addr replace 10.199.0.11/24 dev br-phy" in text
    assert "eth0" not in text
    # The kernel datapath uses the NIC as it is.
    plain = text_of(
        compute_env(tunnel_interface="eth1", tunnel_cidr="10.199.0.11/24", ovs_datapath="system"),
        "openvswitch-vswitchd",
        script,
    )
    assert "br-phy" not in plain


def test_every_firewall_admits_every_nodes_addresses() -> None:
    for env in (compute_env(), control_env()):
        admitted = nft_set(rules_of(env), "nodes_ipv4")
        assert admitted == {"192.168.1.20", "10.199.0.2", "192.168.1.21", "10.199.0.11"}
    # A compute node opens only its own ports: VNC and Geneve, not RabbitMQ.
    node_tcp = nft_set(rules_of(compute_env()), "node_tcp")
    assert "5900-5999" in node_tcp and "5672" not in node_tcp


def test_volumes_on_a_compute_node_are_nfs_mounts_of_the_control_nodes_share() -> None:
    env = compute_env()
    exports = text_of(env, "nova-compute", "/etc/dietstack-local-exports")
    assert exports == ""
    libvirt = services.find(env, "libvirt")
    mounts = {mount.target: mount for mount in libvirt.volumes}
    assert mounts["/var/lib/nova/mnt"].propagation == "rslave"
    control = text_of(control_env(), "nova-compute", "/etc/dietstack-local-exports")
    assert control.startswith("192.168.1.20:/cinder ")


def test_neutron_takes_the_smallest_underlay_mtu() -> None:
    neutron = text_of(control_env(), "neutron-server", "/etc/neutron/neutron.conf")
    assert "global_physnet_mtu = 1450" in neutron


def test_a_ready_node_passes_the_checks(host: HostNetwork) -> None:
    control = control_deployment(host, "system")
    problems, warnings = nodechecks.check_node(healthy_node(), control, record(), [])
    assert problems == [] and warnings == []


def test_node_checks_name_every_problem_before_anything_changes(host: HostNetwork) -> None:
    control = control_deployment(host, "netdev")
    node = healthy_node()
    node.files["/etc/os-release"] = 'ID=fedora\nPRETTY_NAME="Fedora Linux 41"\n'
    node.files["/proc/meminfo"] = "MemAvailable:   500000 kB\n"
    node.answers["date +%s.%N"] = (0, f"{time.time() + 60:.3f}\n")
    found = record(node_name="node1", ovs_datapath="netdev", mtu="1200", nfs_client="")
    problems, warnings = nodechecks.check_node(node, control, found, [])
    text = "\n".join(problems)
    assert "Fedora Linux 41" in text and "control node's" in text
    assert "GiB of memory" in text and "clock is +60" in text and "MTU is 1200" in text
    assert "--tunnel-interface" in text and "set tunnel_interface in the settings" in text
    assert len(warnings) == 1 and "no NFS client" in warnings[0]


def test_the_tunnel_never_takes_the_nic_that_carries_ssh(host: HostNetwork) -> None:
    control = control_deployment(host, "system")
    found = replace(record(ovs_datapath="netdev"), tunnel_interface="eth0")
    problems, _ = nodechecks.check_node(healthy_node(), control, found, [])
    assert any("carries the node's management address" in p for p in problems)


def test_migrations_listen_on_the_nodes_address_over_tls_only() -> None:
    env = compute_env()
    daemon = text_of(env, "libvirt", "/etc/libvirt/libvirtd.conf")
    assert 'listen_addr = "192.168.1.21"' in daemon
    assert "listen_tls = 1" in daemon and "listen_tcp = 0" in daemon
    assert "tls_no_verify_certificate = 0" in daemon
    # The revocation list is read at every start, not only at a reload.
    assert 'crl_file = "/etc/pki/CA/cacrl.pem"' in daemon
    qemu = text_of(env, "libvirt", "/etc/libvirt/qemu.conf")
    assert 'migration_address = "192.168.1.21"' in qemu and "default_tls_x509_verify = 1" in qemu
    files = render_files(services.find(env, "libvirt"), None)
    assert files["/etc/pki/qemu/server-key.pem"] == (
        env.secrets["libvirt_compute-1_key"].encode(),
        0o600,
    )
    nova = text_of(env, "nova-compute", "/etc/nova/nova.conf")
    assert "live_migration_scheme = tls" in nova
    assert "live_migration_inbound_addr = 192.168.1.21" in nova
    assert "live_migration_with_native_tls = true" in nova


def test_nova_ssh_takes_only_the_clouds_key_on_the_nodes_address() -> None:
    env = compute_env()
    sshd = text_of(env, "nova-ssh", "/etc/nova-ssh/sshd_config")
    assert "ListenAddress 192.168.1.21" in sshd and "Port 8022" in sshd
    assert "PasswordAuthentication no" in sshd
    keys = text_of(env, "nova-ssh", "/etc/nova-ssh/authorized_keys")
    # One key, the cloud's, with every SSH feature restricted.
    (line,) = keys.splitlines()
    assert line.startswith("restrict") and line.endswith(f" {env.secrets['nova_ssh_public_key']}")
    known = text_of(env, "nova-compute", "/root/.ssh/known_hosts")
    assert known == f"* {env.secrets['nova_ssh_host_public_key']}\n"
    assert "StrictHostKeyChecking yes" in text_of(env, "nova-compute", "/root/.ssh/config")


def test_compute_images_need_no_certificate_of_a_real_node(host: HostNetwork) -> None:
    """A deploy with nodes asks which images a compute node runs; the made-up node it
    renders for that has no certificate among the real secrets."""
    control = control_deployment(host, "system")
    control = replace(control, secrets={name: "x" for name in secrets.names(["node1"])})
    images = nodeimages.compute_images(control)
    assert {"openstack", "ovn", "libvirt"} <= set(images) and "horizon" not in images


class StatesRuntime:
    """Containers as Docker lists them, each in the state given (else running, healthy)."""

    def __init__(self, names: list[str], states: dict[str, tuple[str, str | None]]) -> None:
        self.names, self.states = names, states

    def containers(self, label: str) -> dict[str, ContainerState]:
        listed = {}
        for name in self.names:
            status, health = self.states.get(name, ("running", "healthy"))
            if status != "missing":
                listed[name] = ContainerState(name, status, health, {}, 0)
        return listed

    def logs_tail(self, name: str) -> str:
        return f"last line of {name}"


def test_deploy_ends_naming_every_container_that_is_not_up(host: HostNetwork) -> None:
    control = control_deployment(host, "system")
    control = replace(control, secrets=secrets.placeholder())
    names = [c.name for c in services.all_containers(control.env) if not c.oneshot]
    control = replace(control, runtime=cast(DockerRuntime, StatesRuntime(names, {})))
    deploy.check_all_up(control)
    broken: dict[str, tuple[str, str | None]] = {
        "nova-api": ("running", "unhealthy"),
        "cinder-volume": ("exited", None),
        "keystone": ("missing", None),
    }
    control = replace(control, runtime=cast(DockerRuntime, StatesRuntime(names, broken)))
    with pytest.raises(DietStackError) as raised:
        deploy.check_all_up(control)
    message = raised.value.message
    assert "nova-api (unhealthy)" in message and "cinder-volume (exited)" in message
    assert "keystone (missing)" in message and message.startswith("node1: not up")
    assert "last line of" in raised.value.details


class MappingRuntime:
    """nova_api.host_mappings in MariaDB, filled by `nova-manage cell_v2 discover_hosts`."""

    def __init__(self, mapped: list[str], discovered: list[str]) -> None:
        self.mapped, self.discovered = mapped, discovered
        self.commands: list[tuple[str, list[str]]] = []

    def exec(self, name: str, command: list[str]) -> tuple[int, str]:
        self.commands.append((name, command))
        if "discover_hosts" in command:
            self.mapped += self.discovered
            return 0, ""
        return 0, "".join(f"{host}\n" for host in self.mapped)


def test_a_mapped_host_is_not_mapped_again(host: HostNetwork) -> None:
    control = control_deployment(host, "system")
    runtime = MappingRuntime(["node1", "compute-1"], [])
    control = replace(control, runtime=cast(DockerRuntime, runtime))
    afterup.map_compute_host(control, "node1")
    assert [name for name, _ in runtime.commands] == ["mariadb"]


def test_an_unmapped_host_is_discovered_until_it_is_mapped(host: HostNetwork) -> None:
    control = control_deployment(host, "system")
    runtime = MappingRuntime(["compute-10"], ["node1"])
    control = replace(control, runtime=cast(DockerRuntime, runtime))
    afterup.map_compute_host(control, "node1")
    assert [name for name, _ in runtime.commands] == ["mariadb", "nova-conductor", "mariadb"]
    # A name that only contains the host's name is not a mapping of it.
    runtime = MappingRuntime(["node10"], [])
    control = replace(control, runtime=cast(DockerRuntime, runtime))
    with pytest.raises(DietStackError, match="compute host to cell1"):
        afterup.map_compute_host(control, "node1", timeout=0)


def test_rabbitmq_takes_nodes_over_tls_only_and_the_control_node_over_loopback() -> None:
    from dietstack.engine import keys
    from dietstack.model import SERVICE_ORGANIZATION

    conf = text_of(control_env(), "rabbitmq", "/etc/rabbitmq/rabbitmq.conf")
    assert "listeners.tcp.1 = 127.0.0.1:5672" in conf
    assert "listeners.ssl.1 = 192.168.1.20:5671" in conf
    assert "ssl_options.verify = verify_peer" in conf
    assert "ssl_options.fail_if_no_peer_cert = true" in conf
    control_nova = text_of(control_env(), "nova-conductor", "/etc/nova/nova.conf")
    assert "@127.0.0.1:5672/openstack" in control_nova and "ssl = true" not in control_nova
    # RabbitMQ's certificate is of the nodes' CA, but libvirt admits no such certificate.
    ca_key, ca = keys.certificate_authority("test CA")
    _, cert = keys.node_certificate(ca_key, ca, "node1", "192.168.1.20", SERVICE_ORGANIZATION)
    assert keys.certificate_fits(cert, ca, "node1", "192.168.1.20", SERVICE_ORGANIZATION)
    assert not keys.certificate_fits(cert, ca, "node1", "192.168.1.20")
