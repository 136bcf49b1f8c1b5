"""OVN central: the northbound and southbound databases and ovn-northd.

Neutron writes the logical network into the northbound database; ovn-northd
translates it into the southbound flows that every node's ovn-controller follows.

Both databases speak SSL only, and take only clients with a certificate of the
nodes' CA: the control node's services present the services' certificate, each
node's ovn-controller and metadata agent the node's own (its name is its chassis
name). A host on the LAN that only spoofs a node's address gets nowhere.
"""

from __future__ import annotations

from dietstack.model import (
    HOST,
    NODES,
    SERVICES_TLS,
    Container,
    Healthcheck,
    Mount,
    Port,
    Privileges,
    TextFile,
    tls_secret_names,
)
from dietstack.render import LOOPBACK, Env
from dietstack.services.common import nodes_ca_files, tcp_health
from dietstack.services.openvswitch import EXTERNAL_BRIDGE, RUN, VSCTL

NB_PORT = 6641
SB_PORT = 6642
GENEVE_PORT = 6081

#: Neutron and ovn-northd, on this node, use the northbound database; every
#: node's ovn-controller the southbound one.
DATABASE_PORTS = {
    "nb": Port(NB_PORT, HOST, "OVN northbound database (Neutron, ovn-northd)"),
    "sb": Port(SB_PORT, NODES, "OVN southbound database (every node's ovn-controller)"),
}


#: Where an OVN client or server finds its key, its certificate and the nodes' CA.
TLS_DIR = "/etc/ovn/tls"
KEY = f"{TLS_DIR}/key.pem"
CERT = f"{TLS_DIR}/cert.pem"
CA = f"{TLS_DIR}/ca.pem"
#: The options of OVN's daemons that name them.
TLS_OPTIONS = (f"--private-key={KEY}", f"--certificate={CERT}", f"--ca-cert={CA}")


def services_tls(env: Env) -> tuple[TextFile, ...]:
    """What the databases, ovn-northd and Neutron's server present: the services'
    certificate (control node only)."""
    return nodes_ca_files(env, SERVICES_TLS, CA, CERT, KEY)


def node_tls(env: Env) -> tuple[TextFile, ...]:
    """What a node's ovn-controller and metadata agent present: the node's own."""
    return nodes_ca_files(env, tls_secret_names(env.node), CA, CERT, KEY)


def nb_connection(env: Env) -> str:
    return f"ssl:{LOOPBACK}:{NB_PORT}"


def _listen_ip(env: Env, kind: str) -> str:
    return LOOPBACK if DATABASE_PORTS[kind].audience == HOST else env.ip


def sb_connection(env: Env) -> str:
    """Every node's ovn-controller and metadata agent reach it on the control node."""
    return f"ssl:{env.control_ip}:{SB_PORT}"


def _database(env: Env, kind: str) -> Container:
    port = DATABASE_PORTS[kind].number
    address = _listen_ip(env, kind)
    db = f"/var/lib/ovn/ovn{kind}_db.db"
    schema = f"/usr/share/ovn/ovn-{kind}.ovsschema"
    return Container(
        name=f"ovn-{kind}-db",
        service="ovn",
        image="ovn",
        command=(
            "ovsdb-server",
            db,
            f"--remote=pssl:{port}:{address}",
            *TLS_OPTIONS,
            f"--remote=punix:/run/ovn/ovn{kind}_db.sock",
            f"--unixctl=/run/ovn/ovn{kind}_db.ctl",
            "--log-file=/dev/null",
            "--verbose=console:info",
        ),
        files=services_tls(env),
        volumes=(Mount("ovn", "/var/lib/ovn"),),
        healthcheck=tcp_health(address, port),
        ports=(DATABASE_PORTS[kind],),
        prepare=(
            "mkdir -p /run/ovn",
            f"[ -f {db} ] || ovsdb-tool create {db} {schema}",
            # After an upgrade of OVN, bring the stored database to the new schema.
            f"if ovsdb-tool needs-conversion {db} {schema} | grep -q yes; "
            f"then ovsdb-tool convert {db} {schema}; fi",
        ),
    )


def containers(env: Env) -> list[Container]:
    northd = Container(
        name="ovn-northd",
        service="ovn",
        image="ovn",
        command=(
            "ovn-northd",
            f"--ovnnb-db={nb_connection(env)}",
            f"--ovnsb-db={sb_connection(env)}",
            *TLS_OPTIONS,
            "--unixctl=/run/ovn/ovn-northd.ctl",
            "--log-file=/dev/null",
            "--verbose=console:info",
        ),
        healthcheck=Healthcheck(
            ("ovn-appctl", "-t", "/run/ovn/ovn-northd.ctl", "status"), start_period=30
        ),
        depends_on=("ovn-nb-db", "ovn-sb-db"),
        files=services_tls(env),
        prepare=("mkdir -p /run/ovn",),
    )
    return [_database(env, "nb"), _database(env, "sb"), northd]


#: What makes a chassis the gateway: the external network's bridge, and the option
#: that lets Neutron place router gateways there.
GATEWAY_IDS = ("ovn-bridge-mappings", "ovn-cms-options")


def controller(env: Env) -> Container:
    """ovn-controller: turns the southbound flows into this node's switch rules.

    Its chassis is named like the node, as Nova's compute host is, and its Geneve
    tunnels end at the node's tunnel address. Only the control node is the gateway
    chassis: floating IPs and SNAT live there, next to br-ex."""
    external_ids = {
        "system-id": env.node,
        "hostname": env.node,
        "ovn-remote": sb_connection(env),
        "ovn-encap-type": "geneve",
        "ovn-encap-ip": env.tunnel_ip,
        "ovn-bridge-datapath-type": env.ovs_datapath,
    }
    if env.is_control:
        external_ids |= {
            "ovn-bridge-mappings": f"public:{EXTERNAL_BRIDGE}",
            "ovn-cms-options": "enable-chassis-as-gw",
        }
    settings = " ".join(f"external_ids:{key}={value}" for key, value in external_ids.items())
    not_gateway = "".join(
        f" -- remove Open_vSwitch . external_ids {key}"
        for key in GATEWAY_IDS
        if key not in external_ids
    )
    return Container(
        name="ovn-controller",
        service="ovn",
        image="ovn",
        command=(
            "ovn-controller",
            "unix:/run/openvswitch/db.sock",
            *TLS_OPTIONS,
            "--pidfile=/run/ovn/ovn-controller.pid",
            "--log-file=/dev/null",
            "--verbose=console:info",
        ),
        # ovn-controller looks for br-int's management socket here.
        environment=(("OVS_RUNDIR", "/run/openvswitch"),),
        files=node_tls(env),
        volumes=(RUN,),
        healthcheck=Healthcheck(
            ("/usr/lib/dietstack/dietstack-start", "--health-connected", str(SB_PORT)),
            start_period=60,
        ),
        privileges=Privileges(capabilities=("NET_ADMIN",)),
        prepare=("mkdir -p /run/ovn", f"{VSCTL} set Open_vSwitch . {settings}{not_gateway}"),
        ports=(Port(GENEVE_PORT, NODES, "Geneve tunnels between the nodes", protocol="udp"),),
        depends_on=("openvswitch-vswitchd", "ovn-sb-db"),
    )
