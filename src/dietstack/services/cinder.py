"""Cinder: block storage. The API, and the scheduler and volume service in one
process; volumes live on NFS."""

from __future__ import annotations

from dataclasses import replace

from dietstack.model import (
    PUBLIC_CA,
    START_PACKAGE,
    Container,
    Endpoint,
    IniFile,
    Mount,
    Privileges,
    TextFile,
)
from dietstack.render import Env
from dietstack.services import nfs
from dietstack.services.common import (
    HEARTBEAT,
    api_container,
    bootstrap_container,
    combine,
    keystone_authtoken,
    keystone_client,
    messaging,
    service_user,
    worker_container,
)

PORT = 8776
ENDPOINTS = (Endpoint("block-storage", "cinder", PORT, "/v3", "OpenStack Block Storage"),)
DATA = (Mount("cinder", "/var/lib/cinder"),)
MOUNT_BASE = "/var/lib/cinder/mnt"
#: The files cinder ships for its API, inside the image's venv.
ETC = "/opt/openstack/etc/cinder"
#: Runs cinder-scheduler and cinder-volume together.
SERVICES_SCRIPT = f"{START_PACKAGE}/start/cinder_services.py"


SHARES_FILE = "/etc/cinder/nfs_shares"


def shares(env: Env) -> TextFile:
    return TextFile(SHARES_FILE, f"{nfs.share(env)}\n", 0o640)


def config(env: Env) -> IniFile:
    return IniFile(
        "/etc/cinder/cinder.conf",
        combine(
            {
                "DEFAULT": {
                    "my_ip": env.ip,
                    "osapi_volume_listen": env.ip,
                    "state_path": "/var/lib/cinder",
                    "api_paste_config": f"{ETC}/api-paste.ini",
                    # Without this list a project user may not filter volumes even by name.
                    "resource_query_filters_file": f"{ETC}/resource_filters.json",
                    "auth_strategy": "keystone",
                    "osapi_volume_workers": env.workers,
                    "enabled_backends": "nfs",
                    "glance_ca_certificates_file": PUBLIC_CA,
                    **HEARTBEAT,
                },
                "database": {"connection": env.database_url("cinder"), "max_retries": -1},
                "keystone_authtoken": keystone_authtoken(env, "cinder"),
                "nova": keystone_client(env, "cinder") | {"interface": "public"},
                "oslo_concurrency": {"lock_path": "/var/lib/cinder/tmp"},
                "nfs": {
                    "volume_driver": "cinder.volume.drivers.nfs.NfsDriver",
                    "volume_backend_name": "nfs",
                    "nfs_shares_config": SHARES_FILE,
                    "nfs_mount_point_base": MOUNT_BASE,
                    "nfs_snapshot_support": True,
                    "nfs_sparsed_volumes": True,
                    # Sparse volumes take no room when made, so nothing else would
                    # refuse one on a full disk: the share takes no new volume once
                    # it is 95 % full, which keeps the rest for the volumes, disks and
                    # databases already there.
                    "reserved_percentage": 5,
                    # Cinder's NFS operations run as root in its container (no
                    # separate cinder user to run them as)...
                    "nas_secure_file_operations": False,
                    # ...but its volume files are 0660, never another user's to read;
                    # libvirt hands each to QEMU's user while a guest uses it.
                    "nas_secure_file_permissions": True,
                },
            },
            service_user(env, "cinder"),
            messaging(env),
        ),
    )


def containers(env: Env) -> list[Container]:
    files = (config(env),)
    return [
        api_container(
            env,
            "cinder-api",
            "cinder",
            "cinder.wsgi.api:application",
            PORT,
            files,
            DATA,
            depends_on=("keystone", "rabbitmq"),
        ),
        volume(env),
    ]


def volume(env: Env) -> Container:
    """cinder-volume with the NFS driver (it mounts the share, hence SYS_ADMIN),
    and cinder-scheduler in the same process (dietstack/start/cinder_services.py)."""
    files = (config(env), shares(env), nfs.local_exports(env))
    worker = worker_container(
        env,
        "cinder-volume",
        "cinder",
        (SERVICES_SCRIPT,),
        files,
        DATA + nfs.local_export_mounts(env),
    )
    return replace(
        worker,
        privileges=Privileges(
            # What cinder's and os-brick's privsep helpers keep: a helper that asks for a
            # capability the container lacks fails to start (e.g. volume from image).
            capabilities=("SYS_ADMIN", "DAC_READ_SEARCH", "NET_ADMIN"),
            security_opt=("apparmor=unconfined",),
        ),
        depends_on=("nfs-server",) if nfs.served_here(env) else (),
    )


def bootstrap(env: Env) -> Container:
    return bootstrap_container(
        "cinder-bootstrap", "cinder", "cinder-manage db sync\n", (config(env),), DATA
    )
