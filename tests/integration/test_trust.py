"""Trust boundaries on the all-in-one cloud: what a guest that escapes QEMU, a local
user of the host and a container broken into can reach."""

from __future__ import annotations

import errno
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from dietstack.engine import keys
from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.hosts.runtime import DockerRuntime
from dietstack.services import libvirt
from tests import certificates

from .test_deploy import demo_server, deployed_env, guest_processes, openstack

pytestmark = pytest.mark.integration

#: Secrets that only the database server, the message queue and Keystone's
#: bootstrap need: any other container holding one would be a leak.
ONLY_THEIRS = {
    "mariadb_root_password": {"mariadb", "mariadb-bootstrap"},
    "admin_password": {"keystone-bootstrap"},
    "rabbitmq_erlang_cookie": {"rabbitmq"},
}


def data_dir_of(cloud: Path) -> Path:
    return Path(yaml.safe_load(cloud.read_text())["data_dir"])


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )


def connect_error(port: int, as_user: bool = True, host: str = "127.0.0.1") -> int:
    """The errno of a TCP connect to host:port (0: it connected), as the
    unprivileged user `nobody` or as root."""
    probe = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(5)\n"
        f"print(s.connect_ex(({host!r}, {port})))\n"
    )
    command = ("python3", "-c", probe)
    if as_user:
        result = as_nobody(*command)
    else:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_each_container_holds_only_its_own_secrets(cloud: Path, runtime: DockerRuntime) -> None:
    for name in runtime.containers(LABEL_CONTAINER):
        state = runtime.containers(LABEL_CONTAINER)[name]
        if not state.running:
            continue
        code, text = runtime.exec(name, ["cat", "/etc/dietstack/secrets.yaml"])
        assert code == 0, f"{name}: {text}"
        held = set((yaml.safe_load(text) or {}).keys())
        for secret, holders in ONLY_THEIRS.items():
            assert secret not in held or name in holders, f"{name} holds {secret}"
    code, text = runtime.exec("nova-ssh", ["cat", "/etc/dietstack/secrets.yaml"])
    assert set(yaml.safe_load(text)) == {"nova_ssh_host_private_key", "nova_ssh_public_key"}


def test_a_local_user_reaches_no_data_and_no_unauthenticated_service(cloud: Path) -> None:
    data_dir = data_dir_of(cloud)
    listing = as_nobody("ls", str(data_dir))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr
    management = deployed_env(cloud).ip
    # memcached and OVN's northbound database on loopback, OVN's southbound database
    # and NFS on the management address (which other nodes admit).
    targets = (("127.0.0.1", 11211), ("127.0.0.1", 6641), (management, 6642), (management, 2049))
    for host, port in targets:
        # Refused by the firewall's reset, not merely unanswered.
        refused = connect_error(port, host=host)
        assert refused == errno.ECONNREFUSED, f"a local user reached {host}:{port}"
        # root (the cloud's own services) still gets through.
        assert connect_error(port, as_user=False, host=host) == 0, f"{host}:{port}"


def proc_status(runtime: DockerRuntime, pid: str) -> dict[str, str]:
    code, out = runtime.exec("libvirt", ["cat", f"/proc/{pid}/status"])
    assert code == 0, out
    return {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in out.splitlines())
    }


def test_guests_run_as_an_unprivileged_confined_user(cloud: Path, runtime: DockerRuntime) -> None:
    server = demo_server("itest-confined")
    try:
        pids = guest_processes(runtime)
        assert pids, "no QEMU process runs"
        for pid in pids:
            status = proc_status(runtime, pid)
            uids = status["Uid"].split()
            assert set(uids) == {str(libvirt.QEMU_UID)}, status["Uid"]
            assert int(status["CapEff"], 16) == 0, status["CapEff"]
            assert status["Seccomp"] == "2", "QEMU runs without its seccomp filter"
        # libvirt hands the guest's disk to QEMU's user while it runs. Every guest
        # runs as that one user (no sVirt labels without AppArmor or SELinux): what
        # keeps a local user from the disks is data_dir, which only root may enter.
        disk = f"/var/lib/nova/instances/{server['id']}/disk"
        code, out = runtime.exec("libvirt", ["stat", "-c", "%u", disk])
        assert code == 0 and out.split() == [str(libvirt.QEMU_UID)], out
    finally:
        openstack("demo", "server", "delete", "--wait", "itest-confined", check=False)


def test_the_nova_key_runs_no_shell_and_reads_no_secrets(
    cloud: Path, runtime: DockerRuntime
) -> None:
    """nova-compute's key, as another node would use it against this node's nova-ssh."""
    code, address = runtime.exec(
        "nova-ssh", ["sh", "-c", "awk '/^ListenAddress/ {print $2}' /etc/nova-ssh/sshd_config"]
    )
    assert code == 0 and address.strip()
    for command in ("cat /etc/dietstack/secrets.yaml", "sh -c id", "id"):
        code, out = runtime.exec(
            "nova-compute", ["ssh", "-o", "ConnectTimeout=10", address.strip(), command]
        )
        assert code != 0, f"{command!r} ran: {out}"
        assert "refused" in out and "nova_ssh" not in out, out
    code, out = runtime.exec(
        "nova-compute",
        [
            "ssh",
            address.strip(),
            "mkdir -p /var/lib/nova/instances/itest-nova-ssh",
        ],
    )
    assert code == 0, out
    # A disk copy (scp's own protocol, as nova-compute's scp speaks it) lands inside
    # the instances' directory; anywhere else, and SFTP, are refused.
    target = f"{address.strip()}:/var/lib/nova/instances/itest-nova-ssh/copied"
    code, out = runtime.exec("nova-compute", ["scp", "/etc/hostname", target])
    assert code == 0, out
    outside = f"{address.strip()}:/etc/nova-ssh/authorized_keys"
    code, out = runtime.exec("nova-compute", ["scp", "/etc/hostname", outside])
    assert code != 0, out
    code, out = runtime.exec("nova-compute", ["/usr/bin/scp", "-s", "/etc/hostname", outside])
    assert code != 0, f"SFTP wrote into nova-ssh: {out}"
    code, out = runtime.exec("nova-ssh", ["cat", "/etc/nova-ssh/authorized_keys"])
    assert "restrict," in out, out
    code, out = runtime.exec(
        "nova-compute", ["ssh", address.strip(), "rm -rf /var/lib/nova/instances/itest-nova-ssh"]
    )
    assert code == 0, out


def virsh_over_tls(runtime: DockerRuntime, address: str, pki: str = "") -> tuple[int, str]:
    """`virsh uri` over libvirt's TLS port, with this node's certificate or the one in
    directory `pki` (cacert.pem, clientcert.pem, clientkey.pem)."""
    uri = f"qemu+tls://{address}/system" + (f"?pkipath={pki}" if pki else "")
    return runtime.exec("libvirt", ["virsh", "-c", uri, "uri"])


def test_libvirt_admits_a_nodes_certificate_and_no_other_of_the_clouds_ca(
    cloud: Path, runtime: DockerRuntime
) -> None:
    values = yaml.safe_load((cloud.parent / "secrets.yaml").read_text())
    code, address = runtime.exec(
        "libvirt", ["sh", "-c", "awk -F'\"' '/^listen_addr/ {print $2}' /etc/libvirt/libvirtd.conf"]
    )
    address = address.strip()
    assert code == 0 and address, address
    code, out = virsh_over_tls(runtime, address)
    assert code == 0, f"the node's own certificate was refused: {out}"
    key, cert = certificates.not_a_nodes(
        values["libvirt_ca_key"], values["libvirt_ca_certificate"], "intruder", address
    )
    pki = "/tmp/itest-not-a-node"
    write = (
        f'mkdir -p {pki} && printf "%s" "$CA" > {pki}/cacert.pem && '
        f'printf "%s" "$CERT" > {pki}/clientcert.pem && printf "%s" "$KEY" > {pki}/clientkey.pem'
    )
    environment = {"CA": values["libvirt_ca_certificate"], "CERT": cert, "KEY": key}
    node_key, node_cert = keys.node_certificate(
        values["libvirt_ca_key"], values["libvirt_ca_certificate"], "itest-node", address
    )
    try:
        code, out = runtime.exec("libvirt", ["sh", "-c", write], environment=environment)
        assert code == 0, out
        code, out = virsh_over_tls(runtime, address, pki)
        assert code != 0, f"a certificate that is no node's opened libvirt: {out}"
        # The same way in, with a node's certificate, is admitted.
        node_files = {**environment, "CERT": node_cert, "KEY": node_key}
        code, out = runtime.exec("libvirt", ["sh", "-c", write], environment=node_files)
        assert code == 0, out
        code, out = virsh_over_tls(runtime, address, pki)
        assert code == 0, f"a node's certificate was refused: {out}"
    finally:
        runtime.exec("libvirt", ["rm", "-rf", pki])


def tls_exchange(
    address: str, port: int, ca: Path, key: str, cert: str, payload: bytes, scratch: Path
) -> bytes:
    """What a TLS client presenting (key, cert) is answered after sending `payload`:
    the first bytes, or the error's text."""
    (scratch / "key.pem").write_text(key)
    (scratch / "cert.pem").write_text(cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(ca)
    context.load_cert_chain(scratch / "cert.pem", scratch / "key.pem")
    try:
        with (
            socket.create_connection((address, port), timeout=15) as plain,
            context.wrap_socket(plain) as tls,
        ):
            tls.sendall(payload)
            return tls.recv(64)
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}".encode()


AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
OVSDB_ECHO = b'{"method":"echo","params":[],"id":0}'


def test_rabbitmq_and_ovn_take_only_the_nodes_ca_over_tls(cloud: Path, tmp_path: Path) -> None:
    """The ports other nodes use speak TLS only and admit a certificate of the nodes'
    CA; one of another CA is refused in the handshake, and plain AMQP is not served
    on the management address."""
    values = yaml.safe_load((cloud.parent / "secrets.yaml").read_text())
    env = deployed_env(cloud)
    address = env.control_ip
    ca = tmp_path / "nodes-ca.pem"
    ca.write_text(values["libvirt_ca_certificate"])
    node_key = values[f"libvirt_{env.node}_key"]
    node_cert = values[f"libvirt_{env.node}_certificate"]
    intruder_ca_key, intruder_ca = keys.certificate_authority("intruder CA")
    intruder_key, intruder_cert = keys.node_certificate(
        intruder_ca_key, intruder_ca, env.node, address
    )
    for port, payload, answer in ((5671, AMQP_HEADER, b"\x01"), (6642, OVSDB_ECHO, b'{"id":0')):
        admitted = tls_exchange(address, port, ca, node_key, node_cert, payload, tmp_path)
        assert admitted.startswith(answer), (port, admitted)
        refused = tls_exchange(address, port, ca, intruder_key, intruder_cert, payload, tmp_path)
        assert refused.startswith(b"refused"), (port, refused)
    # Plain AMQP is on loopback only; the southbound database answers no plain JSON-RPC.
    assert connect_error(5672, as_user=False, host=address) != 0
    with socket.create_connection((address, 6642), timeout=15) as plain:
        plain.sendall(OVSDB_ECHO)
        plain.settimeout(5)
        try:
            reply = plain.recv(64)
        except (TimeoutError, OSError):
            reply = b""
    assert not reply.startswith(b'{"id"'), reply


def test_libvirt_refuses_a_node_certificate_of_another_ca(
    cloud: Path, runtime: DockerRuntime
) -> None:
    values = yaml.safe_load((cloud.parent / "secrets.yaml").read_text())
    address = deployed_env(cloud).control_ip
    intruder_ca_key, intruder_ca = keys.certificate_authority("intruder CA")
    key, cert = keys.node_certificate(intruder_ca_key, intruder_ca, "intruder", address)
    pki = "/tmp/itest-foreign-ca"
    write = (
        f'mkdir -p {pki} && printf "%s" "$CA" > {pki}/cacert.pem && '
        f'printf "%s" "$CERT" > {pki}/clientcert.pem && printf "%s" "$KEY" > {pki}/clientkey.pem'
    )
    # The client trusts the cloud's CA (so the server's certificate passes); the
    # server must refuse the client's, signed by another CA.
    environment = {"CA": values["libvirt_ca_certificate"], "CERT": cert, "KEY": key}
    try:
        code, out = runtime.exec("libvirt", ["sh", "-c", write], environment=environment)
        assert code == 0, out
        code, out = virsh_over_tls(runtime, address, pki)
        assert code != 0, f"a certificate of another CA opened libvirt: {out}"
    finally:
        runtime.exec("libvirt", ["rm", "-rf", pki])
    # The consoles: QEMU's VNC is VeNCrypt with x509 client certificates only.
    code, conf = runtime.exec("libvirt", ["cat", "/etc/libvirt/qemu.conf"])
    assert "vnc_tls = 1" in conf and "vnc_tls_x509_verify = 1" in conf, conf
