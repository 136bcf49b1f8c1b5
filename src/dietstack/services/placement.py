"""Placement: the inventory of compute resources that the scheduler allocates from.

Its API runs in nova-api's process, as a third application beside Nova's compute
and metadata APIs, on its own port and with its own configuration file.
"""

from __future__ import annotations

from dietstack.model import USERS, Container, Endpoint, IniFile, Port
from dietstack.render import Env
from dietstack.services.common import bootstrap_container, keystone_authtoken

PORT = 8778
#: The container whose process serves Placement's API (see `api`).
SERVED_BY = "nova-api"
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
    """None of its own: nova-api's process serves Placement (see `api`)."""
    return []


def api(env: Env) -> tuple[tuple[Port, str], IniFile]:
    """Placement's WSGI application and its configuration, for the process that
    serves it beside Nova's APIs. Placement reads its own file into a ConfigOpts of
    its own, never Nova's, and keeps its own database and policy objects: it is
    built to run inside another service's process (Nova's own tests run it so).
    There it adds about 12 MiB instead of the 95 MiB of a process of its own."""
    return (Port(PORT, USERS, "Placement API"), "placement.wsgi.api:application"), config(env)


def bootstrap(env: Env) -> Container:
    return bootstrap_container(
        "placement-bootstrap", "placement", "placement-manage db sync\n", (config(env),)
    )
