"""What a new cloud should have for its first VM, made once and idempotently by deploy:
a set of flavors, and for the demo project a network routed to `public` and
security group rules that allow ping and SSH.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dietstack.apis import cloudapi, cloudrest
from dietstack.engine.register import DEMO_PROJECT, DEMO_USER
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
    # A real distribution's smallest comfortable guest (Debian, Ubuntu, Fedora, Rocky).
    Flavor("m1.mini", 1, 1024, 10),
)
DEMO_NETWORK = "demo-net"
DEMO_SUBNET = "demo-subnet"
DEMO_CIDR = "10.0.0.0/24"
DEMO_ROUTER = "demo-router"
#: (protocol, port) pairs opened in the demo project's default security group.
DEMO_RULES = (("icmp", None), ("tcp", 22))


def ensure_flavors(admin: Any, env: Env) -> None:
    base = env.url(nova.PORT, "/v2.1")
    for flavor in FLAVORS:
        body = {
            "name": flavor.name,
            "vcpus": flavor.vcpus,
            "ram": flavor.ram_mb,
            "disk": flavor.disk_gb,
        }
        cloudrest.ensure(admin, base, "flavors", body, "nova-api", name=flavor.name)


def ensure_demo_network(demo: Any, env: Env) -> None:
    base = env.url(neutron.PORT, "/v2.0")
    api = "neutron-server"
    net = cloudrest.ensure(demo, base, "networks", {"name": DEMO_NETWORK}, api, name=DEMO_NETWORK)
    subnet_body = {"name": DEMO_SUBNET, "network_id": net, "ip_version": 4, "cidr": DEMO_CIDR}
    subnet = cloudrest.ensure(demo, base, "subnets", subnet_body, api, name=DEMO_SUBNET)
    public = cloudrest.get(demo, f"{base}/networks", api, name=neutron.PHYSNET)["networks"]
    router_body = {
        "name": DEMO_ROUTER,
        "external_gateway_info": {"network_id": public[0]["id"]},
    }
    router = cloudrest.ensure(demo, base, "routers", router_body, api, name=DEMO_ROUTER)
    ports = cloudrest.get(demo, f"{base}/ports", api, device_id=router)["ports"]
    if not any(ip["subnet_id"] == subnet for port in ports for ip in port["fixed_ips"]):
        interface = f"{base}/routers/{router}/add_router_interface"
        cloudrest.put(demo, interface, {"subnet_id": subnet}, api)


def ensure_demo_rules(demo: Any, env: Env) -> None:
    base = env.url(neutron.PORT, "/v2.0")
    groups = cloudrest.get(demo, f"{base}/security-groups", "neutron-server", name="default")
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
        cloudrest.post(
            demo, f"{base}/security-group-rules", {"security_group_rule": rule}, "neutron-server"
        )


def demo_connection(env: Env) -> Any:
    """The demo user's connection, in the demo project (kept for the process)."""
    password = env.secrets["demo_password"]
    return cloudapi.connect(
        env.keystone_url, DEMO_USER, password, DEMO_PROJECT, cloudapi.ca_file(env)
    )


def ensure_all(env: Env) -> None:
    ensure_flavors(cloudapi.admin(env), env)
    demo = demo_connection(env)
    ensure_demo_network(demo, env)
    ensure_demo_rules(demo, env)


def ensure_public_network(conn: Any, env: Env) -> None:
    """The shared external network `public` that floating IPs come from."""
    base = env.url(neutron.PORT, "/v2.0")
    network = cloudrest.ensure(
        conn,
        base,
        "networks",
        {
            "name": neutron.PHYSNET,
            "router:external": True,
            "provider:network_type": "flat",
            "provider:physical_network": neutron.PHYSNET,
        },
        "neutron-server",
        name=neutron.PHYSNET,
    )
    subnet = neutron.public_subnet(env) | {"network_id": network}
    cloudrest.ensure(conn, base, "subnets", subnet, "neutron-server", network_id=network)
