"""Open vSwitch on every node, and the external bridge `br-ex` for floating IPs.

Without the kernel's openvswitch module the switch runs in userspace (the
`netdev` datapath). On a single-NIC host `br-ex` gets the external network's
gateway address, so floating IPs are routed on the host and instances reach out
through NAT to the host's uplink; with `external_interface` set, that spare NIC
is plugged into `br-ex` instead and floating IPs appear on the LAN.
"""

from __future__ import annotations

import ipaddress

from dietstack.model import Container, Healthcheck, Mount, Privileges, TextFile
from dietstack.render import Env

RUN = Mount("/run/dietstack/openvswitch", "/run/openvswitch")
DB = "/var/lib/openvswitch/conf.db"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
EXTERNAL_BRIDGE = "br-ex"
#: Takes over tunnel_interface on the userspace datapath (see _tunnel_setup).
TUNNEL_BRIDGE = "br-phy"
VSCTL = "ovs-vsctl --timeout=30"


def gateway(env: Env) -> ipaddress.IPv4Interface:
    """The host's address on the external network: its first address."""
    network = ipaddress.IPv4Network(str(env.settings["external_cidr"]))
    return ipaddress.IPv4Interface(f"{next(network.hosts())}/{network.prefixlen}")


def _nat_rules(env: Env) -> str:
    cidr = str(env.settings["external_cidr"])
    return f"""table ip dietstack {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {cidr} ip daddr != {cidr} oifname != "{EXTERNAL_BRIDGE}" masquerade
    }}
}}
"""


def _await_device(bridge: str) -> str:
    """A shell line that waits for vswitchd to make the bridge's own device. After a
    reboot the bridge is already in the database, so `add-br` returns at once, before
    the just-started daemon has made the device that the next lines configure."""
    return (
        f"tries=0; until [ -e /sys/class/net/{bridge} ]; do tries=$((tries + 1)); "
        f'[ $tries -le 300 ] || {{ echo "Open vSwitch made no {bridge} device in 60 s" >&2; '
        "exit 1; }; sleep 0.2; done"
    )


def _external_setup(env: Env) -> str:
    """Shell lines that (re)create br-ex's uplink after every start of the switch."""
    bridge = f"{VSCTL} --may-exist add-br {EXTERNAL_BRIDGE} -- set bridge {EXTERNAL_BRIDGE} "
    bridge += f"datapath_type={env.ovs_datapath}"
    nic = str(env.settings.get("external_interface") or "")
    # Only ovn-controller's patch ports and the configured NIC belong on br-ex: a
    # NIC from an earlier setting is unplugged, so the host gets it back.
    unplug = (
        f"for port in $({VSCTL} list-ports {EXTERNAL_BRIDGE}); do case $port in "
        f"patch-*|{nic or 'patch-*'}) ;; *) {VSCTL} del-port {EXTERNAL_BRIDGE} $port ;; esac; done"
    )
    if nic:
        lines = [
            bridge,
            _await_device(EXTERNAL_BRIDGE),
            unplug,
            # Up before it is plugged: the userspace datapath may give up on
            # receiving from an interface that was down when it was added.
            f"ip link set {nic} up",
            f"{VSCTL} --may-exist add-port {EXTERNAL_BRIDGE} {nic}",
            # The host's own address and NAT on br-ex are for the single-NIC mode.
            f"ip addr flush dev {EXTERNAL_BRIDGE}",
            "nft delete table ip dietstack 2>/dev/null || true",
            f"ip link set {EXTERNAL_BRIDGE} up",
        ]
        if env.ovs_datapath == "netdev":
            lines.append(f"ethtool -K {nic} tx off tso off gso off >/dev/null 2>&1 || true")
        return "\n".join(lines) + "\n"
    lines = [
        bridge,
        _await_device(EXTERNAL_BRIDGE),
        unplug,
        f"ip link set {EXTERNAL_BRIDGE} up",
        f"ip addr replace {gateway(env)} dev {EXTERNAL_BRIDGE}",
        # Instances reach beyond the host through NAT to its uplink.
        "nft delete table ip dietstack 2>/dev/null || true",
        "nft -f /etc/openvswitch/dietstack-nat.nft",
        # Docker's FORWARD policy drops routed traffic that is not its own.
        f"if iptables -nL DOCKER-USER >/dev/null 2>&1; then "
        f"iptables -C DOCKER-USER -i {EXTERNAL_BRIDGE} -j ACCEPT 2>/dev/null || "
        f"iptables -I DOCKER-USER -i {EXTERNAL_BRIDGE} -j ACCEPT; "
        f"iptables -C DOCKER-USER -o {EXTERNAL_BRIDGE} -j ACCEPT 2>/dev/null || "
        f"iptables -I DOCKER-USER -o {EXTERNAL_BRIDGE} -j ACCEPT; fi",
    ]
    if env.ovs_datapath == "netdev":
        # The userspace datapath cannot take segmentation offloads from the host side.
        lines.append(f"ethtool -K {EXTERNAL_BRIDGE} tx off tso off gso off >/dev/null 2>&1 || true")
    return "\n".join(lines) + "\n"


def _tunnel_setup(env: Env) -> str:
    """Shell lines that give the tunnel interface to Open vSwitch (userspace datapath).

    The userspace datapath sends Geneve packets only through an interface it owns:
    the tunnel NIC becomes a port of `br-phy`, and its address moves onto the
    bridge. The management NIC is never taken (settings and `node add` refuse it),
    so a host whose only NIC carries its SSH session is never cut off."""
    nic = str(env.settings.get("tunnel_interface") or "")
    cidr = str(env.settings.get("tunnel_cidr") or "")
    if not nic or env.ovs_datapath != "netdev" or not cidr:
        return ""
    lines = [
        f"mac=$(cat /sys/class/net/{nic}/address)",
        f"{VSCTL} --may-exist add-br {TUNNEL_BRIDGE} -- set bridge {TUNNEL_BRIDGE} "
        f"datapath_type=netdev other_config:hwaddr=$mac",
        _await_device(TUNNEL_BRIDGE),
        f"ip link set {nic} up",
        f"{VSCTL} --may-exist add-port {TUNNEL_BRIDGE} {nic}",
        f"ip addr del {cidr} dev {nic} 2>/dev/null || true",
        f"ip addr replace {cidr} dev {TUNNEL_BRIDGE}",
        f"ip link set {TUNNEL_BRIDGE} up",
        f"ethtool -K {nic} tx off tso off gso off >/dev/null 2>&1 || true",
    ]
    return "\n".join(lines) + "\n"


def _vswitchd_script(env: Env) -> str:
    tso = ""
    if env.ovs_datapath == "netdev":
        # Let the userspace datapath segment TCP itself: veth and tap peers send
        # offloaded segments that it would otherwise drop.
        tso = f"{VSCTL} --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true\n"
    return (
        f"{VSCTL} --no-wait init\n"
        + tso
        + "ovs-vswitchd unix:/run/openvswitch/db.sock --pidfile=/run/openvswitch/ovs-vswitchd.pid "
        "--log-file=/dev/null --verbose=console:info &\n"
        "vswitchd=$!\n"
        # The shell is the first process: it passes `docker stop` on to the daemon.
        "trap 'kill $vswitchd 2>/dev/null; wait $vswitchd; exit 0' TERM INT\n"
        + (_external_setup(env) if env.is_control else "")
        + _tunnel_setup(env)
        + "wait $vswitchd\n"
    )


def containers(env: Env) -> list[Container]:
    db = Container(
        name="openvswitch-db",
        service="openvswitch",
        image="ovn",
        command=(
            "ovsdb-server",
            DB,
            "--remote=punix:/run/openvswitch/db.sock",
            "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
            "--pidfile=/run/openvswitch/ovsdb-server.pid",
            "--log-file=/dev/null",
            "--verbose=console:info",
        ),
        volumes=(RUN, Mount("openvswitch", "/var/lib/openvswitch")),
        healthcheck=Healthcheck(
            ("ovsdb-client", "list-dbs", "unix:/run/openvswitch/db.sock"), start_period=30
        ),
        prepare=(
            f"[ -f {DB} ] || ovsdb-tool create {DB} {SCHEMA}",
            f"if ovsdb-tool needs-conversion {DB} {SCHEMA} | grep -q yes; "
            f"then ovsdb-tool convert {DB} {SCHEMA}; fi",
        ),
    )
    script = "/etc/openvswitch/dietstack-vswitchd.sh"
    vswitchd = Container(
        name="openvswitch-vswitchd",
        service="openvswitch",
        image="ovn",
        command=("sh", "-eu", script),
        files=(
            TextFile(script, _vswitchd_script(env), 0o755),
            TextFile("/etc/openvswitch/dietstack-nat.nft", _nat_rules(env), 0o644),
        ),
        volumes=(RUN, Mount("/lib/modules", "/lib/modules", read_only=True)),
        healthcheck=Healthcheck(("ovs-appctl", "-t", "ovs-vswitchd", "version"), start_period=30),
        privileges=Privileges(
            capabilities=("NET_ADMIN", "NET_RAW", "SYS_NICE", "IPC_LOCK", "SYS_MODULE"),
            devices=("/dev/net/tun:/dev/net/tun",),
        ),
        depends_on=("openvswitch-db",),
    )
    return [db, vswitchd]
