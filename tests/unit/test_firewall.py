"""Who may reach which port: the declarations, the firewall rendered from them,
the NFS export, the inventory and the judgement of a probe's answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dietstack import services
from dietstack.engine import inventory
from dietstack.errors import DietStackError
from dietstack.hosts.hostnet import HostNetwork
from dietstack.hosts.sshhost import SshTarget
from dietstack.model import AUDIENCES, HOST, NODES, USERS
from dietstack.ops import exposure, verifysteps
from dietstack.render import LOOPBACK, Env, config_hash, render_files
from dietstack.services import firewall

from .helpers import make_env, nft_set, rules_of

COMPUTE = {"name": "compute-1", "management_ip": "192.168.1.21", "roles": ["compute"]}
NAS = "192.168.1.50"


def script_of(env: Env) -> str:
    return services.find(env, "firewall").files[1].text  # type: ignore[union-attr]


def chain_rules(rules: str, name: str) -> list[str]:
    """The rules of one chain in the rendered ruleset, without its comments."""
    block = re.search(rf"chain {name} {{\n(.*?)\n\t}}", rules, re.S)
    assert block, name
    lines = (line.strip() for line in block.group(1).splitlines())
    return [line for line in lines if line and not line.startswith("#")]


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
        "80", "443", "5000", "6080", "8000", "8004", "8774", "8776", "8778", "9292", "9696"
    }  # fmt: skip
    assert nft_set(rules, "node_tcp") == {
        "2049",
        "5671",
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
    assert chain_rules(rules, "from_instances")[-1] == "jump refuse"
    assert chain_rules(rules, "refuse") == ["meta l4proto tcp reject with tcp reset", "reject"]


def test_routed_instances_are_kept_from_what_trusts_this_nodes_address() -> None:
    """Forwarded from br-ex (or from the floating range), an instance's traffic leaves
    with this node's address: not to the NAS, not to the nodes' node-only ports, not
    to a container's unpublished port; the rest of the world stays open."""
    rules = rules_of(make_env(nfs_share=f"{NAS}:/volumes"))
    assert chain_rules(rules, "forward")[1:] == [
        'iifname "br-ex" jump routed_from_instances',
        "ip saddr 172.24.4.0/24 jump routed_from_instances",
    ]
    assert chain_rules(rules, "routed_from_instances") == [
        # The NAS first: no reply or other state lets an instance through to it.
        f"ip daddr @{firewall.NAS_SET} jump refuse",
        "ct state established,related accept",
        "ip daddr @nodes_ipv4 jump from_instances",
        "ct status dnat accept",
        'oifname "docker0" jump refuse',
        'oifname "br-*" oifname != { "br-ex", "br-phy" } jump refuse',
    ]
    assert nft_set(rules, firewall.NAS_SET) == {NAS}


def test_without_a_nas_the_set_is_empty_and_nothing_is_resolved() -> None:
    env = make_env()
    assert nft_set(rules_of(env), firewall.NAS_SET) == set()
    assert "getent" not in script_of(env) and "add element" not in script_of(env)


def test_a_nas_named_by_host_name_is_resolved_at_start_and_at_every_check() -> None:
    env = make_env(nfs_share="nas.lan:/volumes")
    assert nft_set(rules_of(env), firewall.NAS_SET) == set()
    script = script_of(env)
    assert "getent ahostsv4 nas.lan |" in script
    assert f'nft add element inet {firewall.TABLE} {firewall.NAS_SET} "{{ $address }}"' in script
    start, loop = script.split("while true; do")
    assert start.index(f"nft -f {firewall.RULES}\nrefuse_nas\n") > start.index("refuse_nas() {")
    assert loop.rstrip().endswith("fi\n    refuse_nas\ndone")
    # The share comes from the settings file; it is never run as shell code.
    odd = script_of(make_env(nfs_share="nas$(reboot):/volumes"))
    assert "getent ahostsv4 'nas$(reboot)' |" in odd


def test_control_only_services_listen_on_loopback() -> None:
    env = make_env()
    mariadb = render_files(services.find(env, "mariadb"), None)
    assert f"bind-address = {LOOPBACK}" in next(iter(mariadb.values()))[0].decode()
    assert LOOPBACK in services.find(env, "memcached").command
    assert f"--remote=pssl:6641:{LOOPBACK}" in services.find(env, "ovn-nb-db").command
    assert "--remote=pssl:6642:192.168.1.20" in services.find(env, "ovn-sb-db").command
    assert f"@{LOOPBACK}:3306/" in env.database_url("nova")
    assert env.memcached_servers == f"{LOOPBACK}:11211"


def changed_by(before: Env, after: Env) -> list[str]:
    return [
        container.name
        for container in services.all_containers(before)
        if config_hash(container, "image", None)
        != config_hash(services.find(after, container.name), "image", None)
    ]


def test_adding_a_node_admits_it_everywhere_and_touches_nothing_else() -> None:
    second = {"name": "compute-2", "management_ip": "192.168.1.22", "roles": ["compute"]}
    before, after = make_env(nodes=[COMPUTE]), make_env(nodes=[COMPUTE, second])
    assert nft_set(rules_of(after), "nodes_ipv4") == {
        "192.168.1.20",
        "192.168.1.21",
        "192.168.1.22",
    }
    ganesha = services.find(after, "nfs-server").files[0].text  # type: ignore[union-attr]
    assert "Clients = 192.168.1.20, 192.168.1.21, 192.168.1.22;" in ganesha
    assert changed_by(before, after) == ["firewall", "nfs-server"]
    # The first compute node also gives a failed build a second host to be tried on:
    # Nova's control daemons take that once.
    nova = {"nova-bootstrap", "nova-api", "nova-conductor", "nova-novncproxy"}
    assert set(changed_by(make_env(), before)) == {"firewall", "nfs-server", *nova}


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


def test_an_instance_probes_this_host_every_node_and_the_nas(host: HostNetwork) -> None:
    env = make_env(nodes=[COMPUTE], nfs_share=f"{NAS}:/volumes")
    assert exposure.nas_addresses(env) == [NAS] and exposure.nas_addresses(make_env()) == []
    assert exposure.instance_addresses(env, host) == [
        "172.17.0.1", "192.168.1.20", "192.168.1.21", NAS
    ]  # fmt: skip
    # The NAS may answer no instance on any port, a user port's number included.
    answered = [exposure.Target(NAS, 80), exposure.Target("192.168.1.21", 5000)]
    (problem,) = exposure.forbidden(env, answered, {}, nas=[NAS])
    assert problem.startswith(f"{NAS}:80 (the NAS of nfs_share")
    assert exposure.forbidden(env, answered, {}) == []


def test_probe_targets_cover_listening_ports_and_range_starts() -> None:
    targets = exposure.targets(make_env(), {33823: "glance-api"}, ["192.168.1.20", "172.24.4.1"])
    ports = {t.port for t in targets}
    assert {33823, 5900, 10000, 3306, 5000} <= ports
    assert {t.address for t in targets} == {"192.168.1.20", "172.24.4.1"}


def test_inventory_file_is_checked_and_every_problem_reported(tmp_path: Path) -> None:
    path = tmp_path / inventory.FILE_NAME
    assert inventory.load(path, "192.168.1.20") == ()
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
    assert [record.rendered() for record in loaded] == [
        COMPUTE | {"tunnel_ip": "192.168.1.21", "mtu": ""}
    ]
    assert loaded[0].ssh == SshTarget("192.168.1.21", "root", 22, "")
    # Written and read back, a record is the same value.
    inventory.save(path, loaded)
    assert inventory.load(path, "192.168.1.20") == loaded


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
        "from tests.unit.helpers import make_env, rules_of\n"
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
    script = verifysteps.probe_script(targets)
    assert script.startswith("#!/bin/sh\n") and "192.168.1.20:5000 172.24.4.1:3306" in script
    assert script.rstrip().endswith(f"echo '{verifysteps.PROBE_DONE}'")
    console = (
        "boot noise\n"
        f"{verifysteps.PROBE_OPEN}192.168.1.20:5000\r\n"
        f"{verifysteps.PROBE_OPEN}garbage\n"
        f"{verifysteps.PROBE_DONE}\n"
    )
    assert verifysteps.answered(console) == [targets[0]]


def test_local_users_open_no_connection_to_the_clouds_own_ports() -> None:
    """Only root (the cloud's services) opens connections to node-only and host-only
    ports; Erlang asks its port mapper, QEMU streams a migration to the other node."""
    env = make_env()
    rules = firewall.ruleset(env, services.declared_ports(env))
    output = chain_rules(rules, "output")
    assert output[0] == "type filter hook output priority filter - 10; policy accept;"
    exemptions = output[1:4]
    assert exemptions == [
        "ct state established,related accept",
        'tcp dport { 4369, 25672 } oif "lo" accept',
        "meta skuid 64055 tcp dport 49152-49215 accept",
    ]
    refusals = output[4:]
    assert all(rule.startswith("meta skuid != 0 ") for rule in refusals)
    assert any("@host_tcp" in rule and 'oif "lo"' in rule for rule in refusals)
    assert any("@node_tcp ip daddr @nodes_ipv4" in rule for rule in refusals)
