"""memcached: the token cache of Keystone and the middleware of every API."""

from __future__ import annotations

from dietstack.model import HOST, Container, Port
from dietstack.render import LOOPBACK, Env
from dietstack.services.common import tcp_health

PORT = 11211


def containers(env: Env) -> list[Container]:
    return [
        Container(
            name="memcached",
            service="memcached",
            image="memcached",
            command=("memcached", "-u", "nobody", "-l", LOOPBACK, "-p", str(PORT), "-m", "64"),
            healthcheck=tcp_health(LOOPBACK, PORT),
            ports=(Port(PORT, HOST, "memcached: Keystone's token cache, the APIs' middleware"),),
        )
    ]
