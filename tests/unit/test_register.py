"""Service users get the `service` role; `admin` only where upstream code needs it."""

from __future__ import annotations

import pytest

from dietstack import register, secrets
from dietstack.render import Env


class RecordingKeystone:
    def __init__(self) -> None:
        self.granted: set[tuple[str, str]] = set()
        self.revoked: set[tuple[str, str]] = set()

    def role(self, name: str) -> str:
        return name

    def project(self, name: str, description: str = "", domain_id: str = "default") -> str:
        return name

    def domain(self, name: str, description: str = "") -> str:
        return name

    def user(self, name: str, password: str, domain_id: str = "default") -> str:
        return name

    def grant_on_project(self, role: str, user: str, project: str) -> None:
        self.granted.add((user, role))

    def revoke_on_project(self, role: str, user: str, project: str) -> None:
        self.revoked.add((user, role))

    def grant_on_domain(self, role: str, user: str, domain: str) -> None:
        self.granted.add((user, role))

    def service(self, service_type: str, name: str, description: str) -> str:
        return name

    def endpoint(self, service_id: str, interface: str, url: str, region: str) -> None:
        pass


def test_only_nova_neutron_and_cinder_keep_the_admin_role(monkeypatch: pytest.MonkeyPatch) -> None:
    keystone = RecordingKeystone()
    monkeypatch.setattr(register, "admin_client", lambda env: keystone)
    values = {name: secrets.generate() for name in secrets.names()}
    env = Env({"management_ip": "192.168.1.20", "node_name": "node1"}, values)
    register.register_all(env)
    service_users = ("glance", "placement", "nova", "neutron", "cinder", "heat")
    assert {(user, "service") for user in service_users} <= keystone.granted
    with_admin = {user for user, role in keystone.granted if role == "admin"}
    assert with_admin & set(service_users) == {"nova", "neutron", "cinder"}
    assert keystone.revoked == {("glance", "admin"), ("placement", "admin"), ("heat", "admin")}
