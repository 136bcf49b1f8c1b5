"""A compute node's share of the cloud: its containers, its configuration, its secrets."""

from __future__ import annotations

from dietstack import nodes, services
from dietstack.render import Env, render_files

from .test_converge import make_env
from .test_firewall import nft_set, rules_of

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
        "nova-compute",
        "neutron-ovn-metadata-agent",
    ]
    assert "mariadb" in [c.name for c in services.all_containers(control_env())]


def test_a_compute_node_gets_no_database_or_admin_secrets() -> None:
    env = compute_env()
    needed = nodes.secrets_for(env.settings, env.secrets)
    assert sorted(needed) == [
        "metadata_proxy_shared_secret",
        "nova_keystone_password",
        "rabbitmq_password",
    ]
    # And the containers render with only those.
    for container in services.all_containers(Env(env.settings, needed)):
        render_files(container, None)


def test_endpoints_are_the_control_nodes_and_listeners_the_nodes_own() -> None:
    nova = text_of(compute_env(), "nova-compute", "/etc/nova/nova.conf")
    assert "my_ip = 192.168.1.21" in nova
    assert "server_listen = 192.168.1.21" in nova
    assert "novncproxy_base_url = http://192.168.1.20:6080/vnc_lite.html" in nova
    assert "@192.168.1.20:5672/openstack" in nova
    assert "auth_url = http://192.168.1.20:5000/v3" in nova
    assert "[database]" not in nova and "keystone_authtoken" not in nova
    agent = text_of(
        compute_env(), "neutron-ovn-metadata-agent", "/etc/neutron/neutron_ovn_metadata_agent.ini"
    )
    assert "nova_metadata_host = 192.168.1.20" in agent
    assert "ovn_sb_connection = tcp:192.168.1.20:6642" in agent


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
