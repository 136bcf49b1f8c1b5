"""Neutron with ML2/OVN: Geneve tenant networks and a flat `public` provider network.

The API runs under uWSGI; the periodic tasks and the OVN maintenance task run
beside it, as neutron requires since the API became WSGI-only, in one process
that starts them both (neutron ships a command for each). No
agent here speaks RPC (OVN's controller and metadata agent work through the OVN
databases), so there is no neutron-rpc-server: `rpc_workers = 0` tells neutron so.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from dietstack.model import (
    PUBLIC_CA,
    START_PACKAGE,
    ConfigFile,
    Container,
    Endpoint,
    IniFile,
    Mount,
    Privileges,
)
from dietstack.render import Env
from dietstack.services import ovn
from dietstack.services.common import (
    api_container,
    bootstrap_container,
    combine,
    keystone_authtoken,
    keystone_client,
    messaging,
    worker_container,
)

PORT = 9696
ENDPOINTS = (Endpoint("network", "neutron", PORT, "", "OpenStack Networking"),)
PHYSNET = "public"
#: Geneve with OVN's options needs 38 bytes of header room.
GENEVE_HEADER = 38
#: Runs Neutron's periodic workers and its OVN maintenance worker together.
WORKERS_SCRIPT = f"{START_PACKAGE}/start/neutron_workers.py"


def config(env: Env) -> IniFile:
    return IniFile(
        "/etc/neutron/neutron.conf",
        combine(
            {
                "DEFAULT": {
                    "core_plugin": "ml2",
                    "service_plugins": "ovn-router",
                    "auth_strategy": "keystone",
                    "allow_overlapping_ips": True,
                    "api_paste_config": "/opt/openstack/etc/neutron/api-paste.ini",
                    "rpc_workers": 0,
                    "rpc_state_report_workers": 0,
                    # OVN serves DHCP and routes itself: no agents to schedule or watch.
                    "enable_traditional_dhcp": False,
                    "allow_automatic_l3agent_failover": False,
                    # From 2026.2 uWSGI's process count alone sets the API workers.
                    **({} if env.release_at_least("2026.2") else {"api_workers": env.workers}),
                    # The smallest underlay MTU of the nodes: Neutron takes the Geneve
                    # header off it for each network's MTU.
                    "global_physnet_mtu": underlay_mtu(env),
                    "notify_nova_on_port_status_changes": True,
                    "notify_nova_on_port_data_changes": True,
                    "state_path": "/var/lib/neutron",
                },
                "database": {"connection": env.database_url("neutron"), "max_retries": -1},
                "keystone_authtoken": keystone_authtoken(env, "neutron"),
                "nova": keystone_client(env, "neutron"),
                "oslo_concurrency": {"lock_path": "/var/lib/neutron/tmp"},
            },
            messaging(env),
        ),
    )


def ovn_tls(database: str) -> dict[str, str]:
    """Neutron's options naming what it presents to an OVN database and checks it by."""
    return {
        f"ovn_{database}_private_key": ovn.KEY,
        f"ovn_{database}_certificate": ovn.CERT,
        f"ovn_{database}_ca_cert": ovn.CA,
    }


def underlay_mtu(env: Env) -> int:
    mtus = [int(item.get("mtu") or 0) for item in env.settings.get("nodes") or ()]
    mtus.append(int(env.settings.get("mtu") or 0))
    return min((mtu for mtu in mtus if mtu), default=1500)


def ml2_config(env: Env) -> IniFile:
    return IniFile(
        "/etc/neutron/plugins/ml2/ml2_conf.ini",
        {
            "ml2": {
                "type_drivers": "geneve,flat",
                "project_network_types": "geneve",
                "mechanism_drivers": "ovn",
                "extension_drivers": "port_security",
                "overlay_ip_version": 4,
            },
            "ml2_type_geneve": {"vni_ranges": "1:65536", "max_header_size": GENEVE_HEADER},
            "ml2_type_flat": {"flat_networks": PHYSNET},
            "securitygroup": {"enable_security_group": True},
            "ovn": {
                "ovn_nb_connection": ovn.nb_connection(env),
                "ovn_sb_connection": ovn.sb_connection(env),
                **ovn_tls("nb"),
                **ovn_tls("sb"),
                "ovn_l3_scheduler": "leastloaded",
                "ovn_metadata_enabled": True,
                # 2026.2's default SNATs nested subnets in a way Debian's OVN lacks:
                # every subnet then added to a router had no SNAT rule at all.
                **({"ovn_router_indirect_snat": False} if env.release_at_least("2026.2") else {}),
                "enable_distributed_floating_ip": False,
            },
        },
    )


def containers(env: Env) -> list[Container]:
    # Both talk to OVN's databases with the control node's services' certificate.
    files: tuple[ConfigFile, ...] = (config(env), ml2_config(env), *ovn.services_tls(env))
    # 2026.2 keeps the time its server started in /tmp, keyed by the parent's PID,
    # which a restarted container reuses: the stale time made the restarted server
    # register in OVN's hash ring under its old key and fail. Each start begins anew.
    fresh = ("rm -f /tmp/neutron_start_time*",) if env.release_at_least("2026.2") else ()
    return [
        replace(
            container,
            prepare=(*container.prepare, *fresh),
        )
        for container in _containers(env, files)
    ]


def _containers(env: Env, files: tuple[ConfigFile, ...]) -> list[Container]:
    return [
        api_container(
            env,
            "neutron-server",
            "neutron",
            "neutron.wsgi.api:application",
            PORT,
            files,
            depends_on=("keystone", "rabbitmq", "ovn-nb-db", "ovn-sb-db"),
        ),
        # The periodic tasks and the OVN maintenance task, in one process
        # (dietstack/start/neutron_workers.py), healthy while the maintenance
        # task holds its connections to OVN's databases.
        worker_container(
            env,
            "neutron-workers",
            "neutron",
            (WORKERS_SCRIPT,),
            files,
            connected_to=(ovn.NB_PORT, ovn.SB_PORT),
        ),
    ]


def bootstrap(env: Env) -> Container:
    # While old servers may run, only the expand branch; then both (upstream's
    # contract, which 2026.2 does not change).
    branch = "--expand" if env.upgrading else "heads"
    script = (
        "neutron-db-manage --config-file /etc/neutron/neutron.conf "
        f"--config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade {branch}\n"
    )
    return bootstrap_container(
        "neutron-bootstrap", "neutron", script, (config(env), ml2_config(env))
    )


def public_subnet(env: Env) -> dict[str, Any]:
    """The floating-IP subnet: the first address is the host's gateway, the rest a pool."""
    network = ipaddress.IPv4Network(str(env.settings["external_cidr"]))
    hosts = list(network.hosts())
    first_free = hosts[9] if len(hosts) > 32 else hosts[1]
    return {
        "name": f"{PHYSNET}-subnet",
        "ip_version": 4,
        "cidr": str(network),
        "gateway_ip": str(hosts[0]),
        "allocation_pools": [{"start": str(first_free), "end": str(hosts[-1])}],
        "enable_dhcp": False,
    }


def agent_config(env: Env) -> IniFile:
    """neutron.conf of the metadata agent: it runs on every compute node, so it holds
    no database password and no Keystone credentials (it talks to OVN only)."""
    return IniFile(
        "/etc/neutron/neutron.conf",
        {
            "DEFAULT": {"core_plugin": "ml2", "state_path": "/var/lib/neutron"},
            "oslo_concurrency": {"lock_path": "/var/lib/neutron/tmp"},
        },
    )


def metadata_agent(env: Env) -> Container:
    """Serves the metadata API to instances from a namespace per network."""
    from dietstack.services.openvswitch import RUN

    agent_ini = IniFile(
        "/etc/neutron/neutron_ovn_metadata_agent.ini",
        {
            "DEFAULT": {
                "nova_metadata_host": env.control_ip,
                "nova_metadata_port": 8775,
                "nova_metadata_protocol": "https",
                "auth_ca_cert": PUBLIC_CA,
                "metadata_proxy_shared_secret": env.secrets["metadata_proxy_shared_secret"],
                "state_path": "/var/lib/neutron",
                "metadata_workers": 1,
            },
            "ovs": {"ovsdb_connection": "unix:/run/openvswitch/db.sock"},
            "ovn": {"ovn_sb_connection": ovn.sb_connection(env), **ovn_tls("sb")},
            "agent": {"root_helper": "sudo neutron-rootwrap /etc/neutron/rootwrap.conf"},
        },
    )
    command = (
        "neutron-ovn-metadata-agent",
        "--config-file",
        "/etc/neutron/neutron.conf",
        "--config-file",
        agent_ini.path,
    )
    worker = worker_container(
        env,
        "neutron-ovn-metadata-agent",
        "neutron",
        command,
        (agent_config(env), agent_ini, *ovn.node_tls(env)),
        volumes=(RUN, Mount("neutron-metadata", "/var/lib/neutron")),
        connected_to=(ovn.SB_PORT,),
    )
    return replace(
        worker,
        prepare=(
            # The agent sets sysctls inside its namespaces; Docker mounts /proc/sys
            # read-only.
            "mount -o remount,rw /proc/sys",
            # Its namespaces are bind mounts in the container's own mount namespace,
            # which ends with the container: after a restart (a power loss, a reboot)
            # only empty files are left in /run/netns, which the agent takes for its
            # namespaces and cannot open, so no metadata is served on those networks.
            "rm -f /run/netns/ovnmeta-*",
            # And the ports of their dead veths leave br-int (see metadata_ports.py).
            "python3 /usr/lib/dietstack/dietstack/start/metadata_ports.py",
        ),
        privileges=Privileges(
            # What neutron's privsep helpers keep.
            capabilities=("NET_ADMIN", "SYS_ADMIN", "NET_RAW", "SYS_PTRACE", "DAC_READ_SEARCH"),
            security_opt=("apparmor=unconfined",),
        ),
    )
