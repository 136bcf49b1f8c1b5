"""OVN central: the northbound and southbound databases and ovn-northd.

Neutron writes the logical network into the northbound database; ovn-northd
translates it into the southbound flows that every node's ovn-controller follows.
"""

from __future__ import annotations

from dietstack.model import Container, Healthcheck, Mount
from dietstack.render import Env
from dietstack.services.common import tcp_health

NB_PORT = 6641
SB_PORT = 6642


def nb_connection(env: Env) -> str:
    return f"tcp:{env.ip}:{NB_PORT}"


def sb_connection(env: Env) -> str:
    return f"tcp:{env.ip}:{SB_PORT}"


def _database(env: Env, kind: str, port: int) -> Container:
    db = f"/var/lib/ovn/ovn{kind}_db.db"
    schema = f"/usr/share/ovn/ovn-{kind}.ovsschema"
    return Container(
        name=f"ovn-{kind}-db",
        service="ovn",
        image="ovn",
        command=(
            "ovsdb-server",
            db,
            f"--remote=ptcp:{port}:{env.ip}",
            f"--remote=punix:/run/ovn/ovn{kind}_db.sock",
            f"--unixctl=/run/ovn/ovn{kind}_db.ctl",
            "--log-file=/dev/null",
            "--verbose=console:info",
        ),
        volumes=(Mount("ovn", "/var/lib/ovn"),),
        healthcheck=tcp_health(env.ip, port),
        ports=(port,),
        prepare=(
            "mkdir -p /run/ovn",
            f"[ -f {db} ] || ovsdb-tool create {db} {schema}",
            # After an upgrade of OVN, bring the stored database to the new schema.
            f"if ovsdb-tool needs-conversion {db} {schema} | grep -q yes; "
            f"then ovsdb-tool convert {db} {schema}; fi",
        ),
    )


def containers(env: Env) -> list[Container]:
    northd = Container(
        name="ovn-northd",
        service="ovn",
        image="ovn",
        command=(
            "ovn-northd",
            f"--ovnnb-db={nb_connection(env)}",
            f"--ovnsb-db={sb_connection(env)}",
            "--unixctl=/run/ovn/ovn-northd.ctl",
            "--log-file=/dev/null",
            "--verbose=console:info",
        ),
        healthcheck=Healthcheck(
            ("ovn-appctl", "-t", "/run/ovn/ovn-northd.ctl", "status"), start_period=30
        ),
        depends_on=("ovn-nb-db", "ovn-sb-db"),
        prepare=("mkdir -p /run/ovn",),
    )
    return [_database(env, "nb", NB_PORT), _database(env, "sb", SB_PORT), northd]
