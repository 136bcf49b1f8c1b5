"""What a compute node may use of the control node's message queue: a RabbitMQ user
of its own, made when it joins and deleted when it leaves.

The control node's services share one user; each compute node's nova-compute signs
in as `node-NAME` with a password only that node holds, so `node remove` shuts the
node out of the queue (a shared password would stay valid on a removed machine).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from dietstack.errors import DietStackError
from dietstack.model import Node, rabbitmq_secret_name, rabbitmq_user
from dietstack.runtime import DockerRuntime

CONTAINER = "rabbitmq"
VHOST = "openstack"
PREFIX = rabbitmq_user("")

#: Adds a user and its rights on the cloud's vhost; the password comes from the
#: environment, never the command line (which every local user can read).
ADD_USER = (
    'printf "%s\\n" "$NODE_PASSWORD" | rabbitmqctl -q add_user "$NODE_USER" && '
    f'rabbitmqctl -q set_permissions -p {VHOST} "$NODE_USER" ".*" ".*" ".*"'
)


def wanted(nodes: Iterable[Node]) -> set[str]:
    return {rabbitmq_user(node.name) for node in nodes if not node.is_control}


def changes(existing: Iterable[str], nodes: Iterable[Node]) -> tuple[list[str], list[str]]:
    """(users to add, users to delete): node users only, never the services' own."""
    have = {user for user in existing if user.startswith(PREFIX)}
    want = wanted(nodes)
    return sorted(want - have), sorted(have - want)


def existing_users(runtime: DockerRuntime) -> list[str]:
    code, output = runtime.exec(
        CONTAINER, ["rabbitmqctl", "-q", "list_users", "--formatter", "json"]
    )
    try:
        if code != 0:
            raise ValueError(output)
        return [str(row["user"]) for row in json.loads(output)]
    except (ValueError, KeyError, TypeError):
        raise DietStackError(
            f"{CONTAINER}: listing its users failed",
            details=output.strip()[-2000:],
            hint="check `dietstack logs rabbitmq`, then run the command again",
        ) from None


def sync(runtime: DockerRuntime, nodes: tuple[Node, ...], secrets: dict[str, str]) -> None:
    """Make exactly the compute nodes' users exist (the control node's runtime)."""
    add, delete = changes(existing_users(runtime), nodes)
    by_user = {rabbitmq_user(node.name): node.name for node in nodes}
    for user in add:
        password = secrets[rabbitmq_secret_name(by_user[user])]
        code, output = runtime.exec(
            CONTAINER,
            ["sh", "-c", ADD_USER],
            environment={"NODE_USER": user, "NODE_PASSWORD": password},
        )
        if code != 0:
            raise DietStackError(
                f"{CONTAINER}: adding the user of node {by_user[user]} failed",
                details=output.strip()[-2000:],
                hint="check `dietstack logs rabbitmq`, then run the command again",
            )
    for user in delete:
        code, output = runtime.exec(CONTAINER, ["rabbitmqctl", "-q", "delete_user", user])
        if code != 0:
            raise DietStackError(
                f"{CONTAINER}: deleting the user {user} of a removed node failed; that "
                "node can still sign in to the message queue",
                details=output.strip()[-2000:],
                hint="check `dietstack logs rabbitmq`, then run `dietstack deploy` (it "
                "deletes the user again)",
            )
