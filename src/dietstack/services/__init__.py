"""Every service of the cloud, in the order deploy brings them up.

Each service module reads top to bottom: its containers, their configuration,
its one-shot bootstrap step and what it registers in the Keystone catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dietstack.model import COMPUTE, CONTROL, Container, Endpoint, Port
from dietstack.render import Env
from dietstack.services import (
    cinder,
    firewall,
    glance,
    heat,
    horizon,
    keystone,
    libvirt,
    mariadb,
    memcached,
    neutron,
    nfs,
    nova,
    openvswitch,
    ovn,
    placement,
    rabbitmq,
)

#: The role of what runs on every node.
ALL = "all"


@dataclass(frozen=True)
class Service:
    name: str
    containers: Callable[[Env], list[Container]]
    bootstrap: Callable[[Env], Container] | None = None
    endpoints: tuple[Endpoint, ...] = ()
    #: Whether the service gets a Keystone user of its own in the service project.
    keystone_user: bool = False
    #: Whether that user needs the `admin` role besides `service` (the role the
    #: default policies give service-to-service calls). Nova, Neutron and Cinder
    #: look up other projects' servers and volumes only for `admin` (their
    #: `context_is_admin`), for events, floating IPs and volume callbacks.
    admin_role: bool = False
    #: Roles a project member needs to use the service (given to the demo user).
    member_roles: tuple[str, ...] = ()
    #: Which nodes run it: those with this role, or every node ("all").
    role: str = CONTROL
    #: The container whose process serves this service, when it has none of its own.
    served_by: str | None = None

    def runs_on(self, env: Env) -> bool:
        return self.role == ALL or self.role in env.roles


def for_node(env: Env) -> list[Service]:
    """The services this node runs, in deploy order."""
    return [service for service in SERVICES if service.runs_on(env)]


def declared_ports(env: Env) -> list[Port]:
    """Every port the containers of this node listen on, with who may reach it."""
    return [
        port
        for service in for_node(env)
        if service.name != "firewall"
        for container in service.containers(env)
        for port in container.ports
    ]


SERVICES: tuple[Service, ...] = (
    # First, so no port is open before the firewall is.
    Service("firewall", lambda env: firewall.containers(env, declared_ports(env)), role=ALL),
    Service("mariadb", mariadb.containers),
    Service("rabbitmq", rabbitmq.containers),
    Service("memcached", memcached.containers),
    Service("ovn", ovn.containers),
    Service("keystone", keystone.containers, keystone.bootstrap, keystone.ENDPOINTS),
    Service("glance", glance.containers, glance.bootstrap, glance.ENDPOINTS, True),
    Service(
        "placement",
        placement.containers,
        placement.bootstrap,
        placement.ENDPOINTS,
        keystone_user=True,
        served_by=placement.SERVED_BY,
    ),
    Service("nova", nova.containers, nova.bootstrap, nova.ENDPOINTS, True, admin_role=True),
    Service(
        "neutron",
        neutron.containers,
        neutron.bootstrap,
        neutron.ENDPOINTS,
        keystone_user=True,
        admin_role=True,
    ),
    Service("nfs", nfs.containers),
    Service("cinder", cinder.containers, cinder.bootstrap, cinder.ENDPOINTS, True, admin_role=True),
    Service("heat", heat.containers, heat.bootstrap, heat.ENDPOINTS, True),
    Service("horizon", horizon.containers),
    # The compute role: the switch, the hypervisor and the services beside them.
    Service("openvswitch", openvswitch.containers, role=COMPUTE),
    Service("ovn-controller", lambda env: [ovn.controller(env)], role=COMPUTE),
    Service("libvirt", libvirt.containers, role=COMPUTE),
    Service("nova-compute", nova.compute, role=COMPUTE),
    Service("neutron-ovn-metadata-agent", lambda env: [neutron.metadata_agent(env)], role=COMPUTE),
)


def all_containers(env: Env) -> list[Container]:
    """Every container and one-shot step of this node, in deploy order."""
    found: list[Container] = []
    for service in for_node(env):
        if service.bootstrap is not None:
            found.append(service.bootstrap(env))
        found.extend(service.containers(env))
    return found


def find(env: Env, name: str) -> Container:
    for container in all_containers(env):
        if container.name == name:
            return container
    raise KeyError(name)


BY_NAME = {service.name: service for service in SERVICES}
