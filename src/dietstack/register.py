"""The cloud's accounts and catalog in Keystone, made idempotently after Keystone is up.

What to register comes from the service descriptions: which services get a
user of their own, and which endpoints they publish. Services with extra needs
(Heat's stack domain) add them in their own `register` hook.
"""

from __future__ import annotations

import time

from dietstack import services
from dietstack.keystone_api import Keystone
from dietstack.render import Env
from dietstack.services.common import REGION

INTERFACES = ("public", "internal", "admin")
#: Roles every cloud has; `service` marks service users for secure RBAC.
ROLES = ("admin", "member", "reader", "service")
DEMO_PROJECT = "demo"
DEMO_USER = "demo"


#: Keystone takes about a quarter of a second to issue a token, and one deploy asks
#: for the admin's session many times: it is kept this long (tokens live an hour).
SESSION_REUSE_SECONDS = 600
_sessions: dict[tuple[str, str], tuple[float, Keystone]] = {}


def admin_client(env: Env) -> Keystone:
    key = (env.keystone_url, env.secrets["admin_password"])
    issued, session = _sessions.get(key, (0.0, None))
    if session is None or time.monotonic() - issued > SESSION_REUSE_SECONDS:
        session = Keystone(*key)
        _sessions[key] = (time.monotonic(), session)
    return session


def register_all(env: Env) -> None:
    keystone = admin_client(env)
    roles = {name: keystone.role(name) for name in ROLES}
    service_project = keystone.project("service", "Users of the OpenStack services")
    for service in services.SERVICES:
        if service.keystone_user:
            user = keystone.user(service.name, env.secrets[f"{service.name}_keystone_password"])
            keystone.grant_on_project(roles["service"], user, service_project)
            if service.admin_role:
                keystone.grant_on_project(roles["admin"], user, service_project)
            else:  # earlier versions gave every service user the admin role
                keystone.revoke_on_project(roles["admin"], user, service_project)
        for endpoint in service.endpoints:
            service_id = keystone.service(
                endpoint.service_type, endpoint.name, endpoint.description
            )
            for interface in INTERFACES:
                keystone.endpoint(
                    service_id, interface, env.url(endpoint.port, endpoint.path), REGION
                )
        if service.register is not None:
            service.register(keystone, env)
    demo_project = keystone.project(DEMO_PROJECT, "Demo project of the demo user")
    demo_user = keystone.user(DEMO_USER, env.secrets["demo_password"])
    for role in demo_roles():
        keystone.grant_on_project(keystone.role(role), demo_user, demo_project)


def demo_roles() -> list[str]:
    roles = ["member"]
    for service in services.SERVICES:
        roles.extend(service.member_roles)
    return roles
