"""Glance: the image service, storing images as files on the data volume."""

from __future__ import annotations

from dietstack.model import Container, Endpoint, IniFile, Mount
from dietstack.render import Env
from dietstack.services.common import (
    api_container,
    bootstrap_container,
    https_socket,
    keystone_authtoken,
)

PORT = 9292
ENDPOINTS = (Endpoint("image", "glance", PORT, "", "OpenStack Image"),)
DATA = (Mount("glance", "/var/lib/glance"),)


def config(env: Env) -> IniFile:
    return IniFile(
        "/etc/glance/glance-api.conf",
        {
            # 2026.2 removed glance's own server and with it bind_host (uWSGI binds).
            "DEFAULT": {"enabled_backends": "file:file"}
            | ({} if env.release_at_least("2026.2") else {"bind_host": env.ip}),
            "database": {"connection": env.database_url("glance"), "max_retries": -1},
            "keystone_authtoken": keystone_authtoken(env, "glance"),
            "paste_deploy": {
                # Without the keystone flavor Glance would serve without authentication.
                "flavor": "keystone",
                "config_file": "/opt/openstack/etc/glance/glance-api-paste.ini",
            },
            "glance_store": {"default_backend": "file"},
            "file": {"filesystem_store_datadir": "/var/lib/glance/images/"},
            "os_glance_staging_store": {"filesystem_store_datadir": "/var/lib/glance/staging/"},
            "os_glance_tasks_store": {"filesystem_store_datadir": "/var/lib/glance/tasks/"},
            "oslo_concurrency": {"lock_path": "/var/lib/glance/tmp"},
            # Under uWSGI sys.executable is not Python; image import tasks need it.
            "wsgi": {"python_interpreter": "/opt/openstack/bin/python3"},
        },
    )


def containers(env: Env) -> list[Container]:
    return [
        api_container(
            env,
            "glance-api",
            "glance",
            "glance.wsgi.api:application",
            PORT,
            (config(env),),
            DATA,
            # Image uploads arrive chunked: only uWSGI's HTTP router passes them on.
            uwsgi_extra={
                "https-socket": None,
                "https": https_socket(f"{env.ip}:{PORT}"),
                "http-auto-chunked": True,
                "http-chunked-input": True,
                "http-raw-body": True,
                "chunked-input-limit": 67108864,
                "socket-timeout": 30,
            },
            depends_on=("keystone",),
        )
    ]


def bootstrap(env: Env) -> Container:
    return bootstrap_container(
        "glance-bootstrap", "glance", "glance-manage db_sync\n", (config(env),), DATA
    )
