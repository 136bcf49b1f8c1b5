"""Horizon: the dashboard, with Heat's panels and Nova's noVNC console.

The image holds Horizon's static files collected and compressed when it was
built; what depends on the settings (Keystone's address, the names the
dashboard is reached by, the session secret) is rendered here at start. One
uWSGI worker with a few threads serves the pages and maps /static itself.
"""

from __future__ import annotations

from dietstack.model import USERS, Container, Port, TextFile
from dietstack.render import Env
from dietstack.services.common import http_health, uwsgi_file

SETTINGS_PATH = "/etc/openstack-dashboard/local_settings.py"
STATIC_ROOT = "/var/lib/horizon/static"
LOGIN_PATH = "/auth/login/"
DEFAULT_PORT = 80


def port(env: Env) -> int:
    return int(env.settings.get("dashboard_port") or DEFAULT_PORT)


def names(env: Env) -> list[str]:
    """Every host name or address a browser may reach the dashboard by."""
    configured = [str(name) for name in env.settings.get("dashboard_names") or ()]
    found = [env.control_ip, env.control.name, *configured]
    return list(dict.fromkeys(name for name in found if name))


def _port_suffix(env: Env) -> str:
    """What a URL adds after the host name: nothing for port 80."""
    return "" if port(env) == DEFAULT_PORT else f":{port(env)}"


def url(env: Env, path: str = "/") -> str:
    """The dashboard's address as `deploy` prints it and `status` probes it."""
    return f"http://{env.control_ip}{_port_suffix(env)}{path}"


def origins(env: Env) -> list[str]:
    suffix = _port_suffix(env)
    return [f"{scheme}://{name}{suffix}" for name in names(env) for scheme in ("http", "https")]


def local_settings(env: Env) -> TextFile:
    """Horizon's settings, as Python; every value is written with repr()."""
    values: dict[str, object] = {
        "DEBUG": False,
        "SECRET_KEY": env.secrets["horizon_secret_key"],
        # Host names Django answers for; the login form's POST must come from one.
        "ALLOWED_HOSTS": names(env),
        "CSRF_TRUSTED_ORIGINS": origins(env),
        "OPENSTACK_HOST": env.control_ip,
        "OPENSTACK_KEYSTONE_URL": env.keystone_url,
        "OPENSTACK_KEYSTONE_DEFAULT_DOMAIN": "Default",
        "OPENSTACK_KEYSTONE_DEFAULT_ROLE": "member",
        "SESSION_ENGINE": "django.contrib.sessions.backends.cache",
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": env.memcached_servers,
            }
        },
        "OPENSTACK_API_VERSIONS": {"identity": 3, "image": 2, "volume": 3, "compute": 2},
        # OVN routes centrally in this cloud: no DVR or HA router choices to offer.
        "OPENSTACK_NEUTRON_NETWORK": {
            "enable_router": True,
            "enable_quotas": True,
            "enable_distributed_router": False,
            "enable_ha_router": False,
            "enable_fip_topology_check": True,
        },
        "OPENSTACK_CINDER_FEATURES": {"enable_backup": False},
        # Instances boot from their image on the node's disk unless asked for a
        # volume: a volume per instance would fill a small NFS share fast.
        "LAUNCH_INSTANCE_DEFAULTS": {"create_volume": False},
        "CONSOLE_TYPE": "VNC",
        "TIME_ZONE": "UTC",
        "LOGGING": _logging(),
    }
    lines = [f"{key} = {value!r}" for key, value in values.items()]
    return TextFile(SETTINGS_PATH, "\n".join(lines) + "\n")


def _logging() -> dict[str, object]:
    """Warnings and errors to the container's log; requests are logged by uWSGI."""
    console = {"level": "WARNING", "class": "logging.StreamHandler"}
    loggers = ("django", "horizon", "openstack_dashboard", "openstack_auth", "heat_dashboard")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": console},
        "loggers": {name: {"handlers": ["console"], "level": "WARNING"} for name in loggers},
    }


def containers(env: Env) -> list[Container]:
    settings = local_settings(env)
    uwsgi = uwsgi_file(
        env,
        "/etc/openstack-dashboard/uwsgi.ini",
        ((port(env), "openstack_dashboard.wsgi:application"),),
        {
            # One process keeps the dashboard small; threads serve a few browsers
            # at once while a page waits on an API.
            "processes": 1,
            "threads": 4,
            "static-map": f"/static={STATIC_ROOT}",
            "offload-threads": 1,
            "log-4xx": None,
        },
    )
    return [
        Container(
            name="horizon",
            service="horizon",
            image="horizon",
            command=("uwsgi", "--ini", uwsgi.path),
            files=(settings, uwsgi),
            healthcheck=http_health(env, port(env), LOGIN_PATH),
            depends_on=("keystone", "memcached"),
            ports=(Port(port(env), USERS, "Dashboard (Horizon)"),),
        )
    ]
