"""DietStack's connections to the cloud: made from the Env alone (never from the
user's OS_* variables or clouds.yaml), logged in once per process, and failures
told as DietStackErrors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import keystoneauth1.exceptions
import pytest
import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from dietstack.apis import cloudapi, cloudrest
from dietstack.engine import publictls, secrets
from dietstack.errors import DietStackError
from dietstack.render import Env

DEMO_CLOUDS_YAML = """\
clouds:
  demo:
    auth:
      auth_url: http://198.51.100.7:5000/v3
      username: demo
      password: demo-password
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    region_name: DemoRegion
"""


@pytest.fixture(autouse=True)
def no_kept_connections() -> Iterator[None]:
    cloudapi.forget()
    yield
    cloudapi.forget()


@pytest.fixture
def logins(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Logging in without a Keystone: each login is noted, none goes to the network."""
    noted: list[str] = []

    def get_token(session: ks_session.Session, *args: Any, **kwargs: Any) -> str:
        noted.append(session.auth.auth_url)  # type: ignore[union-attr]
        return "token"

    monkeypatch.setattr(ks_session.Session, "get_token", get_token)
    return noted


def make_env() -> Env:
    values = {name: secrets.generate() for name in secrets.names()}
    values["tls_trust"] = publictls.public_ca()[1]
    return Env({"management_ip": "192.168.1.20", "node_name": "node1"}, values)


def test_a_cloud_without_its_ca_yet_is_told_to_deploy(ca_file_in_tmp: Path) -> None:
    """Stand-ins for secrets not made yet never pass for the CA (nor are written)."""
    env = make_env()
    env.secrets["tls_trust"] = "x" * 32
    with pytest.raises(DietStackError) as told:
        cloudapi.ca_file(env)
    assert "dietstack deploy" in (told.value.hint or "")
    assert not ca_file_in_tmp.exists()


def test_the_admin_connection_ignores_the_users_cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logins: list[str]
) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(DEMO_CLOUDS_YAML)
    # What `dietstack openrc demo` (or a sourced openrc file) leaves behind.
    for name, value in {
        "OS_CLOUD": "demo",
        "OS_CLIENT_CONFIG_FILE": str(clouds),
        "OS_AUTH_URL": "http://198.51.100.7:5000/v3",
        "OS_USERNAME": "demo",
        "OS_PASSWORD": "demo-password",
        "OS_PROJECT_NAME": "demo",
        "OS_REGION_NAME": "DemoRegion",
    }.items():
        monkeypatch.setenv(name, value)
    env = make_env()
    conn = cloudapi.admin(env)
    auth = conn.session.auth
    assert isinstance(auth, v3.Password)
    assert auth.auth_url == env.keystone_url
    assert auth.project_name == "admin" and auth.project_domain_id == "default"
    [password] = auth.auth_methods
    assert isinstance(password, v3.PasswordMethod)
    assert password.username == "admin" and password.password == env.secrets["admin_password"]
    assert conn.config.get_region_name() == "RegionOne"
    assert conn.config.get_interface() == "public"
    assert logins == [env.keystone_url]


def test_a_command_logs_in_once_per_account(logins: list[str]) -> None:
    env = make_env()
    first = cloudapi.admin(env)
    assert cloudapi.admin(env) is first
    other = cloudapi.connect(
        env.keystone_url, "demo", env.secrets["demo_password"], "demo", cloudapi.ca_file(env)
    )
    assert other is not first and len(logins) == 2


def test_a_failed_login_is_told_and_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(session: ks_session.Session, *args: Any, **kwargs: Any) -> str:
        raise keystoneauth1.exceptions.ConnectFailure("connection refused")

    monkeypatch.setattr(ks_session.Session, "get_token", refused)
    env = make_env()
    with pytest.raises(DietStackError) as failed:
        cloudapi.admin(env)
    assert f"cannot log in to {env.keystone_url} as admin" in failed.value.message
    assert "docker logs keystone" in failed.value.hint
    # Keystone is up now: the next call logs in afresh.
    monkeypatch.setattr(ks_session.Session, "get_token", lambda *args, **kwargs: "token")
    assert cloudapi.admin(env) is cloudapi.admin(env)


class RefusingSession:
    def __init__(self, failure: Exception | None = None, status: int = 500) -> None:
        self.failure = failure
        self.status = status

    def request(self, url: str, method: str, **kwargs: Any) -> requests.Response:
        if self.failure is not None:
            raise self.failure
        response = requests.Response()
        response.status_code = self.status
        response._content = b'{"error": "boom"}'
        return response


def test_an_api_that_refuses_names_its_container() -> None:
    conn = SimpleNamespace(session=RefusingSession())
    with pytest.raises(DietStackError) as failed:
        cloudrest.get(conn, "http://192.168.1.20:8774/v2.1/flavors", "nova-api")
    assert failed.value.message == (
        "nova-api refused GET http://192.168.1.20:8774/v2.1/flavors: HTTP 500"
    )
    assert "boom" in failed.value.details and "docker logs nova-api" in failed.value.hint


def test_an_api_that_does_not_answer_names_its_container() -> None:
    down = keystoneauth1.exceptions.ConnectFailure("refused")
    conn = SimpleNamespace(session=RefusingSession(failure=down))
    with pytest.raises(DietStackError) as failed:
        cloudrest.post(conn, "http://192.168.1.20:9696/v2.0/networks", {}, "neutron-server")
    assert "cannot reach http://192.168.1.20:9696/v2.0/networks" in failed.value.message
    assert "docker logs neutron-server" in failed.value.hint


def test_deleting_what_is_gone_is_done() -> None:
    conn = SimpleNamespace(session=RefusingSession(status=404))
    cloudrest.delete(conn, "http://192.168.1.20:9292/v2/images/gone", "glance-api")
