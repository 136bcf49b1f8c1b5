"""What a compute node may use of the control node's message queue: a RabbitMQ user
of its own, made when it joins and deleted when it leaves.

The control node's services share one user; each compute node's nova-compute signs
in as `node-NAME` with a password only that node holds, so `node remove` shuts the
node out of the queue (a shared password would stay valid on a removed machine).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable

from dietstack.errors import DietStackError
from dietstack.hosts.runtime import DockerRuntime
from dietstack.model import Node, rabbitmq_secret_name, rabbitmq_user
from dietstack.services import rabbitmq

CONTAINER = "rabbitmq"
VHOST = rabbitmq.VHOST
PREFIX = rabbitmq_user("")


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's stored form of a password (its default, salted SHA-256), so the
    password itself never appears on a command line, which every local user can
    read (rabbitmqctl reads no standard input)."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


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
        hashed = password_hash(secrets[rabbitmq_secret_name(by_user[user])])
        _rabbitmqctl(
            runtime,
            ["add_user", "--pre-hashed-password", user, hashed],
            f"adding the user of node {by_user[user]}",
        )
        _rabbitmqctl(
            runtime,
            ["set_permissions", "-p", VHOST, user, ".*", ".*", ".*"],
            f"giving node {by_user[user]} its rights",
        )
    for user in delete:
        _rabbitmqctl(
            runtime,
            ["delete_user", user],
            f"deleting the user {user} of a removed node (it can still sign in)",
        )


def _rabbitmqctl(runtime: DockerRuntime, arguments: list[str], what: str) -> None:
    code, output = runtime.exec(CONTAINER, ["rabbitmqctl", "-q", *arguments])
    if code != 0:
        raise DietStackError(
            f"{CONTAINER}: {what} failed",
            details=output.strip()[-2000:],
            hint="check `dietstack logs rabbitmq`, then run `dietstack deploy` again",
        )
