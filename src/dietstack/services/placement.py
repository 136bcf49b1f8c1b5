"""Placement: the inventory of compute resources that the scheduler allocates from."""

from __future__ import annotations

from dietstack.model import Container, Endpoint, IniFile
from dietstack.render import Env
from dietstack.services.common import api_container, bootstrap_container, keystone_authtoken

PORT = 8778
ENDPOINTS = (Endpoint("placement", "placement", PORT, "", "Placement API"),)


def config(env: Env) -> IniFile:
    return IniFile(
        "/etc/placement/placement.conf",
        {
            "api": {"auth_strategy": "keystone"},
            "placement_database": {"connection": env.database_url("placement"), "max_retries": -1},
            "keystone_authtoken": keystone_authtoken(env, "placement"),
        },
    )


def containers(env: Env) -> list[Container]:
    return [
        api_container(
            env,
            "placement-api",
            "placement",
            "placement.wsgi.api:application",
            PORT,
            (config(env),),
            depends_on=("keystone",),
        )
    ]


def bootstrap(env: Env) -> Container:
    return bootstrap_container(
        "placement-bootstrap", "placement", "placement-manage db sync\n", (config(env),)
    )
