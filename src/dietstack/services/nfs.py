"""The NFS share that holds Cinder's volumes: served by the control node with
nfs-ganesha (a userspace server: no nfsd kernel module needed), or an existing
NAS share named by the `nfs_share` setting.

On the node that serves the share, Cinder and Nova bind-mount its directory
instead of mounting it over NFS from themselves (see the openstack image's
mount.nfs), and QEMU sees it at the path Nova expects.
"""

from __future__ import annotations

import hashlib

from dietstack.model import NODES, Container, Mount, Port, Privileges, TextFile
from dietstack.render import Env
from dietstack.services.common import tcp_health

PORT = 2049
PSEUDO_PATH = "/cinder"
#: The exported directory, relative to the data directory.
EXPORT_DIR = "cinder-volumes"
#: Where containers that bind-mount the local export find its directory.
LOCAL_EXPORT = "/var/lib/dietstack/exports/cinder"
LOCAL_EXPORTS_FILE = "/etc/dietstack-local-exports"


def share(env: Env) -> str:
    return str(env.settings.get("nfs_share") or f"{env.control_ip}:{PSEUDO_PATH}")


def served_here(env: Env) -> bool:
    """Whether this node serves the share itself: the control node, unless nfs_share
    names a NAS. Every other node mounts it over NFS."""
    return env.is_control and not env.settings.get("nfs_share")


def mount_point(base: str, env: Env) -> str:
    """Where Cinder and Nova (os-brick) mount the share: base/<md5 of the share>."""
    return f"{base}/{hashlib.md5(share(env).encode(), usedforsecurity=False).hexdigest()}"


def local_exports(env: Env) -> TextFile:
    """Which shares the mount.nfs of the openstack image bind-mounts, and from where."""
    line = f"{share(env)} {LOCAL_EXPORT}\n" if served_here(env) else ""
    return TextFile(LOCAL_EXPORTS_FILE, line, 0o644)


def local_export_mounts(env: Env) -> tuple[Mount, ...]:
    return (Mount(EXPORT_DIR, LOCAL_EXPORT),) if served_here(env) else ()


def containers(env: Env) -> list[Container]:
    if not served_here(env):
        return []
    config = TextFile(
        "/etc/ganesha/ganesha.conf",
        f"""NFS_CORE_PARAM {{
    Protocols = 4;
    NFS_Port = {PORT};
    Bind_addr = {env.ip};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    # PR_SET_IO_FLUSHER needs CAP_SYS_RESOURCE, which containers here do not get.
    allow_set_io_flusher_fail = true;
}}
NFSv4 {{
    Graceless = true;
}}
EXPORT {{
    Export_Id = 1;
    Path = /export;
    Pseudo = {PSEUDO_PATH};
    # Only the cloud's nodes (the inventory) may mount it; QEMU and Cinder act
    # as root on the volume files, hence no root squashing for them.
    Access_Type = None;
    Protocols = 4;
    Transports = TCP;
    SecType = sys;
    CLIENT {{
        Clients = {", ".join(env.node_ips)};
        Access_Type = RW;
        Squash = No_Root_Squash;
    }}
    FSAL {{
        Name = VFS;
    }}
}}
LOG {{
    Default_Log_Level = WARN;
}}
""",
        0o644,
    )
    return [
        Container(
            name="nfs-server",
            service="nfs",
            image="nfs",
            command=("ganesha.nfsd", "-F", "-L", "/dev/stdout", "-f", config.path),
            files=(config,),
            volumes=(Mount(EXPORT_DIR, "/export"), Mount("nfs-state", "/var/lib/nfs/ganesha")),
            healthcheck=tcp_health(env.ip, PORT),
            privileges=Privileges(capabilities=("DAC_READ_SEARCH", "SYS_ADMIN")),
            prepare=(
                "mkdir -p /run/ganesha /var/lib/nfs/ganesha",
                # Volumes made before Cinder kept them 0660 were anyone's to read.
                "find /export -type f -perm /o=rw -exec chmod o-rw {} +",
            ),
            ports=(
                Port(PORT, NODES, "NFS share of the volumes (the nodes' Cinder and Nova)"),
                Port(PORT, NODES, "NFS share of the volumes", protocol="udp"),
            ),
        )
    ]
