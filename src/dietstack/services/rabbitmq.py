"""RabbitMQ: one node, one vhost; one user shared by the control node's services,
one per compute node.

The control node's services reach it over loopback. Other nodes reach it over
TLS only, presenting their node certificate (checked against the nodes' CA: a
client without one is refused before it may try a password) and then their own
user's password.

Its state lives in memory, not in data_dir: OpenStack's queues and messages are
transient (every service declares its own again when it reconnects), so nothing
of value is lost at a restart, and a full disk cannot raise RabbitMQ's disk alarm,
which would block every publisher and so every OpenStack API that sends a message.
Its users, vhost and rights are loaded at each start from a definitions file
rendered from the settings and secrets.
"""

from __future__ import annotations

import json

from dietstack.model import (
    HOST,
    NODES,
    SERVICES_TLS,
    Container,
    Port,
    TextFile,
    Tmpfs,
    rabbitmq_secret_name,
    rabbitmq_user,
)
from dietstack.render import AMQP_PORT, AMQPS_PORT, LOOPBACK, Env
from dietstack.services.common import nodes_ca_files, tcp_health

PORT = AMQP_PORT
TLS_PORT = AMQPS_PORT
EPMD_PORT = 4369
DISTRIBUTION_PORT = 25672
TLS_DIR = "/etc/rabbitmq/tls"
VHOST = "openstack"
SERVICES_USER = "openstack"
DEFINITIONS = "/etc/rabbitmq/definitions.json"
STATE_DIR = "/var/lib/rabbitmq/mnesia"
#: Its whole state at idle is well under 1 MiB; the rest is room for messages that
#: wait in a queue whose consumer is away. Memory is used only as it is filled.
STATE_MIB = 128


def tls_files(env: Env) -> tuple[TextFile, ...]:
    return nodes_ca_files(
        env,
        SERVICES_TLS,
        f"{TLS_DIR}/nodes-ca.pem",
        f"{TLS_DIR}/server.crt",
        f"{TLS_DIR}/server.key",
    )


def definitions(env: Env) -> TextFile:
    """The services' user and one user per compute node, each with every right on
    the one vhost. Written into the running container and imported when a node is
    added (a node removed is deleted by engine/nodeaccess.py, as an import only
    adds), and imported into the empty state at each start."""
    users = [(SERVICES_USER, env.secrets["rabbitmq_password"], ["administrator"])]
    users += [
        (rabbitmq_user(node.name), env.secrets[rabbitmq_secret_name(node.name)], [])
        for node in env.nodes
        if not node.is_control
    ]
    document = {
        "users": [
            {"name": name, "password": password, "tags": tags} for name, password, tags in users
        ],
        "vhosts": [{"name": VHOST}],
        "permissions": [
            {"user": name, "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"}
            for name, _, _ in users
        ],
    }
    return TextFile(DEFINITIONS, json.dumps(document, indent=1) + "\n", mode=0o640, live=True)


def containers(env: Env) -> list[Container]:
    config = TextFile(
        "/etc/rabbitmq/rabbitmq.conf",
        "\n".join(
            (
                f"listeners.tcp.1 = {LOOPBACK}:{PORT}",
                f"listeners.ssl.1 = {env.ip}:{TLS_PORT}",
                f"ssl_options.cacertfile = {TLS_DIR}/nodes-ca.pem",
                f"ssl_options.certfile = {TLS_DIR}/server.crt",
                f"ssl_options.keyfile = {TLS_DIR}/server.key",
                "ssl_options.verify = verify_peer",
                "ssl_options.fail_if_no_peer_cert = true",
                "ssl_options.versions.1 = tlsv1.3",
                "ssl_options.versions.2 = tlsv1.2",
                # Users, vhost and rights, at every start (no default user is made).
                "definitions.import_backend = local_filesystem",
                f"definitions.local.path = {DEFINITIONS}",
                "loopback_users = none",
                # oslo.messaging's default transient classic queues; RabbitMQ 4.3
                # denies them unless permitted.
                "deprecated_features.permit.transient_nonexcl_queues = true",
                "vm_memory_high_watermark.absolute = 512MiB",
                # Connection, channel and queue statistics are gathered every 5 s by
                # default, for a management UI this broker does not run.
                "collect_statistics_interval = 60000",
                # Of the in-memory state directory: reached only if messages pile up.
                "disk_free_limit.absolute = 16MB",
                "log.console = true",
                "log.console.level = warning",
                "log.file = false",
                "",
            )
        ),
        mode=0o640,
    )
    environment = TextFile(
        "/etc/rabbitmq/rabbitmq-env.conf",
        # A fixed node name keeps the data directory when the host is renamed;
        # Erlang distribution stays on loopback, as the node is never clustered.
        "NODENAME=rabbit@localhost\n"
        "ERL_EPMD_ADDRESS=127.0.0.1\n"
        'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n',
        mode=0o644,
    )
    cookie = TextFile(
        "/var/lib/rabbitmq/.erlang.cookie", env.secrets["rabbitmq_erlang_cookie"], mode=0o400
    )
    return [
        Container(
            name="rabbitmq",
            service="rabbitmq",
            image="rabbitmq",
            command=("rabbitmq-server",),
            files=(config, environment, cookie, definitions(env), *tls_files(env)),
            tmpfs=(Tmpfs(STATE_DIR, STATE_MIB),),
            # The server reads the file itself, as its own user.
            reload=(
                f"chown rabbitmq:rabbitmq {DEFINITIONS}",
                f"rabbitmqctl -q import_definitions {DEFINITIONS}",
            ),
            healthcheck=tcp_health(env.ip, TLS_PORT),
            ports=(
                Port(TLS_PORT, NODES, "RabbitMQ over TLS: the nodes' message queue"),
                Port(PORT, HOST, "RabbitMQ: the control node's services' message queue"),
                Port(EPMD_PORT, HOST, "Erlang port mapper (for rabbitmqctl)"),
                Port(DISTRIBUTION_PORT, HOST, "Erlang distribution (for rabbitmqctl)"),
            ),
            prepare=("chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq",),
        )
    ]
