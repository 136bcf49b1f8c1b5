"""Service users get the `service` role; `admin` only where upstream code needs it;
and registering again finds everything in place."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from dietstack import services
from dietstack.apis import cloudapi
from dietstack.engine import register, secrets
from dietstack.render import Env


class FakeIdentity:
    """openstacksdk's identity proxy, as register and Heat's hook use it: resources
    in lists, ids made from the names, role assignments as (user, role) pairs."""

    def __init__(self) -> None:
        self.made: dict[str, list[SimpleNamespace]] = {}
        self.created: list[tuple[str, str]] = []
        self.updated: list[str] = []
        self.granted: set[tuple[str, str]] = set()
        self.revoked: set[tuple[str, str]] = set()

    def _list(self, kind: str, query: dict[str, str]) -> Iterator[SimpleNamespace]:
        # Keystone filters on some fields only: give back more than asked for,
        # as it may, so that the callers' own check is exercised.
        query.pop("interface", None)
        for item in self.made.get(kind, []):
            if all(getattr(item, key) == value for key, value in query.items()):
                yield item

    def _create(self, kind: str, **attrs: Any) -> SimpleNamespace:
        label = attrs.get("name") or attrs.get("interface")
        ident = f"{kind}-{label}-{len(self.made.get(kind, []))}"
        item = SimpleNamespace(id=ident, **attrs)
        self.made.setdefault(kind, []).append(item)
        self.created.append((kind, ident))
        return item

    def __getattr__(self, name: str) -> Any:
        kind = name.removeprefix("create_")
        if name.startswith("create_"):
            return lambda **attrs: self._create(kind + "s", **attrs)
        if name in ("domains", "projects", "roles", "users", "services", "endpoints"):
            return lambda **query: self._list(name, query)
        raise AttributeError(name)

    def update_endpoint(self, endpoint: SimpleNamespace, url: str) -> None:
        endpoint.url = url
        self.updated.append(endpoint.id)

    def request(self, path: str, method: str) -> SimpleNamespace:
        # /projects/<project>/users/<user>/roles/<role> (or /domains/...)
        _, _, _, _, user, _, role = path.split("/")
        user_name = user.split("-")[1]
        role_name = role.split("-")[1]
        pair = (user_name, role_name)
        if method == "PUT":
            self.granted.add(pair)
            return SimpleNamespace(status_code=204)
        self.revoked.add(pair)
        return SimpleNamespace(status_code=404)


@pytest.fixture
def keystone(monkeypatch: pytest.MonkeyPatch) -> FakeIdentity:
    identity = FakeIdentity()
    monkeypatch.setattr(cloudapi, "admin", lambda env: SimpleNamespace(identity=identity))
    return identity


def make_env() -> Env:
    values = {name: secrets.generate() for name in secrets.names()}
    return Env({"management_ip": "192.168.1.20", "node_name": "node1"}, values)


def test_only_nova_neutron_and_cinder_keep_the_admin_role(keystone: FakeIdentity) -> None:
    register.register_all(make_env())
    service_users = ("glance", "placement", "nova", "neutron", "cinder", "heat")
    assert {(user, "service") for user in service_users} <= keystone.granted
    with_admin = {user for user, role in keystone.granted if role == "admin"}
    assert with_admin & set(service_users) == {"nova", "neutron", "cinder"}
    assert keystone.revoked == {("glance", "admin"), ("placement", "admin"), ("heat", "admin")}


def test_registering_again_creates_nothing(keystone: FakeIdentity) -> None:
    env = make_env()
    register.register_all(env)
    made = list(keystone.created)
    assert ("domains", "domains-heat-0") in made and ("projects", "projects-demo-1") in made
    endpoints = [item for kind, item in made if kind == "endpoints"]
    assert len(endpoints) == 3 * sum(len(service.endpoints) for service in services.SERVICES)
    register.register_all(env)
    assert keystone.created == made and not keystone.updated


def test_a_moved_endpoint_is_updated_in_place(keystone: FakeIdentity) -> None:
    env = make_env()
    register.register_all(env)
    moved = keystone.made["endpoints"][0]
    moved.url = "http://192.0.2.1:1/old"
    register.register_all(env)
    assert keystone.updated == [moved.id] and moved.url.startswith("https://192.168.1.20:")
