"""The cloud's accounts and catalog in Keystone, made idempotently after Keystone is up.

What to register comes from the service descriptions: which services get a
user of their own, and which endpoints they publish. Services with extra needs
(Heat's stack domain) add them in their own `register` hook.
"""

from __future__ import annotations

from dietstack import cloudapi, identity, services
from dietstack.render import Env
from dietstack.services.common import REGION

INTERFACES = ("public", "internal", "admin")
#: Roles every cloud has; `service` marks service users for secure RBAC.
ROLES = ("admin", "member", "reader", "service")
DEMO_PROJECT = "demo"
DEMO_USER = "demo"


def register_all(env: Env) -> None:
    conn = cloudapi.admin(env)
    roles = {name: identity.ensure_role(conn, name) for name in ROLES}
    service_project = identity.ensure_project(conn, "service", "Users of the OpenStack services")
    for service in services.SERVICES:
        if service.keystone_user:
            password = env.secrets[f"{service.name}_keystone_password"]
            user = identity.ensure_user(conn, service.name, password)
            identity.grant_on_project(conn, roles["service"], user, service_project)
            if service.admin_role:
                identity.grant_on_project(conn, roles["admin"], user, service_project)
            else:  # earlier versions gave every service user the admin role
                identity.revoke_on_project(conn, roles["admin"], user, service_project)
        for endpoint in service.endpoints:
            service_id = identity.ensure_service(
                conn, endpoint.service_type, endpoint.name, endpoint.description
            )
            for interface in INTERFACES:
                url = env.url(endpoint.port, endpoint.path)
                identity.ensure_endpoint(conn, service_id, interface, url, REGION)
        if service.register is not None:
            service.register(conn, env)
    demo_project = identity.ensure_project(conn, DEMO_PROJECT, "Demo project of the demo user")
    demo_user = identity.ensure_user(conn, DEMO_USER, env.secrets["demo_password"])
    for role in demo_roles():
        identity.grant_on_project(conn, identity.ensure_role(conn, role), demo_user, demo_project)


def demo_roles() -> list[str]:
    roles = ["member"]
    for service in services.SERVICES:
        roles.extend(service.member_roles)
    return roles
