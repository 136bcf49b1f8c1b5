"""Who may reach which port: the declarations, the firewall rendered from them,
the NFS export, the inventory and the judgement of a probe's answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dietstack import exposure, inventory, services, verify
from dietstack.errors import DietStackError
from dietstack.model import AUDIENCES, HOST, NODES, USERS
from dietstack.render import LOOPBACK, Env, config_hash, render_files
from dietstack.services import firewall

from .test_converge import make_env

COMPUTE = {"name": "compute-1", "management_ip": "192.168.1.21", "roles": ["compute"]}


def nft_set(rules: str, name: str) -> set[str]:
    """The elements of one named set in the rendered ruleset."""
    block = re.search(rf"set {name} {{(.*?)\n\t}}", rules, re.S)
    assert block, name
    elements = re.search(r"elements = \{ (.*) \}", block.group(1))
    return set(elements.group(1).split(", ")) if elements else set()


def rules_of(env: Env) -> str:
    return services.find(env, "firewall").files[0].text  # type: ignore[union-attr]


def test_every_port_has_one_known_audience() -> None:
    env = make_env()
    seen: dict[tuple[str, int], str] = {}
    for port in services.declared_ports(env):
        assert port.audience in AUDIENCES, port
        assert port.purpose
        for number in port.numbers:
            key = (port.protocol, number)
            assert seen.setdefault(key, port.audience) == port.audience, key


def test_firewall_sets_follow_the_declarations() -> None:
    rules = rules_of(make_env())
    assert nft_set(rules, "user_tcp") == {
        "80", "5000", "6080", "8000", "8004", "8774", "8776", "8778", "9292", "9696"
    }  # fmt: skip
    assert nft_set(rules, "node_tcp") == {
        "2049",
        "5672",
        "5900-5999",
        "6642",
        "8022",
        "8775",
        "16514",
        "49152-49215",
    }
    assert {"3306", "11211", "6641", "4369", "25672", "10000-10999"} <= nft_set(rules, "host_tcp")
    assert nft_set(rules, "node_udp") == {"2049", "6081"}
    assert nft_set(rules, "nodes_ipv4") == {"192.168.1.20"}
    # One transaction replaces the table; nothing else on the host is flushed.
    assert "flush ruleset" not in rules
    assert rules.count(f"delete table inet {firewall.TABLE}") == 1
    assert 'iif "lo" accept' in rules and "ip saddr 172.24.4.0/24 jump from_instances" in rules


def test_instances_reach_only_user_ports_and_ssh() -> None:
    rules = rules_of(make_env())
    chain = rules.split("chain from_instances {")[1]
    accepts = [line.strip() for line in chain.splitlines() if line.strip().endswith("accept")]
    assert accepts == [
        "ct state established,related accept",
        "tcp dport @user_tcp accept",
        "tcp dport 22 accept",
        "icmp type echo-request accept",
    ]
    assert "meta l4proto tcp reject with tcp reset" in chain


def test_control_only_services_listen_on_loopback() -> None:
    env = make_env()
    mariadb = render_files(services.find(env, "mariadb"), None)
    assert f"bind-address = {LOOPBACK}" in next(iter(mariadb.values()))[0].decode()
    assert LOOPBACK in services.find(env, "memcached").command
    assert f"--remote=ptcp:6641:{LOOPBACK}" in services.find(env, "ovn-nb-db").command
    assert "--remote=ptcp:6642:192.168.1.20" in services.find(env, "ovn-sb-db").command
    assert f"@{LOOPBACK}:3306/" in env.database_url("nova")
    assert env.memcached_servers == f"{LOOPBACK}:11211"


def test_adding_a_node_admits_it_everywhere_and_touches_nothing_else() -> None:
    before, after = make_env(), make_env(nodes=[COMPUTE])
    assert nft_set(rules_of(after), "nodes_ipv4") == {"192.168.1.20", "192.168.1.21"}
    ganesha = services.find(after, "nfs-server").files[0].text  # type: ignore[union-attr]
    assert "Clients = 192.168.1.20, 192.168.1.21;" in ganesha
    changed = [
        container.name
        for container in services.all_containers(before)
        if config_hash(container, "image", None)
        != config_hash(services.find(after, container.name), "image", None)
    ]
    assert changed == ["firewall", "nfs-server"]


def test_nfs_export_admits_only_the_nodes() -> None:
    ganesha = services.find(make_env(), "nfs-server").files[0].text  # type: ignore[union-attr]
    export = ganesha.split("EXPORT {")[1]
    assert "Access_Type = None;" in export.split("CLIENT {")[0]
    assert "Clients = 192.168.1.20;" in export


def test_forbidden_names_each_non_user_port_with_its_owner() -> None:
    env = make_env()
    listening = {5000: "keystone", 3306: "mariadb", 33823: "glance-api"}
    answered = [
        exposure.Target("192.168.1.20", 5000),
        exposure.Target("192.168.1.20", 3306),
        exposure.Target("172.24.4.1", 5900),
        exposure.Target("192.168.1.20", 33823),
    ]
    problems = exposure.forbidden(env, answered, listening)
    assert len(problems) == 3
    assert problems[0].startswith("192.168.1.20:3306 (MariaDB") and HOST in problems[0]
    assert problems[1].startswith("172.24.4.1:5900 (instance VNC") and NODES in problems[1]
    assert "glance-api, a port no service declares" in problems[2]
    assert exposure.forbidden(env, answered[:1], listening) == []
    assert 5000 in exposure.user_ports(env) and USERS


def test_probe_targets_cover_listening_ports_and_range_starts() -> None:
    targets = exposure.targets(make_env(), {33823: "glance-api"}, ["192.168.1.20", "172.24.4.1"])
    ports = {t.port for t in targets}
    assert {33823, 5900, 10000, 3306, 5000} <= ports
    assert {t.address for t in targets} == {"192.168.1.20", "172.24.4.1"}


def test_inventory_file_is_checked_and_every_problem_reported(tmp_path: Path) -> None:
    path = tmp_path / inventory.FILE_NAME
    assert inventory.load(path, "192.168.1.20") == []
    path.write_text(
        "- {name: compute-1, management_ip: 192.168.1.21}\n"
        "- {name: compute-1, management_ip: 192.168.1.22}\n"
        "- {name: compute-2, management_ip: not-an-ip, roles: [control]}\n"
        "- {name: compute-3, management_ip: 192.168.1.20, colour: red}\n"
    )
    with pytest.raises(DietStackError) as raised:
        inventory.load(path, "192.168.1.20")
    message = raised.value.message
    assert "listed twice" in message and "not-an-ip" in message and "roles" in message
    assert "control node's own address" in message and "colour" in message
    path.write_text("- {name: compute-1, management_ip: 192.168.1.21}\n")
    loaded = inventory.load(path, "192.168.1.20")
    assert [inventory.rendered(record) for record in loaded] == [
        COMPUTE | {"tunnel_ip": "192.168.1.21", "mtu": ""}
    ]
    assert loaded[0]["ssh"] == {"host": "192.168.1.21", "user": "root", "port": 22, "identity": ""}


def test_readme_port_table_matches_the_declarations() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("### Security")[1].split("\n\n")[2]
    documented: set[tuple[str, str]] = set()
    for row in table.splitlines()[2:]:
        ports, audience = (cell.strip() for cell in row.strip("|").split("|")[:2])
        documented.update((port.strip(), audience) for port in ports.split(","))
    declared = {(f"{p.span}/{p.protocol}", p.audience) for p in services.declared_ports(make_env())}
    assert documented == declared


def test_rules_do_not_depend_on_hash_randomisation() -> None:
    """The config hash must be the same in every process, or deploy recreates it."""
    code = (
        "from tests.unit.test_converge import make_env\n"
        "from tests.unit.test_firewall import rules_of\n"
        "print(rules_of(make_env(nodes=[" + repr(COMPUTE) + "])))\n"
    )
    root = Path(__file__).parents[2]
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3", "4")
    }
    assert len(outputs) == 1


def test_the_probe_script_tries_every_target_and_its_report_is_read_back() -> None:
    targets = [exposure.Target("192.168.1.20", 5000), exposure.Target("172.24.4.1", 3306)]
    script = verify.probe_script(targets)
    assert script.startswith("#!/bin/sh\n") and "192.168.1.20:5000 172.24.4.1:3306" in script
    assert script.rstrip().endswith(f"echo '{verify.PROBE_DONE}'")
    console = (
        "boot noise\n"
        f"{verify.PROBE_OPEN}192.168.1.20:5000\r\n"
        f"{verify.PROBE_OPEN}garbage\n"
        f"{verify.PROBE_DONE}\n"
    )
    assert verify.answered(console) == [targets[0]]
