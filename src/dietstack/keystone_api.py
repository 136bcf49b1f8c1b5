"""A small, idempotent Keystone v3 client for registering the cloud's accounts.

Every call is "get or create": running deploy again finds everything in place
and changes nothing. Only the few calls DietStack needs are here.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import requests

from dietstack.errors import DietStackError

TIMEOUT = 30


class Keystone:
    """An authenticated session against Keystone, usable for the other APIs too."""

    def __init__(self, url: str, password: str, user: str = "admin", project: str = "admin"):
        """A session with a project-scoped token of `user`."""
        self.url = url.rstrip("/")
        self.session = requests.Session()
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "domain": {"id": "default"}, "password": password}
                    },
                },
                "scope": {"project": {"name": project, "domain": {"id": "default"}}},
            }
        }
        response = self._request("POST", "/auth/tokens", json=body)
        self.session.headers["X-Auth-Token"] = response.headers["X-Subject-Token"]
        self.project_id = str(response.json()["token"]["project"]["id"])

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A call to Keystone (path) or, given a full URL, to another service."""
        url = path if path.startswith("http") else self.url + path
        container = kwargs.pop("container", "keystone")
        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise DietStackError(
                f"cannot reach {url}: {exc.__class__.__name__}",
                hint=f"check the {container} container: `docker logs {container}`",
            ) from None
        if response.status_code >= 400:
            raise DietStackError(
                f"{container} refused {method} {url}: HTTP {response.status_code}",
                details=response.text[:500],
                hint=f"check the {container} container: `docker logs {container}`",
            )
        return response

    def _find(self, collection: str, **filters: str) -> dict[str, Any] | None:
        items = self._request("GET", f"/{collection}", params=filters).json()[collection]
        return items[0] if items else None

    def _ensure(self, collection: str, body: dict[str, Any], **filters: str) -> str:
        return self.ensure(self.url, collection, body, "keystone", **filters)

    def ensure(
        self, base: str, collection: str, body: dict[str, Any], container: str, **filters: str
    ) -> str:
        """Get or create one resource of any OpenStack API (`{collection: [...]}` style)."""
        url = f"{base.rstrip('/')}/{collection}"
        items = self._request("GET", url, params=filters, container=container).json()[collection]
        # Not every API filters on every field it is given: check on this side too.
        matching = [
            item
            for item in items
            if all(str(item.get(key, value)) == str(value) for key, value in filters.items())
        ]
        if matching:
            return str(matching[0]["id"])
        singular = collection[:-1]
        created = self._request("POST", url, json={singular: body}, container=container)
        return str(created.json()[singular]["id"])

    def domain(self, name: str, description: str = "") -> str:
        return self._ensure("domains", {"name": name, "description": description}, name=name)

    def project(self, name: str, description: str = "", domain_id: str = "default") -> str:
        body = {"name": name, "description": description, "domain_id": domain_id}
        return self._ensure("projects", body, name=name, domain_id=domain_id)

    def role(self, name: str) -> str:
        return self._ensure("roles", {"name": name}, name=name)

    def user(self, name: str, password: str, domain_id: str = "default") -> str:
        body = {"name": name, "password": password, "domain_id": domain_id, "enabled": True}
        return self._ensure("users", body, name=name, domain_id=domain_id)

    def grant_on_project(self, role_id: str, user_id: str, project_id: str) -> None:
        self._request("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")

    def revoke_on_project(self, role_id: str, user_id: str, project_id: str) -> None:
        """Take a role away; one the user does not have is no error."""
        self.delete(f"{self.url}/projects/{project_id}/users/{user_id}/roles/{role_id}", "keystone")

    def grant_on_domain(self, role_id: str, user_id: str, domain_id: str) -> None:
        self._request("PUT", f"/domains/{domain_id}/users/{user_id}/roles/{role_id}")

    def service(self, service_type: str, name: str, description: str) -> str:
        body = {"type": service_type, "name": name, "description": description}
        return self._ensure("services", body, type=service_type, name=name)

    def endpoint(self, service_id: str, interface: str, url: str, region: str) -> None:
        found = self._find("endpoints", service_id=service_id, interface=interface)
        if found is None:
            body = {
                "service_id": service_id,
                "interface": interface,
                "url": url,
                "region_id": region,
            }
            self._request("POST", "/endpoints", json={"endpoint": body})
        elif found["url"] != url:
            self._request("PATCH", f"/endpoints/{found['id']}", json={"endpoint": {"url": url}})

    def get(self, url: str, container: str, **params: str) -> dict[str, Any]:
        return dict(self._request("GET", url, params=params, container=container).json())

    def post(self, url: str, body: dict[str, Any], container: str) -> dict[str, Any]:
        response = self._request("POST", url, json=body, container=container)
        return dict(response.json()) if response.content else {}

    def put(self, url: str, body: dict[str, Any], container: str) -> dict[str, Any]:
        response = self._request("PUT", url, json=body, container=container)
        return dict(response.json()) if response.content else {}

    def delete(self, url: str, container: str) -> None:
        """Delete, treating "already gone" as done."""
        try:
            response = self.session.delete(url, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise DietStackError(f"cannot reach {url}: {exc.__class__.__name__}") from None
        if response.status_code >= 400 and response.status_code != 404:
            raise DietStackError(
                f"{container} refused DELETE {url}: HTTP {response.status_code}",
                details=response.text[:500],
            )

    def post_plain(self, url: str, body: dict[str, Any], container: str) -> dict[str, Any]:
        """POST a body that is not wrapped in a resource key (as Glance v2 expects)."""
        return dict(self._request("POST", url, json=body, container=container).json())

    def upload(self, url: str, data: BinaryIO, container: str) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        self._request("PUT", url, data=data, headers=headers, container=container)
