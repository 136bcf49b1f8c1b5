"""RabbitMQ: one node, one vhost; one user shared by the control node's services,
one per compute node.

The control node's services reach it over loopback. Other nodes reach it over
TLS only, presenting their node certificate (checked against the nodes' CA: a
client without one is refused before it may try a password) and then their own
user's password.
"""

from __future__ import annotations

from dietstack.model import HOST, NODES, SERVICES_TLS, Container, Mount, Port, TextFile
from dietstack.render import AMQP_PORT, AMQPS_PORT, LOOPBACK, Env
from dietstack.services.common import nodes_ca_files, tcp_health

PORT = AMQP_PORT
TLS_PORT = AMQPS_PORT
EPMD_PORT = 4369
DISTRIBUTION_PORT = 25672
TLS_DIR = "/etc/rabbitmq/tls"


def tls_files(env: Env) -> tuple[TextFile, ...]:
    return nodes_ca_files(
        env,
        SERVICES_TLS,
        f"{TLS_DIR}/nodes-ca.pem",
        f"{TLS_DIR}/server.crt",
        f"{TLS_DIR}/server.key",
    )


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
                # The user and vhost are created on the first start of an empty node.
                "default_vhost = openstack",
                "default_user = openstack",
                f"default_pass = {env.secrets['rabbitmq_password']}",
                "default_permissions.configure = .*",
                "default_permissions.read = .*",
                "default_permissions.write = .*",
                "default_user_tags.administrator = true",
                "loopback_users = none",
                # oslo.messaging's default transient classic queues; RabbitMQ 4.3
                # denies them unless permitted.
                "deprecated_features.permit.transient_nonexcl_queues = true",
                "vm_memory_high_watermark.absolute = 512MiB",
                "disk_free_limit.absolute = 500MB",
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
            files=(config, environment, cookie, *tls_files(env)),
            volumes=(Mount("rabbitmq", "/var/lib/rabbitmq/mnesia"),),
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
