"""Nova: the compute service's control side.

The API and metadata API run under uWSGI; the conductor and the scheduler share
one process, and the noVNC console proxy runs as its own daemon. Cells v2 is set up with the
mandatory cell0 plus one cell, `cell1`.
"""

from __future__ import annotations

from dataclasses import replace

from dietstack.model import (
    HOST,
    NODES,
    PUBLIC_CA,
    PUBLIC_CERT,
    PUBLIC_KEY,
    SERVICES_TLS,
    START_PACKAGE,
    START_PROGRAM,
    USERS,
    Container,
    Endpoint,
    IniFile,
    Mount,
    Port,
    Privileges,
    Sections,
    TextFile,
)
from dietstack.render import LOOPBACK, Env
from dietstack.services import nfs, placement
from dietstack.services.common import (
    HEARTBEAT,
    api_container,
    bootstrap_container,
    combine,
    keystone_authtoken,
    keystone_client,
    messaging,
    messaging_tls_files,
    nodes_ca_files,
    server_tls,
    service_user,
    tcp_health,
    worker_container,
)

PORT = 8774
METADATA_PORT = 8775
NOVNC_PORT = 6080
#: Where the console proxy itself listens, on loopback, behind its on-demand starter.
NOVNC_BEHIND_PORT = 6082
#: Kept this long once no console is open (about 115 MiB running; 2 s to start).
NOVNC_IDLE_SECONDS = 120
ON_DEMAND_SCRIPT = f"{START_PACKAGE}/start/on_demand.py"
#: nova-ssh: nova-compute copies disks to another node for cold migration and resize.
SSH_PORT = Port(8022, NODES, "SSH between compute nodes (cold migration, resize)")
SSH_DIR = "/etc/nova-ssh"
#: What the console proxy presents to QEMU's VNC, and checks it by.
VNC_TLS = "/etc/nova/vnc-tls"
#: Runs nova-conductor and nova-scheduler together.
SERVICES_SCRIPT = f"{START_PACKAGE}/start/nova_services.py"
ENDPOINTS = (Endpoint("compute", "nova", PORT, "/v2.1", "OpenStack Compute"),)


def _common(env: Env) -> Sections:
    """What every Nova daemon's nova.conf holds, on any node."""
    return combine(
        {
            "DEFAULT": {
                "my_ip": env.ip,
                "state_path": "/var/lib/nova",
                # noVNC's web client, unpacked from Debian's novnc package.
                "web": "/usr/share/novnc",
                # An all-in-one cloud has one host to resize on.
                "allow_resize_to_same_host": True,
                **HEARTBEAT,
            },
            "api": {"auth_strategy": "keystone"},
            # nova-api's own process serves Placement: a call to it never waits
            # for ever, even when every thread of that process is busy.
            "placement": keystone_client(env, "nova") | {"timeout": 60},
            "glance": {"region_name": "RegionOne", "cafile": PUBLIC_CA},
            "cinder": keystone_client(env, "nova") | {"os_region_name": "RegionOne"},
            "neutron": keystone_client(env, "nova"),
            "vnc": {
                "enabled": True,
                "novncproxy_host": env.ip,
                "novncproxy_port": NOVNC_PORT,
                "novncproxy_base_url": env.url(NOVNC_PORT, "/vnc_lite.html"),
            },
            "oslo_concurrency": {"lock_path": "/var/lib/nova/tmp"},
        },
        # During an upgrade the new services speak the oldest compute's RPC version.
        {"upgrade_levels": {"compute": env.compute_rpc_pin}} if env.compute_rpc_pin else {},
        service_user(env, "nova"),
        messaging(env),
    )


def build_attempts(env: Env) -> int:
    """How many hosts a failed build is tried on. A cloud with one compute host has
    nowhere else to try: a second attempt would only replace the build's real fault
    ("No space left on device", say) with "Exhausted all hosts"."""
    return 1 if len(env.compute_nodes) <= 1 else 3


def config(env: Env) -> IniFile:
    """nova.conf of the control node's daemons: the databases, token validation and
    the metadata proxy's secret on top of the common part."""
    control: Sections = {
        # The console proxy serves browsers over HTTPS (and so WebSockets over wss://),
        # and reaches each instance's VNC over TLS with the services' certificate.
        "DEFAULT": {"ssl_only": True, "cert": PUBLIC_CERT, "key": PUBLIC_KEY},
        "console": {"ssl_minimum_version": "tlsv1_2"},
        "vnc": {
            "auth_schemes": "vencrypt",
            "vencrypt_client_key": f"{VNC_TLS}/client.key",
            "vencrypt_client_cert": f"{VNC_TLS}/client.crt",
            "vencrypt_ca_certs": f"{VNC_TLS}/ca.pem",
        },
        # Nova checks project IDs with Keystone through this section's session.
        "keystone": {"cafile": PUBLIC_CA},
        "api_database": {
            "connection": env.database_url("nova", "nova_api"),
            "max_retries": -1,
        },
        "database": {"connection": env.database_url("nova"), "max_retries": -1},
        "keystone_authtoken": keystone_authtoken(env, "nova"),
        "neutron": {
            "service_metadata_proxy": True,
            "metadata_proxy_shared_secret": env.secrets["metadata_proxy_shared_secret"],
        },
        "conductor": {"workers": env.workers},
        "scheduler": {
            "workers": env.workers,
            # New compute nodes are found without running a command.
            "discover_hosts_in_cells_interval": 60,
            "max_attempts": build_attempts(env),
        },
    }
    return IniFile("/etc/nova/nova.conf", combine(_common(env), control))


#: Requests nova-api's one worker serves at once. Some of Nova's API calls wait on
#: Placement, which the same process serves: a thread must stay free to answer it.
API_THREADS = 8


def containers(env: Env) -> list[Container]:
    files = (config(env),)
    # The API applications load their paste pipeline from the first file listed
    # (upstream expects /etc/nova/api-paste.ini); the installed copy is used as is.
    environment = (("OS_NOVA_CONFIG_FILES", "/opt/openstack/etc/nova/api-paste.ini;nova.conf"),)
    placement_api, placement_config = placement.api(env)
    api = api_container(
        env,
        "nova-api",
        "nova",
        "nova.wsgi.osapi_compute:application",
        PORT,
        (*files, placement_config),
        depends_on=("keystone", "rabbitmq"),
        uwsgi_extra={"threads": API_THREADS},
        # The metadata API shares nova.conf, and Placement reads its own file: one
        # process serves all three.
        sisters=(
            (
                Port(METADATA_PORT, NODES, "Nova metadata API, for the nodes' metadata agents"),
                "nova.wsgi.metadata:application",
            ),
            placement_api,
        ),
    )
    return [
        _with_env(api, environment),
        # The conductor and the scheduler, in one process (dietstack/start/nova_services.py).
        worker_container(env, "nova-conductor", "nova", (SERVICES_SCRIPT,), files),
        _novncproxy(env, files),
    ]


def _with_env(container: Container, environment: tuple[tuple[str, str], ...]) -> Container:
    return replace(container, environment=environment)


def _novncproxy(env: Env, files: tuple[IniFile, ...]) -> Container:
    """The console proxy, started when a browser first speaks to its port and ended
    when no console has been open for a while (dietstack/start/on_demand.py)."""
    proxy = worker_container(env, "nova-novncproxy", "nova", ("nova-novncproxy",), files)
    behind = ("--vnc-novncproxy_host", LOOPBACK, "--vnc-novncproxy_port", str(NOVNC_BEHIND_PORT))
    port = Port(NOVNC_PORT, USERS, "noVNC console proxy (browsers)")
    own = Port(NOVNC_BEHIND_PORT, HOST, "noVNC console proxy, started on demand behind 6080")
    vnc_tls = nodes_ca_files(
        env, SERVICES_TLS, f"{VNC_TLS}/ca.pem", f"{VNC_TLS}/client.crt", f"{VNC_TLS}/client.key"
    )
    return replace(
        proxy,
        command=(
            "python3",
            ON_DEMAND_SCRIPT,
            f"{env.ip}:{NOVNC_PORT}",
            f"{LOOPBACK}:{NOVNC_BEHIND_PORT}",
            str(NOVNC_IDLE_SECONDS),
            "--",
            *proxy.command,
            *behind,
        ),
        files=(*proxy.files, *server_tls(env), *vnc_tls),
        ports=(port, own),
        healthcheck=tcp_health(env.ip, NOVNC_PORT),
    )


#: Nova fills these from [database]/connection and transport_url of its own config.
CELL_URL = "{scheme}://{username}:{password}@{hostname}:{port}/{path}"
CELL0_DATABASE = "{scheme}://{username}:{password}@{hostname}:{port}/nova_cell0"
CELL0_UUID = "00000000-0000-0000-0000-000000000000"


def bootstrap(env: Env) -> Container:
    # The cell mappings hold templates that Nova fills from nova.conf, so they follow
    # a change of address (and keep the passwords off the command line).
    script = f"""
nova-manage api_db sync
nova-manage cell_v2 map_cell0 --database_connection '{CELL0_DATABASE}'
nova-manage cell_v2 list_cells | grep -q ' cell1 ' || nova-manage cell_v2 create_cell \\
    --name cell1 --database_connection '{CELL_URL}' --transport-url '{CELL_URL}'
nova-manage cell_v2 update_cell --cell_uuid {CELL0_UUID} \\
    --database_connection '{CELL0_DATABASE}' --transport-url none:///
cell1=$(nova-manage cell_v2 list_cells \\
    | awk -F'|' '$2 ~ /^ *cell1 *$/ {{gsub(/ /, "", $3); print $3}}')
nova-manage cell_v2 update_cell --cell_uuid "$cell1" \\
    --database_connection '{CELL_URL}' --transport-url '{CELL_URL}'
nova-manage db sync
"""
    return bootstrap_container("nova-bootstrap", "nova", script, (config(env),))


def compute_config(env: Env) -> IniFile:
    """nova.conf of nova-compute: the common file plus the hypervisor's sections."""
    from dietstack.services.libvirt import SERIAL_PORTS

    compute: Sections = {
        "DEFAULT": {
            "compute_driver": "libvirt.LibvirtDriver",
            "instances_path": "/var/lib/nova/instances",
            # Guests that ran when libvirt's container was made anew (a new image, a
            # power loss) are started again; those stopped through Nova stay stopped.
            "resume_guests_state_on_host_boot": True,
        },
        "libvirt": {
            "virt_type": env.hypervisor,
            "connection_uri": "qemu:///system",
            "nfs_mount_point_base": "/var/lib/nova/mnt",
            # Emulated guests get a fixed, widely supported CPU model.
            **({"cpu_mode": "custom", "cpu_models": "Nehalem"} if env.hypervisor == "qemu" else {}),
            # Live migration: libvirt to libvirt over TLS, and QEMU's own TLS for
            # the memory and disk streams, all on the management address.
            "live_migration_scheme": "tls",
            "live_migration_inbound_addr": env.ip,
            "live_migration_with_native_tls": True,
            # A busy guest would otherwise dirty memory faster than it is copied.
            "live_migration_permit_auto_converge": True,
        },
        "vnc": {"server_listen": env.ip, "server_proxyclient_address": env.ip},
        # A TCP serial console is logged to a file nova-compute can read; the
        # default pty console lives in libvirt's container, out of its reach.
        # No serial proxy is deployed, so its ports listen on loopback only.
        "serial_console": {
            "enabled": True,
            "proxyclient_address": LOOPBACK,
            "port_range": f"{SERIAL_PORTS.number}:{SERIAL_PORTS.last}",
        },
        "os_vif_ovs": {"ovsdb_connection": "unix:/run/openvswitch/db.sock"},
    }
    # Compute nodes reach the databases only through the conductor, and serve no
    # API: no database passwords, no token validation, no metadata proxy secret.
    return IniFile("/etc/nova/nova.conf", combine(_common(env), compute))


def compute(env: Env) -> list[Container]:
    from dietstack.services.libvirt import INSTANCES, RUN, volume_mounts
    from dietstack.services.openvswitch import RUN as OVS_RUN

    worker = worker_container(
        env,
        "nova-compute",
        "nova",
        ("nova-compute",),
        (compute_config(env), nfs.local_exports(env)),
        volumes=(
            RUN,
            OVS_RUN,
            INSTANCES,
            volume_mounts(env, "rshared"),
            Mount("nova/state", "/var/lib/nova"),
            *nfs.local_export_mounts(env),
        ),
        depends_on=("libvirt", "openvswitch-vswitchd"),
    )
    # Without a kernel NFS client, volumes are mounted with FUSE (see mount.nfs).
    fuse = () if env.settings.get("nfs_client", "yes") else ("/dev/fuse:/dev/fuse",)
    # From 2026.2 os-vif makes each instance's TAP device before it plugs it into
    # Open vSwitch (Neutron's ovs_create_tap, on by default): the userspace datapath
    # opens only a device that exists. libvirt made the device before.
    tun = ("/dev/net/tun:/dev/net/tun",) if env.release_at_least("2026.2") else ()
    return [
        _ssh_server(env),
        replace(
            worker,
            files=(*worker.files, *_ssh_client_files(env), *messaging_tls_files(env)),
            privileges=Privileges(
                # What nova's, os-vif's and os-brick's privsep helpers keep.
                capabilities=("NET_ADMIN", "SYS_ADMIN", "NET_RAW", "DAC_READ_SEARCH", "SYS_PTRACE"),
                security_opt=("apparmor=unconfined",),
                devices=(*fuse, *tun),
            ),
        ),
    ]


#: The one program another node's nova-compute may run here, whatever it asks for:
#: Nova's file commands inside the instances' directory (start/nova_commands.py).
NOVA_COMMANDS = f"{START_PROGRAM} --nova-ssh"
#: nova-compute's scp speaks scp's own protocol, which the receiving node runs as one
#: command that names its target (checked), not SFTP (any file, unchecked).
SCP_WRAPPER = TextFile("/usr/local/bin/scp", '#!/bin/sh\nexec /usr/bin/scp -O "$@"\n', 0o755)


def _ssh_client_files(env: Env) -> tuple[TextFile, ...]:
    """nova-compute's SSH to the other nodes' nova-ssh: its key, and the one host key
    every nova-ssh presents (checked: nothing else is trusted)."""
    client = "\n".join(
        (
            "Host *",
            f"    Port {SSH_PORT.number}",
            "    User root",
            "    IdentityFile /root/.ssh/id_ed25519",
            "    IdentitiesOnly yes",
            "    UserKnownHostsFile /root/.ssh/known_hosts",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "",
        )
    )
    return (
        TextFile("/root/.ssh/config", client, 0o600),
        TextFile("/root/.ssh/id_ed25519", env.secrets["nova_ssh_private_key"], 0o600),
        TextFile("/root/.ssh/known_hosts", f"* {env.secrets['nova_ssh_host_public_key']}\n"),
        SCP_WRAPPER,
    )


def _ssh_server(env: Env) -> Container:
    """sshd for the other nodes' nova-compute only: their key, no passwords, no
    forwarding, the instances' directory shared with this node's nova-compute."""
    from dietstack.services.libvirt import INSTANCES

    daemon = "\n".join(
        (
            f"Port {SSH_PORT.number}",
            f"ListenAddress {env.ip}",
            f"HostKey {SSH_DIR}/host_key",
            f"AuthorizedKeysFile {SSH_DIR}/authorized_keys",
            "PermitRootLogin prohibit-password",
            "AllowUsers root",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTunnel no",
            "PidFile /run/nova-sshd.pid",
            "",
        )
    )
    files = (
        TextFile(f"{SSH_DIR}/sshd_config", daemon, 0o600),
        TextFile(f"{SSH_DIR}/host_key", env.secrets["nova_ssh_host_private_key"], 0o600),
        TextFile(
            f"{SSH_DIR}/authorized_keys",
            f'restrict,command="{NOVA_COMMANDS}" {env.secrets["nova_ssh_public_key"]}\n',
            0o600,
        ),
    )
    return Container(
        name="nova-ssh",
        service="nova",
        image="openstack",
        command=("/usr/sbin/sshd", "-D", "-e", "-f", f"{SSH_DIR}/sshd_config"),
        files=files,
        volumes=(INSTANCES,),
        healthcheck=tcp_health(env.ip, SSH_PORT.number),
        prepare=("mkdir -p /run/sshd",),
        ports=(SSH_PORT,),
    )
