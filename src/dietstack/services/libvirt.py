"""libvirt and QEMU: the hypervisor that nova-compute drives, in a container.

It needs more than any other container: QEMU creates tap devices, uses /dev/kvm
and manages cgroups. It gets explicit capabilities and device rules instead of
`--privileged` (which also fails on hosts lacking some capabilities).
"""

from __future__ import annotations

from dataclasses import replace

from dietstack.model import (
    HOST,
    NODE_ORGANIZATION,
    NODES,
    Container,
    Healthcheck,
    Mount,
    Port,
    Privileges,
    TextFile,
    tls_secret_names,
)
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
#: libvirt over TLS: the source node's libvirt starts a live migration here.
TLS_PORT = Port(16514, NODES, "libvirt over TLS (live migration between nodes)")
#: QEMU's incoming migration and disk (NBD) streams, one port per migration, over TLS.
MIGRATION_PORTS = Port(49152, NODES, "QEMU live migration streams (TLS)", last=49215)

#: The user QEMU runs guests as (Debian and Ubuntu give libvirt-qemu this number).
QEMU_UID = 64055
#: QEMU's group: the host's group of /dev/kvm, so KVM stays usable without root.
KVM_GROUP = (
    "if [ -e /dev/kvm ]; then "
    'sed -i "s/^group = .*/group = \\"+$(stat -c %g /dev/kvm)\\"/" /etc/libvirt/qemu.conf; fi'
)
#: Where guests run under emulation, libvirt must not see the host's /dev/kvm: it
#: probes QEMU as root (who may open it) but checks it as QEMU's user (who, with
#: the device at 0600, may not), finds the two disagree and probes QEMU again at
#: each of nova-compute's lookups. An empty read-only file over it, in this
#: container's mount namespace only, makes both answers "no KVM".
HIDE_KVM = "if [ -e /dev/kvm ]; then : >/run/no-kvm && mount --bind -o ro /run/no-kvm /dev/kvm; fi"

#: Where libvirt (as server and as client) and QEMU find their TLS files.
CA_CERT = "/etc/pki/CA/cacert.pem"
CA_CRL = "/etc/pki/CA/cacrl.pem"
LIBVIRT_TLS = "/etc/pki/libvirt"
QEMU_TLS = "/etc/pki/qemu"


def volume_mounts(env: Env, propagation: str) -> Mount:
    """Nova's NFS mount directory. A remote share is mounted by nova-compute in its
    own container; propagation ("rshared" there, "rslave" here) makes the mount show
    where QEMU opens it. This node's own share is bind-mounted for good instead."""
    return replace(VOLUME_MOUNTS, propagation="" if nfs.served_here(env) else propagation)


def _shared_volumes(env: Env) -> tuple[str, ...]:
    """Volumes libvirt would not know are shared, and so refuse to live-migrate:
    this node's own share (a bind mount, exported to the others over NFS) and
    the userspace NFS client's FUSE mounts."""
    if nfs.served_here(env) or not env.settings.get("nfs_client", "yes"):
        return (f'shared_filesystems = [ "{VOLUME_MOUNTS.target}" ]',)
    return ()


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
    # Of the host's /dev only what guests use (besides Docker's own null, zero,
    # random, tty, ptys and tun): KVM, vhost-net and vhost-vsock; no disk, no memory.
    device_cgroup_rules=("c 10:232 rwm", "c 10:238 rwm", "c 10:241 rwm"),
    security_opt=("seccomp=unconfined", "apparmor=unconfined"),
)


def allowed_dns() -> str:
    """libvirt's list of client names it admits, in either order of the name's parts
    (GnuTLS versions differ in which they print first)."""
    node = f"O={NODE_ORGANIZATION}"
    return f'[ "{node},CN=*", "CN=*,{node}" ]'


def tls_files(env: Env) -> tuple[TextFile, ...]:
    """This node's certificate for both ends (it receives migrations and starts
    them), for libvirt and for QEMU, the CA that every node's is signed by, and the
    CA's list of revoked certificates (removed nodes'). All live: renewed or
    revoked, they are rewritten in the running container (see RELOAD)."""
    key_name, cert_name = tls_secret_names(env.node)
    key, cert = env.secrets[key_name], env.secrets[cert_name]
    ca, crl = env.secrets["libvirt_ca_certificate"], env.secrets["libvirt_crl"]
    files = (
        (CA_CERT, ca, 0o644),
        (CA_CRL, crl, 0o644),
        (f"{LIBVIRT_TLS}/servercert.pem", cert, 0o644),
        (f"{LIBVIRT_TLS}/private/serverkey.pem", key, 0o600),
        (f"{LIBVIRT_TLS}/clientcert.pem", cert, 0o644),
        (f"{LIBVIRT_TLS}/private/clientkey.pem", key, 0o600),
        (f"{QEMU_TLS}/ca-cert.pem", ca, 0o644),
        (f"{QEMU_TLS}/ca-crl.pem", crl, 0o644),
        (f"{QEMU_TLS}/server-cert.pem", cert, 0o644),
        (f"{QEMU_TLS}/server-key.pem", key, 0o600),
        (f"{QEMU_TLS}/client-cert.pem", cert, 0o644),
        (f"{QEMU_TLS}/client-key.pem", key, 0o600),
    )
    return tuple(TextFile(path, text, mode, live=True) for path, text, mode in files)


#: QEMU reads its own TLS keys (migration and disk streams, VNC) as its user.
OWN_KEYS = f"chown {QEMU_UID} {QEMU_TLS}/server-key.pem {QEMU_TLS}/client-key.pem"
#: After new TLS files: libvirt takes them up for new connections, and each running
#: guest's VNC server for new consoles (QEMU's display-reload); migrations read
#: them when they start. The guests keep running.
RELOAD = (
    OWN_KEYS,
    "virt-admin -c libvirtd:///system server-update-tls libvirtd",
    "for guest in $(virsh -c qemu:///system list --name); do "
    'virsh -c qemu:///system qemu-monitor-command "$guest" '
    """'{"execute": "display-reload", "arguments": {"type": "vnc", "tls-certs": true}}' """
    '>/dev/null || echo "$guest: its console keeps the certificate it started with"; done',
)


#: How much room the instances' file system needs before a paused guest goes on.
RESUME_FREE_KIB = 256 * 1024
#: QEMU pauses a guest whose disk write fails for want of space (its default
#: werror=enospc), so the guest sees no I/O error and its file systems stay whole;
#: but neither libvirt nor Nova (which ignores a pause it did not ask for) ever
#: resumes it. This loop, started beside libvirtd, resumes each guest paused by an
#: I/O error once the instances' file system has room again (QEMU retries the
#: failed write; a guest whose disk is still full pauses again). One `virsh list`
#: every 30 s: a few milliseconds of CPU.
RESUME_AFTER_FULL_DISK = (
    "(while sleep 30; do "
    "for guest in $(virsh -c qemu:///system list --state-paused --name 2>/dev/null); do "
    'case "$(virsh -c qemu:///system domstate --reason "$guest")" in *"I/O error"*) '
    f'[ "$(df --output=avail -k {INSTANCES.target} | tail -1)" -ge {RESUME_FREE_KIB} ] '
    '&& virsh -c qemu:///system resume "$guest" >/dev/null '
    '&& echo "$guest: resumed, paused by a full disk that has room again";; '
    "esac; done; done) &"
)


def containers(env: Env) -> list[Container]:
    daemon = TextFile(
        "/etc/libvirt/libvirtd.conf",
        "\n".join(
            (
                # Other nodes connect over TLS only, with a certificate of the
                # cloud's CA (checked, as is theirs by this node): no passwords.
                "listen_tls = 1",
                "listen_tcp = 0",
                f'listen_addr = "{env.ip}"',
                f'tls_port = "{TLS_PORT.number}"',
                'auth_tls = "none"',
                "tls_no_verify_certificate = 0",
                # Only nodes' certificates: another one the cloud's CA signed is refused.
                f"tls_allowed_dn_list = {allowed_dns()}",
                f'ca_file = "{CA_CERT}"',
                # Read at every start, not only at a reload: revoked stays revoked.
                f'crl_file = "{CA_CRL}"',
                f'cert_file = "{LIBVIRT_TLS}/servercert.pem"',
                f'key_file = "{LIBVIRT_TLS}/private/serverkey.pem"',
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
                # QEMU runs each guest as an unprivileged user, without
                # capabilities, under its own seccomp filter: a guest that escapes
                # QEMU is that user, not root. libvirt hands each guest's disks,
                # volumes and files to it while the guest runs and back to root
                # after; the same number on every node, as volumes move between them.
                f'user = "+{QEMU_UID}"',
                # The group of /dev/kvm where there is one (set at start: it is the host's).
                f'group = "+{QEMU_UID}"',
                "dynamic_ownership = 1",
                # Owners are not kept in extended attributes (not every file system
                # here has them): files go back to root.
                "remember_owner = 0",
                "seccomp_sandbox = 1",
                "clear_emulator_capabilities = 1",
                # No private mount namespace per guest: the NFS mounts must stay visible.
                "namespaces = [ ]",
                'stdio_handler = "file"',
                f"remote_display_port_min = {VNC_PORTS.number}",
                f"remote_display_port_max = {VNC_PORTS.last}",
                # Incoming migrations on the management address, over TLS with
                # this node's certificate, peers' certificates verified.
                f'migration_address = "{env.ip}"',
                f'migration_host = "{env.ip}"',
                f"migration_port_min = {MIGRATION_PORTS.number}",
                f"migration_port_max = {MIGRATION_PORTS.last}",
                f'default_tls_x509_cert_dir = "{QEMU_TLS}"',
                "default_tls_x509_verify = 1",
                # VNC consoles over TLS (VeNCrypt, x509) from the same directory: only
                # the console proxy, with a certificate of the nodes' CA, gets a screen.
                "vnc_tls = 1",
                "vnc_tls_x509_verify = 1",
                *_shared_volumes(env),
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
            command=("libvirtd", "--listen"),
            files=(daemon, qemu, *tls_files(env)),
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
                *((HIDE_KVM,) if env.hypervisor == "qemu" else (KVM_GROUP,)),
                OWN_KEYS,
                "virtlogd -d",
                RESUME_AFTER_FULL_DISK,
            ),
            reload=RELOAD,
            ports=(VNC_PORTS, SERIAL_PORTS, TLS_PORT, MIGRATION_PORTS),
        )
    ]
