"""Plain REST calls at full URLs, on the logged-in session of an openstacksdk
connection (cloudapi): what verify, Tempest's configuration and the image upload
ask of Nova, Neutron, Glance, Cinder and Heat.

These keep the exact requests DietStack makes (its URLs, bodies and the APIs'
base microversions) rather than the SDK's resource layer, which would negotiate
newer microversions and change what the APIs answer. Every failure is a
DietStackError naming the container that serves the API.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import keystoneauth1.exceptions
import requests

from dietstack.errors import DietStackError

#: How many characters of a refusal's body a DietStackError shows.
DETAILS = 500


def _hint(container: str) -> str:
    return f"check the {container} container: `docker logs {container}`"


def request(
    conn: Any, method: str, url: str, container: str, missing_ok: bool = False, **kwargs: Any
) -> requests.Response:
    """One call with the connection's token; `missing_ok` takes a 404 as an answer."""
    try:
        response: requests.Response = conn.session.request(url, method, raise_exc=False, **kwargs)
    except keystoneauth1.exceptions.ClientException as exc:
        raise DietStackError(
            f"cannot reach {url}: {exc.__class__.__name__}", hint=_hint(container)
        ) from None
    if response.status_code >= 400 and not (missing_ok and response.status_code == 404):
        raise DietStackError(
            f"{container} refused {method} {url}: HTTP {response.status_code}",
            details=response.text[:DETAILS],
            hint=_hint(container),
        )
    return response


def _body(response: requests.Response) -> dict[str, Any]:
    return dict(response.json()) if response.content else {}


def get(conn: Any, url: str, container: str, **params: str) -> dict[str, Any]:
    return _body(request(conn, "GET", url, container, params=params))


def post(conn: Any, url: str, body: dict[str, Any], container: str) -> dict[str, Any]:
    """POST a JSON body; also for Glance v2, whose bodies have no resource key."""
    return _body(request(conn, "POST", url, container, json=body))


def put(conn: Any, url: str, body: dict[str, Any], container: str) -> dict[str, Any]:
    return _body(request(conn, "PUT", url, container, json=body))


def delete(conn: Any, url: str, container: str) -> None:
    """Delete, treating "already gone" as done."""
    request(conn, "DELETE", url, container, missing_ok=True)


def upload(conn: Any, url: str, data: BinaryIO, container: str) -> None:
    headers = {"Content-Type": "application/octet-stream"}
    request(conn, "PUT", url, container, data=data, headers=headers)


def ensure(
    conn: Any, base: str, collection: str, body: dict[str, Any], container: str, **filters: str
) -> str:
    """Get or create one resource of an API in `{collection: [...]}` style; its id."""
    url = f"{base.rstrip('/')}/{collection}"
    items = get(conn, url, container, **filters)[collection]
    # Not every API filters on every field it is given: check on this side too.
    matching = [
        item
        for item in items
        if all(str(item.get(key, value)) == str(value) for key, value in filters.items())
    ]
    if matching:
        return str(matching[0]["id"])
    singular = collection[:-1]
    created = post(conn, url, {singular: body}, container)
    return str(created[singular]["id"])
