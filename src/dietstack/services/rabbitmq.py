"""RabbitMQ: one node, one vhost and one user shared by the OpenStack services."""

from __future__ import annotations

from dietstack.model import HOST, NODES, Container, Mount, Port, TextFile
from dietstack.render import Env
from dietstack.services.common import tcp_health

PORT = 5672
EPMD_PORT = 4369
DISTRIBUTION_PORT = 25672


def containers(env: Env) -> list[Container]:
    config = TextFile(
        "/etc/rabbitmq/rabbitmq.conf",
        "\n".join(
            (
                f"listeners.tcp.1 = {env.ip}:{PORT}",
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
            files=(config, environment, cookie),
            volumes=(Mount("rabbitmq", "/var/lib/rabbitmq/mnesia"),),
            healthcheck=tcp_health(env.ip, PORT),
            ports=(
                Port(PORT, NODES, "RabbitMQ: the services' and nodes' message queues"),
                Port(EPMD_PORT, HOST, "Erlang port mapper (for rabbitmqctl)"),
                Port(DISTRIBUTION_PORT, HOST, "Erlang distribution (for rabbitmqctl)"),
            ),
            prepare=("chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq",),
        )
    ]
