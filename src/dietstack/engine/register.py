"""The cloud's accounts and catalog in Keystone, made idempotently after Keystone is up.

What to register comes from the service descriptions: which services get a
user of their own, and which endpoints they publish. Heat's stack domain is the one
extra: the descriptions ship into the containers, the API client does not.
"""

from __future__ import annotations

from typing import Any

from dietstack import services
from dietstack.apis import cloudapi, identity
from dietstack.render import Env
from dietstack.services import heat
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
    register_heat_domain(conn, env)
    demo_project = identity.ensure_project(conn, DEMO_PROJECT, "Demo project of the demo user")
    demo_user = identity.ensure_user(conn, DEMO_USER, env.secrets["demo_password"])
    for role in demo_roles():
        identity.grant_on_project(conn, identity.ensure_role(conn, role), demo_user, demo_project)


def register_heat_domain(conn: Any, env: Env) -> None:
    """Heat's stack user domain, its administrator, and the role for stack users."""
    domain = identity.ensure_domain(conn, heat.STACK_DOMAIN, "Users created by Heat stacks")
    password = env.secrets["heat_domain_admin_password"]
    admin = identity.ensure_user(conn, heat.STACK_DOMAIN_ADMIN, password, domain_id=domain)
    identity.grant_on_domain(conn, identity.ensure_role(conn, "admin"), admin, domain)
    identity.ensure_role(conn, "heat_stack_user")


def demo_roles() -> list[str]:
    roles = ["member"]
    for service in services.SERVICES:
        roles.extend(service.member_roles)
    return roles
