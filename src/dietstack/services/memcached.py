"""memcached: the token cache of Keystone and the middleware of every API."""

from __future__ import annotations

from dietstack.model import Container
from dietstack.render import Env
from dietstack.services.common import tcp_health

PORT = 11211


def containers(env: Env) -> list[Container]:
    return [
        Container(
            name="memcached",
            service="memcached",
            image="memcached",
            command=("memcached", "-u", "nobody", "-l", env.ip, "-p", str(PORT), "-m", "64"),
            healthcheck=tcp_health(env.ip, PORT),
            ports=(PORT,),
        )
    ]
