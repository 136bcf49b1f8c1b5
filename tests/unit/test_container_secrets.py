"""Each container is given only the secrets its own description holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from dietstack import services
from dietstack.engine import secrets
from dietstack.engine.converge import NodePaths, mounts
from dietstack.render import WITHHELD, Env, Withheld, render_files
from dietstack.services import nova
from dietstack.start import holds_withheld_secret, nova_commands

from .helpers import SETTINGS


@pytest.fixture
def values() -> dict[str, str]:
    return {name: secrets.generate() for name in secrets.names(["node1"])}


def test_every_container_renders_the_same_from_its_own_secrets_alone(
    values: dict[str, str],
) -> None:
    full = Env(SETTINGS, values)
    for container in services.all_containers(full):
        own = secrets.used_by(container, values)
        alone = services.find(Env(SETTINGS, Withheld(own)), container.name)
        assert not holds_withheld_secret(alone), container.name
        assert render_files(alone, None) == render_files(container, None), container.name
        assert alone.environment == container.environment, container.name


def test_no_container_but_the_keystone_bootstrap_gets_the_admin_password(
    values: dict[str, str],
) -> None:
    holders = {
        container.name
        for container in services.all_containers(Env(SETTINGS, values))
        if "admin_password" in secrets.used_by(container, values)
    }
    assert holders == {"keystone-bootstrap"}


def test_nova_ssh_holds_its_host_key_and_the_client_key_nothing_else(
    values: dict[str, str],
) -> None:
    container = services.find(Env(SETTINGS, values), "nova-ssh")
    assert set(secrets.used_by(container, values)) == {
        "nova_ssh_host_private_key",
        "nova_ssh_public_key",
    }


def test_a_container_missing_one_of_its_secrets_is_told_at_start(
    values: dict[str, str],
) -> None:
    container = services.find(Env(SETTINGS, values), "glance-api")
    own = secrets.used_by(container, values)
    own.pop("glance_database_password")
    alone = services.find(Env(SETTINGS, Withheld(own)), "glance-api")
    assert holds_withheld_secret(alone)
    assert WITHHELD in render_files(alone, None)["/etc/glance/glance-api.conf"][0].decode()


def test_each_container_mounts_its_own_secrets_file(values: dict[str, str]) -> None:
    paths = NodePaths(Path("/etc/dietstack/secrets.yaml"), Path("/o"), Path("/data"))
    container = services.find(Env(SETTINGS, values), "horizon")
    sources = {target: source for source, target, _ in mounts(container, paths)}
    assert sources["/etc/dietstack/secrets.yaml"] == "/data/config/secrets/horizon.yaml"
    assert "/etc/dietstack/secrets.yaml" not in {s for s, _, _ in mounts(container, paths)}


@pytest.mark.parametrize(
    "asked",
    [
        "cat /etc/dietstack/secrets.yaml",
        "sh",
        "",
        "internal-sftp",
        "bash -c 'id'",
        "touch /etc/cron.d/x",
        "rm -rf /var/lib/nova/instances",
        "rm -rf /var/lib/nova/instances/../../../etc",
        "mkdir -p /var/lib/nova/instances/a /etc/x",
        "touch /var/lib/nova/instances/a; sh",
        "scp -t /etc/nova-ssh/authorized_keys",
        "scp -r -t /var/lib/nova/instances/../../../../etc",
        "scp -t -f /var/lib/nova/instances/a",
        "scp -S /bin/sh -t /var/lib/nova/instances/a",
        "scp -o ProxyCommand=sh -t /var/lib/nova/instances/a",
    ],
)
def test_the_nova_key_runs_nothing_but_novas_file_commands(asked: str) -> None:
    assert nova_commands.allowed(asked) is None


@pytest.mark.parametrize(
    ("asked", "runs"),
    [
        ("touch /var/lib/nova/instances/u/x", ["touch", "/var/lib/nova/instances/u/x"]),
        ("rm -rf /var/lib/nova/instances/u", ["rm", "-rf", "/var/lib/nova/instances/u"]),
        ("mkdir -p /var/lib/nova/instances/u", ["mkdir", "-p", "/var/lib/nova/instances/u"]),
        (
            "scp -r -t /var/lib/nova/instances/u/disk",
            ["/usr/bin/scp", "-r", "-t", "--", "/var/lib/nova/instances/u/disk"],
        ),
        (
            "scp -r -f -- /var/lib/nova/instances/_base/abc",
            ["/usr/bin/scp", "-r", "-f", "--", "/var/lib/nova/instances/_base/abc"],
        ),
    ],
)
def test_novas_own_file_commands_run_as_asked(asked: str, runs: list[str]) -> None:
    assert nova_commands.allowed(asked) == runs


def test_the_nova_key_runs_the_checking_program_and_scp_speaks_its_own_protocol(
    values: dict[str, str],
) -> None:
    env = Env(SETTINGS, values)
    keys = render_files(services.find(env, "nova-ssh"), None)["/etc/nova-ssh/authorized_keys"]
    assert (
        keys[0]
        .decode()
        .startswith('restrict,command="/usr/lib/dietstack/dietstack-start --nova-ssh" ')
    )
    sshd = render_files(services.find(env, "nova-ssh"), None)["/etc/nova-ssh/sshd_config"]
    assert b"Subsystem" not in sshd[0]
    client = render_files(services.find(env, "nova-compute"), None)
    assert client["/usr/local/bin/scp"][0] == nova.SCP_WRAPPER.text.encode()
    assert b"scp -O" in client["/usr/local/bin/scp"][0]
