"""Keystone's domains, projects, users, roles and catalog, each got or created
through openstacksdk's identity API: running deploy again finds everything in
place and changes nothing. Each function returns the resource's id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import openstack.exceptions

from dietstack.apis import cloudapi

CONTAINER = "keystone"
#: Keystone's default domain, where DietStack's projects and users are. (Not
#: cloudapi's constant: the services import this module while cloudapi may be
#: still importing them.)
DEFAULT_DOMAIN = "default"


def _first(found: Iterable[Any], **wanted: str) -> Any | None:
    """The first resource whose attributes have the wanted values: not every
    Keystone filter is applied server-side, so they are checked here too."""
    for item in found:
        if all(str(getattr(item, key, None)) == value for key, value in wanted.items()):
            return item
    return None


def ensure_domain(conn: Any, name: str, description: str = "") -> str:
    with cloudapi.api_errors(CONTAINER):
        domain = _first(conn.identity.domains(name=name), name=name)
        if domain is None:
            domain = conn.identity.create_domain(name=name, description=description)
    return str(domain.id)


def ensure_project(
    conn: Any, name: str, description: str = "", domain_id: str = DEFAULT_DOMAIN
) -> str:
    with cloudapi.api_errors(CONTAINER):
        found = conn.identity.projects(name=name, domain_id=domain_id)
        project = _first(found, name=name, domain_id=domain_id)
        if project is None:
            project = conn.identity.create_project(
                name=name, description=description, domain_id=domain_id
            )
    return str(project.id)


def ensure_role(conn: Any, name: str) -> str:
    with cloudapi.api_errors(CONTAINER):
        role = _first(conn.identity.roles(name=name), name=name)
        if role is None:
            role = conn.identity.create_role(name=name)
    return str(role.id)


def ensure_user(conn: Any, name: str, password: str, domain_id: str = DEFAULT_DOMAIN) -> str:
    """A user as it is; an existing one keeps its password (as secrets do)."""
    with cloudapi.api_errors(CONTAINER):
        user = _first(conn.identity.users(name=name, domain_id=domain_id), name=name)
        if user is None:
            user = conn.identity.create_user(
                name=name, password=password, domain_id=domain_id, is_enabled=True
            )
    return str(user.id)


def _role_assignment(conn: Any, method: str, path: str, missing_ok: bool = False) -> None:
    """PUT or DELETE one role assignment. The SDK's own assign calls do not report
    a refusal, so the identity API is called here and its answer checked."""
    with cloudapi.api_errors(CONTAINER):
        response = conn.identity.request(path, method)
        if not (missing_ok and response.status_code == 404):
            openstack.exceptions.raise_from_response(response)


def grant_on_project(conn: Any, role_id: str, user_id: str, project_id: str) -> None:
    _role_assignment(conn, "PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")


def revoke_on_project(conn: Any, role_id: str, user_id: str, project_id: str) -> None:
    """Take a role away; one the user does not have is no error."""
    path = f"/projects/{project_id}/users/{user_id}/roles/{role_id}"
    _role_assignment(conn, "DELETE", path, missing_ok=True)


def grant_on_domain(conn: Any, role_id: str, user_id: str, domain_id: str) -> None:
    _role_assignment(conn, "PUT", f"/domains/{domain_id}/users/{user_id}/roles/{role_id}")


def ensure_service(conn: Any, service_type: str, name: str, description: str) -> str:
    with cloudapi.api_errors(CONTAINER):
        found = conn.identity.services(type=service_type, name=name)
        service = _first(found, type=service_type, name=name)
        if service is None:
            service = conn.identity.create_service(
                type=service_type, name=name, description=description
            )
    return str(service.id)


def ensure_endpoint(conn: Any, service_id: str, interface: str, url: str, region: str) -> None:
    """The service's endpoint on `interface`, moved to `url` if it has changed."""
    with cloudapi.api_errors(CONTAINER):
        found = conn.identity.endpoints(service_id=service_id, interface=interface)
        endpoint = _first(found, service_id=service_id, interface=interface)
        if endpoint is None:
            conn.identity.create_endpoint(
                service_id=service_id, interface=interface, url=url, region_id=region
            )
        elif endpoint.url != url:
            conn.identity.update_endpoint(endpoint, url=url)
