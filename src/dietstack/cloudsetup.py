"""What a new cloud should have for its first VM, made once and idempotently by deploy:
a set of flavors, and for the demo project a network routed to `public` and
security group rules that allow ping and SSH.
"""

from __future__ import annotations

from dataclasses import dataclass

from dietstack.keystone_api import Keystone
from dietstack.register import DEMO_PROJECT, DEMO_USER, admin_client
from dietstack.render import Env
from dietstack.services import neutron, nova


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int


FLAVORS = (
    Flavor("m1.tiny", 1, 256, 1),
    Flavor("m1.small", 1, 2048, 20),
    Flavor("m1.medium", 2, 4096, 40),
    Flavor("m1.large", 4, 8192, 80),
)
DEMO_NETWORK = "demo-net"
DEMO_SUBNET = "demo-subnet"
DEMO_CIDR = "10.0.0.0/24"
DEMO_ROUTER = "demo-router"
#: (protocol, port) pairs opened in the demo project's default security group.
DEMO_RULES = (("icmp", None), ("tcp", 22))


def ensure_flavors(admin: Keystone, env: Env) -> None:
    base = env.url(nova.PORT, "/v2.1")
    for flavor in FLAVORS:
        body = {
            "name": flavor.name,
            "vcpus": flavor.vcpus,
            "ram": flavor.ram_mb,
            "disk": flavor.disk_gb,
        }
        admin.ensure(base, "flavors", body, "nova-api", name=flavor.name)


def ensure_demo_network(demo: Keystone, env: Env) -> None:
    base = env.url(neutron.PORT, "/v2.0")
    net = demo.ensure(base, "networks", {"name": DEMO_NETWORK}, "neutron-server", name=DEMO_NETWORK)
    subnet_body = {"name": DEMO_SUBNET, "network_id": net, "ip_version": 4, "cidr": DEMO_CIDR}
    subnet = demo.ensure(base, "subnets", subnet_body, "neutron-server", name=DEMO_SUBNET)
    public = demo.get(f"{base}/networks", "neutron-server", name=neutron.PHYSNET)["networks"]
    router_body = {
        "name": DEMO_ROUTER,
        "external_gateway_info": {"network_id": public[0]["id"]},
    }
    router = demo.ensure(base, "routers", router_body, "neutron-server", name=DEMO_ROUTER)
    ports = demo.get(f"{base}/ports", "neutron-server", device_id=router)["ports"]
    if not any(ip["subnet_id"] == subnet for port in ports for ip in port["fixed_ips"]):
        demo.put(
            f"{base}/routers/{router}/add_router_interface", {"subnet_id": subnet}, "neutron-server"
        )


def ensure_demo_rules(demo: Keystone, env: Env) -> None:
    base = env.url(neutron.PORT, "/v2.0")
    groups = demo.get(f"{base}/security-groups", "neutron-server", name="default")
    group = groups["security_groups"][0]
    for protocol, port in DEMO_RULES:
        exists = any(
            rule["direction"] == "ingress"
            and rule["protocol"] == protocol
            and rule["ethertype"] == "IPv4"
            and rule.get("port_range_min") == port
            for rule in group["security_group_rules"]
        )
        if exists:
            continue
        rule = {
            "security_group_id": group["id"],
            "direction": "ingress",
            "ethertype": "IPv4",
            "protocol": protocol,
        }
        if port is not None:
            rule |= {"port_range_min": port, "port_range_max": port}
        demo.post(f"{base}/security-group-rules", {"security_group_rule": rule}, "neutron-server")


def demo_client(env: Env) -> Keystone:
    return Keystone(env.keystone_url, env.secrets["demo_password"], DEMO_USER, DEMO_PROJECT)


def ensure_all(env: Env) -> None:
    ensure_flavors(admin_client(env), env)
    demo = demo_client(env)
    ensure_demo_network(demo, env)
    ensure_demo_rules(demo, env)
