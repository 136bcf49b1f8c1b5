"""Horizon: the dashboard, with Heat's panels and Nova's noVNC console.

The image holds Horizon's static files collected and compressed when it was
built; what depends on the settings (Keystone's address, the names the
dashboard is reached by, the session secret) is rendered here at start. One
uWSGI worker with a few threads serves the pages over HTTPS and maps /static
itself; on the plain HTTP port the same worker only redirects to HTTPS.
"""

from __future__ import annotations

from dietstack.model import PUBLIC_CA, USERS, Container, Port, TextFile
from dietstack.render import Env
from dietstack.services.common import http_health, public_ca, server_tls, uwsgi_file

SETTINGS_PATH = "/etc/openstack-dashboard/local_settings.py"
STATIC_ROOT = "/var/lib/horizon/static"
LOGIN_PATH = "/auth/login/"
DEFAULT_PORT = 80
DEFAULT_HTTPS_PORT = 443
DASHBOARD_APP = "openstack_dashboard.wsgi:application"
REDIRECT_APP = "dietstack.start.redirect:application"


def port(env: Env) -> int:
    """The plain HTTP port: it only redirects to HTTPS."""
    return int(env.settings.get("dashboard_port") or DEFAULT_PORT)


def https_port(env: Env) -> int:
    return int(env.settings.get("dashboard_https_port") or DEFAULT_HTTPS_PORT)


def names(env: Env) -> list[str]:
    """Every host name or address a browser may reach the dashboard by."""
    configured = [str(name) for name in env.settings.get("dashboard_names") or ()]
    found = [env.control_ip, env.control.name, *configured]
    return list(dict.fromkeys(name for name in found if name))


def _port_suffix(env: Env) -> str:
    """What a URL adds after the host name: nothing for port 443."""
    return "" if https_port(env) == DEFAULT_HTTPS_PORT else f":{https_port(env)}"


def url(env: Env, path: str = "/") -> str:
    """The dashboard's address as `deploy` prints it and `status` probes it."""
    return f"https://{env.control_ip}{_port_suffix(env)}{path}"


def origins(env: Env) -> list[str]:
    """Where the login form's POST may come from: the dashboard's own HTTPS pages."""
    return [f"https://{name}{_port_suffix(env)}" for name in names(env)]


def _secure(env: Env) -> dict[str, object]:
    """Cookies only over HTTPS, and browsers told to use nothing else for a year."""
    values: dict[str, object] = {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SECURE_HSTS_SECONDS": 31536000,
        # Keystone's certificate is checked against the cloud's CA, not certifi's.
        "OPENSTACK_SSL_CACERT": PUBLIC_CA,
    }
    if env.settings.get("dashboard_behind_proxy"):
        values["SECURE_PROXY_SSL_HEADER"] = ("HTTP_X_FORWARDED_PROTO", "https")
    return values


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
                # The compressed pages' Angular templates are cached here as rendered:
                # after an upgrade the other release's must not be served (their
                # blocks are not in this image's manifest). Sessions start afresh too.
                "KEY_PREFIX": f"horizon-{env.release}",
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
        **_secure(env),
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


def _environment(env: Env) -> tuple[tuple[str, str], ...]:
    """The dispatcher's applications by port, and where the redirect sends browsers."""
    apps = f"{https_port(env)}={DASHBOARD_APP} {port(env)}={REDIRECT_APP}"
    return (
        ("DIETSTACK_WSGI_APPS", apps),
        ("DIETSTACK_HTTPS_PORT", str(https_port(env))),
        ("DIETSTACK_HTTPS_NAMES", " ".join(names(env))),
    )


def containers(env: Env) -> list[Container]:
    settings = local_settings(env)
    uwsgi = uwsgi_file(
        env,
        "/etc/openstack-dashboard/uwsgi.ini",
        ((https_port(env), DASHBOARD_APP),),
        {
            # One process keeps the dashboard small; threads serve a few browsers
            # at once while a page waits on an API.
            "processes": 1,
            "threads": 4,
            "static-map": f"/static={STATIC_ROOT}",
            "offload-threads": 1,
            "log-4xx": None,
            # The plain port: the dispatcher sends its requests to the redirect.
            "http-socket": f"{env.ip}:{port(env)}",
            "module": "dietstack.start.wsgi_ports:application",
        },
    )
    return [
        Container(
            name="horizon",
            service="horizon",
            image="horizon",
            command=("uwsgi", "--ini", uwsgi.path),
            files=(settings, uwsgi, public_ca(env), *server_tls(env)),
            healthcheck=http_health(env, https_port(env), LOGIN_PATH),
            depends_on=("keystone", "memcached"),
            environment=_environment(env),
            ports=(
                Port(https_port(env), USERS, "Dashboard (Horizon), HTTPS"),
                Port(port(env), USERS, "Dashboard: redirects to HTTPS"),
            ),
        )
    ]
