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
    assert values["OPENSTACK_KEYSTONE_URL"] == "http://192.168.1.20:5000/v3"
    assert values["SESSION_ENGINE"] == "django.contrib.sessions.backends.cache"
    assert values["CACHES"] == {
        "default": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": "127.0.0.1:11211",
        }
    }
    assert values["SECRET_KEY"] == "s-horizon_secret_key"
    assert values["DEBUG"] is False


def test_allowed_hosts_cover_the_address_the_name_and_configured_names() -> None:
    env = make_env(dashboard_names=["cloud.home.lan"], dashboard_port=8080)
    values = settings_of(env)
    assert values["ALLOWED_HOSTS"] == ["192.168.1.20", "node1", "cloud.home.lan"]
    origins = values["CSRF_TRUSTED_ORIGINS"]
    assert isinstance(origins, list)
    assert "http://cloud.home.lan:8080" in origins and "https://192.168.1.20:8080" in origins


def test_static_paths_are_left_to_the_image() -> None:
    """The image's compressed pages hold only while these keep the baked values."""
    values = settings_of(make_env())
    for baked in ("STATIC_ROOT", "STATIC_URL", "WEBROOT", "COMPRESS_OFFLINE", "AVAILABLE_THEMES"):
        assert baked not in values


def test_dashboard_port_moves_the_socket_the_probe_and_the_firewall() -> None:
    env = make_env(dashboard_port=8080)
    (container,) = horizon.containers(env)
    uwsgi = next(f for f in container.files if f.path.endswith("uwsgi.ini"))
    assert uwsgi.sections["uwsgi"]["http-socket"] == "192.168.1.20:8080"  # type: ignore[union-attr]
    assert uwsgi.sections["uwsgi"]["static-map"] == "/static=/var/lib/horizon/static"  # type: ignore[union-attr]
    assert container.healthcheck is not None
    assert "http://192.168.1.20:8080/auth/login/" in container.healthcheck.test
    assert [(p.number, p.audience) for p in container.ports] == [(8080, USERS)]
    assert horizon.url(env) == "http://192.168.1.20:8080/"
    assert horizon.url(make_env()) == "http://192.168.1.20/"
    assert 8080 in {port.number for port in services.declared_ports(env)}


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
