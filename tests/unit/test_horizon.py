from __future__ import annotations

import ast

from dietstack import services
from dietstack.model import USERS, TextFile
from dietstack.render import Env
from dietstack.services import horizon

from .helpers import make_env


def settings_of(env: Env) -> dict[str, object]:
    """The rendered local_settings.py, evaluated as the Python Horizon reads."""
    file = horizon.local_settings(env)
    assert isinstance(file, TextFile) and file.path.endswith("local_settings.py")
    values: dict[str, object] = {}
    for node in ast.parse(file.text).body:
        assert isinstance(node, ast.Assign)
        (target,) = node.targets
        assert isinstance(target, ast.Name)
        values[target.id] = ast.literal_eval(node.value)
    return values


def test_settings_point_at_keystone_v3_and_memcached() -> None:
    values = settings_of(make_env())
    assert values["OPENSTACK_KEYSTONE_URL"] == "https://192.168.1.20:5000/v3"
    assert values["OPENSTACK_SSL_CACERT"] == "/etc/dietstack-tls/public-ca.pem"
    assert values["SESSION_ENGINE"] == "django.contrib.sessions.backends.cache"
    assert values["CACHES"] == {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": "127.0.0.1:11211",
            "KEY_PREFIX": "horizon-2026.1",
        }
    }
    # Each release's Horizon keeps its own cache: an upgrade serves none of the old.
    newer = settings_of(make_env(release="2026.2"))["CACHES"]
    assert newer == {"default": {**values["CACHES"]["default"], "KEY_PREFIX": "horizon-2026.2"}}
    assert values["SECRET_KEY"] == "s-horizon_secret_key"
    assert values["DEBUG"] is False


def test_allowed_hosts_cover_the_address_the_name_and_configured_names() -> None:
    env = make_env(dashboard_names=["cloud.home.lan"], dashboard_https_port=8443)
    values = settings_of(env)
    assert values["ALLOWED_HOSTS"] == ["192.168.1.20", "node1", "cloud.home.lan"]
    # The login form is posted from the HTTPS pages only.
    assert values["CSRF_TRUSTED_ORIGINS"] == [
        "https://192.168.1.20:8443",
        "https://node1:8443",
        "https://cloud.home.lan:8443",
    ]


def test_cookies_go_over_https_only_and_browsers_are_told_to_stay() -> None:
    values = settings_of(make_env())
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    # Trusting X-Forwarded-Proto is only right behind the user's own proxy.
    assert "SECURE_PROXY_SSL_HEADER" not in values
    proxied = settings_of(make_env(dashboard_behind_proxy=True))
    assert proxied["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")


def test_static_paths_are_left_to_the_image() -> None:
    """The image's compressed pages hold only while these keep the baked values."""
    values = settings_of(make_env())
    for baked in ("STATIC_ROOT", "STATIC_URL", "WEBROOT", "COMPRESS_OFFLINE", "AVAILABLE_THEMES"):
        assert baked not in values


def test_dashboard_ports_move_the_sockets_the_probe_and_the_firewall() -> None:
    env = make_env(dashboard_port=8080, dashboard_https_port=8443)
    (container,) = horizon.containers(env)
    uwsgi = next(f for f in container.files if f.path.endswith("uwsgi.ini"))
    options = uwsgi.sections["uwsgi"]  # type: ignore[union-attr]
    assert options["https-socket"] == (
        "192.168.1.20:8443,/etc/dietstack-tls/public.crt,/etc/dietstack-tls/public.key"
    )
    assert options["http-socket"] == "192.168.1.20:8080"
    assert options["static-map"] == "/static=/var/lib/horizon/static"
    # The plain port is served by the redirect, picked by the port a request came in on.
    assert options["module"] == "dietstack.start.wsgi_ports:application"
    assert dict(container.environment)["DIETSTACK_WSGI_APPS"] == (
        "8443=openstack_dashboard.wsgi:application 8080=dietstack.start.redirect:application"
    )
    assert container.healthcheck is not None
    assert "https://192.168.1.20:8443/auth/login/" in container.healthcheck.test
    assert [(p.number, p.audience) for p in container.ports] == [(8443, USERS), (8080, USERS)]
    assert horizon.url(env) == "https://192.168.1.20:8443/"
    assert horizon.url(make_env()) == "https://192.168.1.20/"
    assert {8080, 8443} <= {port.number for port in services.declared_ports(env)}


def test_the_plain_port_redirects_to_https_naming_only_the_dashboards_names() -> None:
    from dietstack.start import redirect

    names = ["192.168.1.20", "node1", "cloud.home.lan"]
    asked = {"HTTP_HOST": "cloud.home.lan", "PATH_INFO": "/project/", "QUERY_STRING": "a=1"}
    assert redirect.location(asked, names, 443) == "https://cloud.home.lan/project/?a=1"
    assert redirect.location({"HTTP_HOST": "node1:80"}, names, 8443) == "https://node1:8443/"
    # A Host header of the client's choosing is never sent back.
    evil = {"HTTP_HOST": "evil.example", "PATH_INFO": "/auth/login/"}
    assert redirect.location(evil, names, 443) == "https://192.168.1.20/auth/login/"
    assert redirect.location({}, names, 443) == "https://192.168.1.20/"


def test_only_the_control_node_runs_the_dashboard() -> None:
    compute = make_env(
        node_name="compute-1",
        nodes=[
            {"name": "node1", "management_ip": "192.168.1.20", "roles": ["control", "compute"]},
            {"name": "compute-1", "management_ip": "192.168.1.21", "roles": ["compute"]},
        ],
    )
    assert "horizon" not in {c.name for c in services.all_containers(compute)}
    assert "horizon" in {c.name for c in services.all_containers(make_env())}
