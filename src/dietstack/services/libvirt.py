"""libvirt and QEMU: the hypervisor that nova-compute drives, in a container.

It needs more than any other container: QEMU creates tap devices, uses /dev/kvm
and manages cgroups. It gets explicit capabilities and device rules instead of
`--privileged` (which also fails on hosts lacking some capabilities).
"""

from __future__ import annotations

from dataclasses import replace

from dietstack.model import HOST, NODES, Container, Healthcheck, Mount, Port, Privileges, TextFile
from dietstack.render import Env
from dietstack.services import nfs

RUN = Mount("/run/dietstack/libvirt", "/run/libvirt")
#: Instance disks live at the same path for nova-compute and QEMU.
INSTANCES = Mount("nova/instances", "/var/lib/nova/instances")
#: NFS volumes, mounted (or bind-mounted) by nova-compute, opened by QEMU.
VOLUME_MOUNTS = Mount("nova/mnt", "/var/lib/nova/mnt")
#: QEMU's VNC server, one port per instance, for the control node's noVNC proxy.
VNC_PORTS = Port(5900, NODES, "instance VNC consoles (the noVNC proxy)", last=5999)
#: QEMU's TCP serial consoles, logged for nova-compute; nothing else connects.
SERIAL_PORTS = Port(10000, HOST, "instance serial consoles", last=10999)


def volume_mounts(env: Env, propagation: str) -> Mount:
    """Nova's NFS mount directory. A remote share is mounted by nova-compute in its
    own container; propagation ("rshared" there, "rslave" here) makes the mount show
    where QEMU opens it. This node's own share is bind-mounted for good instead."""
    return replace(VOLUME_MOUNTS, propagation="" if nfs.served_here(env) else propagation)


#: Every capability libvirt and QEMU may use, listed: not "ALL", which Docker engines
#: expand differently (all they know, or only those the host grants). Not
#: SYS_RESOURCE (often withheld from containers), nor setting the clock, rebooting,
#: or the security modules' and syslog's controls.
CAPABILITIES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_ADMIN",
    "SYS_NICE",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "AUDIT_READ",
)

PRIVILEGES = Privileges(
    capabilities=CAPABILITIES,
    device_cgroup_rules=("a *:* rwm",),
    security_opt=("seccomp=unconfined", "apparmor=unconfined"),
)


def containers(env: Env) -> list[Container]:
    daemon = TextFile(
        "/etc/libvirt/libvirtd.conf",
        "\n".join(
            (
                "listen_tls = 0",
                "listen_tcp = 0",
                'unix_sock_group = "root"',
                'unix_sock_rw_perms = "0770"',
                'auth_unix_ro = "none"',
                'auth_unix_rw = "none"',
                'log_outputs = "3:stderr"',
                "",
            )
        ),
        0o644,
    )
    qemu = TextFile(
        "/etc/libvirt/qemu.conf",
        "\n".join(
            (
                # /dev/kvm and the instance files belong to root in this container.
                'user = "root"',
                'group = "root"',
                "dynamic_ownership = 0",
                "remember_owner = 0",
                # No private mount namespace per guest: the NFS mounts must stay visible.
                "namespaces = [ ]",
                'stdio_handler = "file"',
                f"remote_display_port_min = {VNC_PORTS.number}",
                f"remote_display_port_max = {VNC_PORTS.last}",
                "",
            )
        ),
        0o644,
    )
    # QEMU opens volumes on this node's own share where Nova would have mounted it;
    # the share is bind-mounted there for good (Nova's own mount is in its container).
    shared_volumes = (
        (Mount(nfs.EXPORT_DIR, nfs.mount_point(VOLUME_MOUNTS.target, env)),)
        if nfs.served_here(env)
        else ()
    )
    return [
        Container(
            name="libvirt",
            service="libvirt",
            image="libvirt",
            command=("libvirtd",),
            files=(daemon, qemu),
            volumes=(
                RUN,
                INSTANCES,
                volume_mounts(env, "rslave"),
                Mount("libvirt", "/var/lib/libvirt"),
                Mount("/dev", "/dev"),
                Mount("/sys/fs/cgroup", "/sys/fs/cgroup"),
                Mount("/lib/modules", "/lib/modules", read_only=True),
                *shared_volumes,
            ),
            healthcheck=Healthcheck(("virsh", "-c", "qemu:///system", "uri"), start_period=60),
            privileges=PRIVILEGES,
            prepare=(
                "mkdir -p /run/libvirt /var/lib/libvirt/qemu /var/log/libvirt/qemu",
                # Libvirt's default NAT network would add a bridge to the host.
                "rm -f /etc/libvirt/qemu/networks/autostart/default.xml",
                "virtlogd -d",
            ),
            ports=(VNC_PORTS, SERIAL_PORTS),
        )
    ]
