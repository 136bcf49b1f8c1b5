"""Each compute node signs in to RabbitMQ as its own user."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from dietstack import services
from dietstack.engine import nodeaccess, secrets
from dietstack.engine.converge import NodePaths, desired
from dietstack.model import COMPUTE, CONTROL_ROLES, Node, TextFile, Tmpfs
from dietstack.render import Env, config_hash, live_hash
from dietstack.services import rabbitmq

from .helpers import make_env

CONTROL = Node("control", "192.168.1.20", CONTROL_ROLES)
NODE1 = Node("node1", "192.168.1.21", (COMPUTE,))
NODE2 = Node("node2", "192.168.1.22", (COMPUTE,))


def test_only_compute_nodes_get_a_user_and_only_node_users_are_deleted() -> None:
    add, delete = nodeaccess.changes(["openstack", "guest", "node-old"], (CONTROL, NODE1))
    assert add == ["node-node1"]
    assert delete == ["node-old"]


def test_nothing_changes_when_every_node_has_its_user() -> None:
    assert nodeaccess.changes(
        ["openstack", "node-node1", "node-node2"], (CONTROL, NODE1, NODE2)
    ) == (
        [],
        [],
    )


def _env(node: str, values: dict[str, str]) -> Env:
    nodes = [
        {"name": n.name, "management_ip": n.management_ip, "roles": list(n.roles)}
        for n in (CONTROL, NODE1)
    ]
    ip = {"control": CONTROL.management_ip, "node1": NODE1.management_ip}[node]
    return Env({"node_name": node, "management_ip": ip, "nodes": nodes}, values)


def test_a_compute_node_uses_its_own_rabbitmq_user_the_control_node_the_services() -> None:
    values = {name: secrets.generate() for name in secrets.names(["node1"])}
    on_node = _env("node1", values).transport_url
    assert on_node.startswith(f"rabbit://node-node1:{values['rabbitmq_node1_password']}@")
    assert values["rabbitmq_password"] not in on_node
    on_control = _env("control", values).transport_url
    assert on_control.startswith(f"rabbit://openstack:{values['rabbitmq_password']}@")


class RecordingRabbit:
    """The rabbitmq container as nodeaccess sees it: users, and every command run."""

    def __init__(self, users: list[str]) -> None:
        self.users = users
        self.commands: list[list[str]] = []

    def exec(
        self, name: str, command: list[str], environment: dict[str, str] | None = None
    ) -> tuple[int, str]:
        assert name == "rabbitmq"
        self.commands.append(command)
        if "list_users" in command:
            return 0, json.dumps([{"user": user, "tags": []} for user in self.users])
        return 0, ""


def test_sync_adds_with_a_hash_and_deletes_and_never_shows_a_password() -> None:
    values = {name: secrets.generate() for name in secrets.names(["node1"])}
    rabbit = RecordingRabbit(["openstack", "node-gone"])
    nodeaccess.sync(rabbit, (CONTROL, NODE1), values)  # type: ignore[arg-type]
    run = [" ".join(command) for command in rabbit.commands]
    assert any("add_user --pre-hashed-password node-node1 " in line for line in run)
    assert any("set_permissions -p openstack node-node1" in line for line in run)
    assert any(line.endswith("delete_user node-gone") for line in run)
    assert not any(values["rabbitmq_node1_password"] in line for line in run)


def test_the_hash_is_rabbitmqs_salted_sha256() -> None:
    salt = b"\x01\x02\x03\x04"
    digest = hashlib.sha256(salt + b"secret").digest()
    assert nodeaccess.password_hash("secret", salt) == base64.b64encode(salt + digest).decode()


ONE_NODE = [{"name": "compute-1", "management_ip": "192.168.1.21", "roles": ["compute"]}]
TWO_NODES = [
    *ONE_NODE,
    {"name": "compute-2", "management_ip": "192.168.1.22", "roles": ["compute"]},
]


def test_every_start_loads_the_services_user_and_each_compute_nodes_own() -> None:
    """RabbitMQ's state is in memory, so its users come from the definitions file at
    each start: each user with its own password and rights on the one vhost."""
    short = make_env(nodes=ONE_NODE)
    env = Env(short.settings, {name: secrets.generate() for name in short.secrets})
    container = services.find(env, "rabbitmq")
    (definitions,) = [f for f in container.files if f.path == rabbitmq.DEFINITIONS]
    assert isinstance(definitions, TextFile) and definitions.live
    document = json.loads(definitions.text)
    users = {user["name"]: user["password"] for user in document["users"]}
    assert users == {
        "openstack": env.secrets["rabbitmq_password"],
        "node-compute-1": env.secrets["rabbitmq_compute-1_password"],
    }
    assert {p["user"] for p in document["permissions"]} == set(users)
    assert {p["vhost"] for p in document["permissions"]} == {"openstack"}
    config = container.files[0]
    assert isinstance(config, TextFile)
    assert f"definitions.local.path = {rabbitmq.DEFINITIONS}" in config.text
    assert "default_pass" not in config.text
    # Given the passwords it loads (and so checks); no other node's, no admin's.
    given = secrets.used_by(container, env.secrets)
    assert set(given) >= {"rabbitmq_password", "rabbitmq_compute-1_password"}
    assert "rabbitmq_compute-2_password" not in given and "admin_password" not in given


def test_its_state_is_in_memory_and_a_new_node_is_imported_without_a_restart() -> None:
    env = make_env(nodes=ONE_NODE)
    one = services.find(env, "rabbitmq")
    assert one.tmpfs == (Tmpfs(rabbitmq.STATE_DIR, rabbitmq.STATE_MIB),)
    assert not any(m.target.startswith("/var/lib/rabbitmq") for m in one.volumes)
    paths = NodePaths(Path("/d/secrets.yaml"), Path("/d/overrides"), Path("/d"))
    spec = desired(one, env, paths, "tag", "id").spec
    assert spec.tmpfs == ((rabbitmq.STATE_DIR, f"size={rabbitmq.STATE_MIB}m"),)
    two = services.find(make_env(nodes=TWO_NODES), "rabbitmq")
    assert config_hash(one, "image", None) == config_hash(two, "image", None)
    assert live_hash(one) != live_hash(two)
    # Rewritten in place by root; RabbitMQ reads it as its own user.
    assert two.reload == (
        f"chown rabbitmq:rabbitmq {rabbitmq.DEFINITIONS}",
        f"rabbitmqctl -q import_definitions {rabbitmq.DEFINITIONS}",
    )
