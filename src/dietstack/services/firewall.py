"""DietStack's host firewall: one nftables table of its own on every node.

It is rendered from the ports every service declares (model.Port) and from the
inventory of nodes, so adding a node admits it on every node-only port at once:

- the cloud's users (anyone, instances included) reach the API ports;
- only the nodes' management addresses reach node-only ports (RabbitMQ, OVN
  southbound, the NFS share, Nova's metadata API, instance VNC);
- ports only this host uses (MariaDB, memcached, OVN northbound, ...) take
  nothing but loopback (their daemons also bind to loopback);
- traffic of instances (arriving from br-ex, or from floating and SNAT addresses
  when a spare NIC puts them on the LAN) reaches only the user ports and SSH;
- traffic of instances routed on through this node leaves with this node's
  address (br-ex's NAT, openvswitch.py), so it is kept from what trusts that
  address: the NAS of `nfs_share`, the other nodes' node-only ports, and the
  containers on Docker's bridges (the LAN reaches only the ports Docker
  publishes, and so may instances).

The table hooks input and forward next to whatever else is there: it never
flushes or reorders the user's or Docker's rules (a packet another table drops
stays dropped, one it accepts still passes here). Blocked TCP ports answer with
a reset, so clients fail at once rather than time out. The table is applied
when the container starts (deploy, reboot, Docker restart), put back within
seconds if something removes it (e.g. `nft flush ruleset`), and deleted by
`dietstack destroy`.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable

from dietstack.model import HOST, NODES, USERS, Container, Healthcheck, Port, Privileges, TextFile
from dietstack.render import Env
from dietstack.services.libvirt import MIGRATION_PORTS, QEMU_UID
from dietstack.services.openvswitch import EXTERNAL_BRIDGE, TUNNEL_BRIDGE
from dietstack.services.rabbitmq import DISTRIBUTION_PORT, EPMD_PORT

TABLE = "dietstack_firewall"
RULES = "/etc/dietstack-firewall/rules.nft"
SCRIPT = "/etc/dietstack-firewall/apply.sh"
#: How often the container checks that its table is still there.
CHECK_SECONDS = 10
#: The host's SSH stays reachable from every source, instances' included: a wrong
#: external_cidr (say, the admin's LAN) must never lock the admin out.
SSH_PORT = 22
#: The set of the NAS's addresses: the share's host when it is an address, else
#: what its name resolves to on this host (added by the script, see _refuse_nas).
NAS_SET = "nas_ipv4"
#: Docker's bridges: `docker0`, and `br-<network id>` for each network it creates.
#: A bridge of the host's own named `br-...` would be taken for one of them, and
#: instances could not reach through it.
DOCKER_BRIDGES = ("docker0", "br-*")
#: Open vSwitch bridges that share Docker's `br-` prefix; they lead to the external
#: and tunnel networks, not to containers.
OVS_BRIDGES = (EXTERNAL_BRIDGE, TUNNEL_BRIDGE)
#: Removes DietStack's host tables: this firewall and br-ex's NAT (openvswitch.py).
REMOVE_COMMAND = (
    "sh",
    "-c",
    f"nft delete table inet {TABLE} 2>/dev/null; nft delete table ip dietstack 2>/dev/null; true",
)


def _elements(values: Iterable[str]) -> str:
    unique = sorted(dict.fromkeys(values), key=_sort_key)
    return f"\n\t\telements = {{ {', '.join(unique)} }}" if unique else ""


def _sort_key(value: str) -> tuple[int, str]:
    first = value.split("-")[0]
    return (int(first), value) if first.isdigit() else (0, value)


def _port_set(name: str, ports: list[Port], audience: str, protocol: str) -> str:
    spans = [p.span for p in ports if p.audience == audience and p.protocol == protocol]
    return f"\tset {name} {{\n\t\ttype inet_service\n\t\tflags interval{_elements(spans)}\n\t}}\n"


def _address_set(name: str, kind: str, addresses: Iterable[str]) -> str:
    return f"\tset {name} {{\n\t\ttype {kind}{_elements(addresses)}\n\t}}\n"


def nas_host(env: Env) -> str:
    """The host part of nfs_share: the NAS that lets this node mount the volumes
    ("" when the control node serves them itself)."""
    return str(env.settings.get("nfs_share") or "").partition(":")[0]


def _is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def nas_ipv4(env: Env) -> list[str]:
    """The NAS's address when nfs_share gives one; a name is resolved at run time."""
    host = nas_host(env)
    return [host] if _is_ipv4(host) else []


def _docker_bridge_rules() -> str:
    names = ", ".join(f'"{name}"' for name in OVS_BRIDGES)
    rules = []
    for bridge in DOCKER_BRIDGES:
        unless_ovs = f" oifname != {{ {names} }}" if bridge.endswith("*") else ""
        rules.append(f'\t\toifname "{bridge}"{unless_ovs} jump refuse\n')
    return "".join(rules)


def _comment(ports: list[Port]) -> str:
    lines = [f"# {p.protocol} {p.span:<12} {p.audience:<6} {p.purpose}" for p in ports]
    # Sorted on the whole line too: the rules (and so the config hash) must not
    # depend on the order of a set.
    return "\n".join(sorted(set(lines), key=lambda line: (_sort_key(line.split()[2]), line)))


def ruleset(env: Env, ports: list[Port]) -> str:
    """The whole table, replaced in one transaction by `nft -f`."""
    ipv4 = [ip for ip in env.node_ips if ipaddress.ip_address(ip).version == 4]
    ipv6 = [ip for ip in env.node_ips if ipaddress.ip_address(ip).version == 6]
    external = str(env.settings["external_cidr"])
    sets = (
        _address_set("nodes_ipv4", "ipv4_addr", ipv4)
        + _address_set("nodes_ipv6", "ipv6_addr", ipv6)
        + _address_set(NAS_SET, "ipv4_addr", nas_ipv4(env))
        + _port_set("user_tcp", ports, USERS, "tcp")
        + _port_set("node_tcp", ports, NODES, "tcp")
        + _port_set("node_udp", ports, NODES, "udp")
        + _port_set("host_tcp", ports, HOST, "tcp")
        + _port_set("host_udp", ports, HOST, "udp")
    )
    return f"""# DietStack's firewall, rendered from the ports its services declare; do not edit.
{_comment(ports)}
# Creating, deleting and defining the table in one file replaces it atomically.
table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
{sets}
\tchain input {{
\t\ttype filter hook input priority filter - 10; policy accept;
\t\tiif "lo" accept
\t\tiifname "{EXTERNAL_BRIDGE}" jump from_instances
\t\ttcp dport @node_tcp ip saddr @nodes_ipv4 accept
\t\ttcp dport @node_tcp ip6 saddr @nodes_ipv6 accept
\t\tudp dport @node_udp ip saddr @nodes_ipv4 accept
\t\tudp dport @node_udp ip6 saddr @nodes_ipv6 accept
\t\tip saddr {external} jump from_instances
\t\ttcp dport @node_tcp reject with tcp reset
\t\ttcp dport @host_tcp reject with tcp reset
\t\tudp dport @node_udp reject
\t\tudp dport @host_udp reject
\t}}

\t# A local user of this node (a process that is not root) opens no connection to
\t# the cloud's own ports, here or on another node: memcached, OVN's databases,
\t# NFS and the consoles have no password of their own, and the node's address is
\t# what the other nodes trust. The cloud's services connect as root.
\tchain output {{
\t\ttype filter hook output priority filter - 10; policy accept;
\t\t# Replies of servers that run as their own user (RabbitMQ, MariaDB): a
\t\t# client's port may be one of these too.
\t\tct state established,related accept
\t\t# rabbitmqctl runs as RabbitMQ's user too: the Erlang port mapper, and the
\t\t# distribution port, which admits only holders of the Erlang cookie.
\t\ttcp dport {{ {EPMD_PORT}, {DISTRIBUTION_PORT} }} oif "lo" accept
\t\t# QEMU runs guests as its own user and sends a live migration's memory and
\t\t# disks to the other node's QEMU itself (over TLS, with the node's certificate).
\t\tmeta skuid {QEMU_UID} tcp dport {MIGRATION_PORTS.span} accept
\t\tmeta skuid != 0 tcp dport @host_tcp oif "lo" reject with tcp reset
\t\tmeta skuid != 0 udp dport @host_udp oif "lo" reject
\t\tmeta skuid != 0 tcp dport @node_tcp ip daddr @nodes_ipv4 reject with tcp reset
\t\tmeta skuid != 0 tcp dport @node_tcp ip6 daddr @nodes_ipv6 reject with tcp reset
\t\tmeta skuid != 0 udp dport @node_udp ip daddr @nodes_ipv4 reject
\t\tmeta skuid != 0 udp dport @node_udp ip6 daddr @nodes_ipv6 reject
\t}}

\t# Instances' traffic routed through this node. It leaves masqueraded as this
\t# node's address, so whatever trusts that address would trust the instances.
\tchain forward {{
\t\ttype filter hook forward priority filter - 10; policy accept;
\t\tiifname "{EXTERNAL_BRIDGE}" jump routed_from_instances
\t\tip saddr {external} jump routed_from_instances
\t}}

\tchain routed_from_instances {{
\t\t# The NAS exports the volumes to this node's address: an instance must never
\t\t# reach it, whatever the state of the connection (this node mounts it as
\t\t# its own traffic, which is not forwarded).
\t\tip daddr @{NAS_SET} jump refuse
\t\t# Replies to connections made to an instance (say, from a container here).
\t\tct state established,related accept
\t\t# Other nodes admit this node's address on their node-only ports.
\t\tip daddr @nodes_ipv4 jump from_instances
\t\t# A port Docker publishes (translated to a container): the LAN reaches it too.
\t\tct status dnat accept
\t\t# Any other port of a container on Docker's bridges. Docker closes them to
\t\t# the LAN, but openvswitch.py's DOCKER-USER rule accepts all of br-ex's
\t\t# traffic (which Docker's FORWARD policy would otherwise drop).
{_docker_bridge_rules()}\t}}

\t# What instances may reach on a node: the cloud's user ports and SSH.
\tchain from_instances {{
\t\tct state established,related accept
\t\ttcp dport @user_tcp accept
\t\ttcp dport {SSH_PORT} accept
\t\ticmp type echo-request accept
\t\tjump refuse
\t}}

\t# Refused at once: TCP with a reset, the rest with an ICMP error.
\tchain refuse {{
\t\tmeta l4proto tcp reject with tcp reset
\t\treject
\t}}
}}
"""


def _refuse_nas(env: Env) -> str:
    """Shell function that adds the addresses of a NAS given by host name to its set.
    Run at every check: a name that does not resolve yet (DNS still coming up at
    boot) or that moves to a new address is caught within seconds."""
    host = nas_host(env)
    if not host or _is_ipv4(host):
        return "refuse_nas() {\n    :  # no NAS, or its address is in the rules already\n}\n"
    return f"""refuse_nas() {{
    for address in $(getent ahostsv4 {shlex.quote(host)} | cut -d' ' -f1 | sort -u); do
        nft add element inet {TABLE} {NAS_SET} "{{ $address }}"
    done
}}
"""


def _script(env: Env) -> str:
    # Applied at every start; checked every few seconds, because a host firewall
    # reload (`nft flush ruleset`) would otherwise leave the ports open.
    # The shell is the container's first process, which ignores SIGTERM unless it
    # traps it: without the trap `docker stop` would wait for its SIGKILL. The
    # sleep runs in the background so that the signal ends `wait` at once.
    return f"""trap 'exit 0' TERM INT
{_refuse_nas(env)}nft -f {RULES}
refuse_nas
echo "firewall: table inet {TABLE} applied"
while true; do
    sleep {CHECK_SECONDS} &
    wait $!
    if ! nft list table inet {TABLE} >/dev/null 2>&1; then
        echo "firewall: table inet {TABLE} was removed; applying it again"
        nft -f {RULES}
    fi
    refuse_nas
done
"""


def containers(env: Env, ports: list[Port]) -> list[Container]:
    return [
        Container(
            name="firewall",
            service="firewall",
            image="ovn",
            command=("sh", "-eu", SCRIPT),
            files=(
                TextFile(RULES, ruleset(env, ports), 0o644),
                TextFile(SCRIPT, _script(env), 0o755),
            ),
            # The script itself puts a lost table back within CHECK_SECONDS; the
            # watcher only catches a script that hangs, and ends it within about
            # three minutes (checked twice as often as the services).
            healthcheck=Healthcheck(
                ("nft", "list", "table", "inet", TABLE), interval=30, start_period=10
            ),
            privileges=Privileges(capabilities=("NET_ADMIN",)),
        )
    ]
