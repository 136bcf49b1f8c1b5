"""Cinder: block storage. The API and the scheduler; volumes live on NFS."""

from __future__ import annotations

from dietstack.model import Container, Endpoint, IniFile, Mount
from dietstack.render import Env
from dietstack.services.common import (
    api_container,
    bootstrap_container,
    combine,
    keystone_authtoken,
    keystone_client,
    messaging,
    service_user,
    worker_container,
)

PORT = 8776
ENDPOINTS = (Endpoint("block-storage", "cinder", PORT, "/v3", "OpenStack Block Storage"),)
DATA = (Mount("cinder", "/var/lib/cinder"),)


def config(env: Env) -> IniFile:
    return IniFile(
        "/etc/cinder/cinder.conf",
        combine(
            {
                "DEFAULT": {
                    "my_ip": env.ip,
                    "osapi_volume_listen": env.ip,
                    "state_path": "/var/lib/cinder",
                    "api_paste_config": "/opt/openstack/etc/cinder/api-paste.ini",
                    "auth_strategy": "keystone",
                    "osapi_volume_workers": env.workers,
                },
                "database": {"connection": env.database_url("cinder"), "max_retries": -1},
                "keystone_authtoken": keystone_authtoken(env, "cinder"),
                "nova": keystone_client(env, "cinder") | {"interface": "public"},
                "oslo_concurrency": {"lock_path": "/var/lib/cinder/tmp"},
            },
            service_user(env, "cinder"),
            messaging(env),
        ),
    )


def containers(env: Env) -> list[Container]:
    files = (config(env),)
    return [
        api_container(
            env,
            "cinder-api",
            "cinder",
            "cinder.wsgi.api:application",
            PORT,
            files,
            DATA,
            depends_on=("keystone", "rabbitmq"),
        ),
        worker_container("cinder-scheduler", "cinder", ("cinder-scheduler",), files, DATA),
    ]


def bootstrap(env: Env) -> Container:
    return bootstrap_container(
        "cinder-bootstrap", "cinder", "cinder-manage db sync\n", (config(env),), DATA
    )
