"""Deploy the whole control plane for real, use it with the openstack client, redeploy."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko
import pytest
import requests
import yaml

from dietstack.engine import publictls, secrets
from dietstack.engine.converge import LABEL_CONTAINER, LABEL_IMAGE_TAG
from dietstack.hosts import hostnet
from dietstack.hosts.dockerdata import parse_time
from dietstack.hosts.provision import ensure_docker
from dietstack.hosts.runtime import DockerRuntime
from dietstack.ops import exposure
from dietstack.ops.icmp import ping
from dietstack.ops.verifysteps import answered, probe_script
from dietstack.render import Env
from dietstack.services import firewall, nfs

from . import stranger
from .conftest import run_dietstack

pytestmark = pytest.mark.integration
DATA = Path(__file__).parent / "data"


def openstack(cloud: str, *args: str, check: bool = True) -> Any:
    """Run the openstack client; returns parsed JSON output when asked for it."""
    command = [shutil.which("openstack") or "openstack", "--os-cloud", cloud, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    if "-f" in args and "json" in args:
        return json.loads(result.stdout)
    return result.stdout


def demo_server(name: str, *source: str) -> dict[str, Any]:
    """A tiny server of the demo project on demo-net, from `source` (default: the tiny
    image), waited on until ACTIVE. If it ends in ERROR, the failure names Nova's fault
    and shows the tail of the compute and conductor logs."""
    args = (
        "server",
        "create",
        *(source or ("--image", "dietstack-tiny")),
        "--flavor",
        "m1.tiny",
        "--network",
        "demo-net",
        "--wait",
        name,
        "-f",
        "json",
    )
    command = [shutil.which("openstack") or "openstack", "--os-cloud", "demo", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"server {name}: {result.stderr}\n{server_failure(name)}"
    return dict(json.loads(result.stdout))


def server_failure(name: str) -> str:
    """What Nova says went wrong with a server, and the tail of the logs that say why."""
    fault = openstack("demo", "server", "show", name, "-c", "fault", "-f", "value", check=False)
    return f"fault: {fault}\n" + log_tails(40, "nova-compute", "nova-conductor", "neutron-server")


def log_tails(lines: int, *containers: str) -> str:
    """The last lines of each container's log, each under its name."""
    logs = []
    for container in containers:
        tail = subprocess.run(
            ["docker", "logs", "--tail", str(lines), container], capture_output=True, text=True
        )
        logs.append(f"--- {container}\n{tail.stdout}{tail.stderr}")
    return "\n".join(logs)


def floating_ip_failure(server: str) -> str:
    """Why a server's floating IP may not answer: its console, OVN's routers and
    their NAT rules, the chassis' port bindings and the tail of ovn-controller's log."""
    console = openstack("demo", "console", "log", "show", "--lines", "30", server, check=False)
    commands = {
        "ovn-nb-db": ["ovn-nbctl", "--db=unix:/run/ovn/ovnnb_db.sock", "show"],
        "ovn-sb-db": ["ovn-sbctl", "--db=unix:/run/ovn/ovnsb_db.sock", "show"],
    }
    shown = [f"--- console of {server}\n{console}"]
    for container, command in commands.items():
        result = subprocess.run(
            ["docker", "exec", container, *command], capture_output=True, text=True
        )
        shown.append(f"--- {' '.join(command[:1])} show\n{result.stdout}{result.stderr}")
    shown.append(log_tails(30, "ovn-controller", "neutron-server"))
    return "\n".join(shown)


def container_ids(runtime: DockerRuntime) -> dict[str, str]:
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label={LABEL_CONTAINER}",
            "--format",
            "{{.Names}} {{.ID}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines())


def wait_until(what: str, check: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(3)
    raise AssertionError(f"timed out waiting for {what}")


def demo(*args: str, check: bool = True) -> Any:
    """The openstack client as the demo user."""
    return openstack("demo", *args, check=check)


def volume_status(kind: str, ident: str, client: Callable[..., Any] = demo) -> str:
    return str(client(kind, "show", ident, "-f", "json")["status"])


def wait_for_status(kind: str, ident: str, wanted: str, client: Callable[..., Any] = demo) -> None:
    def reached() -> bool:
        status = volume_status(kind, ident, client)
        assert "error" not in status, f"{kind} {ident} went to {status}"
        return status == wanted

    wait_until(f"{kind} {ident} to be {wanted}", reached)


def test_deploy_showed_progress_per_step(cloud: Path) -> None:
    result = run_dietstack("plan", config=cloud)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("0 change(s).")


def test_status_reports_everything_up(cloud: Path) -> None:
    result = run_dietstack("status", config=cloud)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("keystone", "nova-api", "neutron-server", "heat-api", "ovn-northd", "horizon"):
        assert name in result.stdout
    # Daemons that share a process with another report apart.
    for name in ("nova-scheduler", "cinder-scheduler", "heat-engine"):
        assert re.search(rf"^{name} +serving$", result.stdout, re.M), result.stdout


def test_every_endpoint_serves_https_only_with_a_certificate_of_the_clouds_ca(
    cloud: Path, tmp_path: Path
) -> None:
    """What `dietstack ca` prints verifies every catalog endpoint and the console proxy
    by address; plain HTTP gets no answer there; clouds.yaml and openrc name the CA, so
    the client (and openstacksdk below it) verify without --insecure."""
    given = run_dietstack("ca", config=cloud)
    assert given.returncode == 0, given.stderr
    ca = tmp_path / "ca.pem"
    ca.write_text(given.stdout)
    endpoints = openstack("admin", "endpoint", "list", "-f", "json")
    urls = {str(e["URL"]).split("%")[0].rstrip("/") for e in endpoints}
    env = deployed_env(cloud)
    urls.add(f"https://{env.control_ip}:6080/vnc_lite.html")
    assert len(urls) >= 9  # eight services in the catalog, and the console proxy
    for url in sorted(urls):
        assert url.startswith(f"https://{env.control_ip}:"), url
        answer = requests.get(url + "/", verify=str(ca), timeout=60)
        assert answer.status_code < 500, (url, answer.status_code)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https://", "http://", 1) + "/", timeout=30)
    clouds = yaml.safe_load(Path("/etc/openstack/clouds.yaml").read_text())["clouds"]
    for name in ("admin", "demo"):
        assert Path(clouds[name]["cacert"]).read_text() == given.stdout
        assert clouds[name].get("verify", True) is True
    exports = run_dietstack("openrc", "demo", config=cloud).stdout
    assert "export OS_CACERT=/etc/openstack/dietstack-ca.pem" in exports
    import openstack as sdk

    with sdk.connect(cloud="demo") as conn:
        assert conn.session.verify == clouds["demo"]["cacert"]
        assert isinstance([image.name for image in conn.image.images()], list)


def test_the_client_refuses_the_cloud_without_its_ca(cloud: Path, tmp_path: Path) -> None:
    """The certificate is the cloud's own: a client that does not trust its CA stops."""
    clouds = yaml.safe_load(Path("/etc/openstack/clouds.yaml").read_text())
    del clouds["clouds"]["demo"]["cacert"]
    untrusting = tmp_path / "clouds.yaml"
    untrusting.write_text(yaml.safe_dump(clouds))
    result = subprocess.run(
        [shutil.which("openstack") or "openstack", "--os-cloud", "demo", "token", "issue"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(untrusting)},
    )
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr or "SSL" in result.stderr, result.stderr


def deployed_env(cloud: Path) -> Env:
    """The settings the containers were rendered with (no secrets needed here)."""
    data_dir = Path(yaml.safe_load(cloud.read_text()).get("data_dir", "/var/lib/dietstack"))
    rendered = yaml.safe_load((data_dir / "config" / "settings.yaml").read_text())
    return Env(rendered, secrets.placeholder())


def test_a_stranger_on_the_lan_reaches_only_user_ports(cloud: Path, runtime: DockerRuntime) -> None:
    """A namespace routed through this host (not a node) probes every port DietStack's
    containers listen on, at every address of the host."""
    env = deployed_env(cloud)
    listening = exposure.listening(runtime)
    targets = exposure.targets(env, listening, exposure.host_addresses(hostnet.probe()))
    with stranger.lan_stranger("ds-itest-stranger", "ds-itest-lan") as namespace:
        seen = stranger.probe_from(namespace, targets)
    print(f"{len(targets)} targets; the stranger reached: {' '.join(map(str, seen))}")
    assert exposure.forbidden(env, seen, listening) == []
    # The probe itself works: every user port listening on the management address answers.
    user = {port for port in exposure.user_ports(env) if port in listening}
    assert {t.port for t in seen if t.address == env.ip} == user


#: The image that applies the firewall, noted while the cloud runs (for after destroy).
FIREWALL_IMAGE: dict[str, str] = {}


def nft_tables(runtime: DockerRuntime) -> str:
    """`nft list tables` on the host (which may have no nft), from the firewall's image."""
    if "tag" not in FIREWALL_IMAGE:
        state = runtime.state("firewall")
        assert state is not None, "the firewall container is missing"
        FIREWALL_IMAGE["tag"] = state.labels[LABEL_IMAGE_TAG]
    command = ["docker", "run", "--rm", "--network", "host", "--cap-add", "NET_ADMIN"]
    result = subprocess.run(
        [*command, FIREWALL_IMAGE["tag"], "--", "nft", "list", "tables"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_firewall_table_comes_back_when_removed(cloud: Path, runtime: DockerRuntime) -> None:
    """A host firewall reload (`nft flush ruleset`) must not leave the ports open."""
    reapplied = "applying it again"
    before = runtime.logs_tail("firewall", lines=1000).count(reapplied)
    # The delete succeeding proves the table was there and is gone; listing the
    # tables afterwards could race the container's own check and see it back.
    removed = runtime.exec("firewall", ["nft", "delete", "table", "inet", firewall.TABLE])
    assert removed[0] == 0, removed[1]
    wait_until(
        "the firewall container to notice and apply its table again",
        lambda: (
            runtime.logs_tail("firewall", lines=1000).count(reapplied) > before
            and f"inet {firewall.TABLE}" in nft_tables(runtime)
        ),
        timeout=60,
    )


def test_token_for_the_demo_user(cloud: Path) -> None:
    token = openstack("demo", "token", "issue", "-f", "json")
    assert token["id"] and token["project_id"]


def test_memcached_down_or_restarted_fails_no_login(cloud: Path) -> None:
    """Keystone caches in memcached. While memcached is stopped, and once it is
    back (each of Keystone's threads then holds a dead connection), logins and a
    write that clears the cache (a project update), many at once so every thread
    serves some, all succeed: a cache that cannot be reached is a miss."""
    from concurrent.futures import ThreadPoolExecutor

    import openstack as sdk

    def login_and_write(index: int) -> str:
        with sdk.connect(cloud="admin") as conn:
            conn.authorize()
            conn.identity.update_project(
                conn.identity.find_project("demo"), description=f"itest {index}"
            )
            return "ok"

    def all_succeed() -> None:
        with ThreadPoolExecutor(8) as pool:
            for _ in range(2):
                results = [pool.submit(login_and_write, i) for i in range(8)]
                assert [r.result() for r in results] == ["ok"] * 8

    subprocess.run(["docker", "stop", "memcached"], check=True, capture_output=True)
    try:
        all_succeed()
    finally:
        subprocess.run(["docker", "start", "memcached"], check=True, capture_output=True)
    all_succeed()
    subprocess.run(["docker", "restart", "memcached"], check=True, capture_output=True)
    all_succeed()
    time.sleep(6)  # past the client's wait before it tries memcached again
    all_succeed()


def test_project_user_and_role_assignment(cloud: Path) -> None:
    openstack("admin", "project", "create", "itest-project")
    openstack("admin", "user", "create", "--password", "itest-Passw0rd", "itest-user")
    openstack(
        "admin", "role", "add", "--project", "itest-project", "--user", "itest-user", "member"
    )
    assignments = openstack(
        "admin",
        "role",
        "assignment",
        "list",
        "--user",
        "itest-user",
        "--project",
        "itest-project",
        "--names",
        "-f",
        "json",
    )
    assert [a["Role"] for a in assignments] == ["member"]


def test_image_upload_and_download_are_identical(cloud: Path, tmp_path: Path) -> None:
    original = tmp_path / "image.raw"
    original.write_bytes(os.urandom(5 * 1024 * 1024 + 7))
    openstack(
        "demo",
        "image",
        "create",
        "--file",
        str(original),
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "itest-image",
    )
    back = tmp_path / "back.raw"
    openstack("demo", "image", "save", "--file", str(back), "itest-image")
    assert back.read_bytes() == original.read_bytes()


def test_network_subnet_and_router_on_ovn(cloud: Path) -> None:
    openstack("demo", "network", "create", "itest-net")
    openstack(
        "demo",
        "subnet",
        "create",
        "--network",
        "itest-net",
        "--subnet-range",
        "10.66.0.0/24",
        "itest-subnet",
    )
    openstack("demo", "router", "create", "itest-router")
    openstack("demo", "router", "add", "subnet", "itest-router", "itest-subnet")
    ports = openstack("demo", "port", "list", "--router", "itest-router", "-f", "json")
    assert len(ports) == 1
    public = openstack("admin", "network", "show", "public", "-f", "json")
    assert public["router:external"] is True


def test_compute_services_are_up(cloud: Path) -> None:
    services = openstack("admin", "compute", "service", "list", "-f", "json")
    up = {s["Binary"] for s in services if s["State"] == "up"}
    assert {"nova-conductor", "nova-scheduler"} <= up


def test_volume_services_keep_reporting_from_their_one_process(cloud: Path) -> None:
    """cinder-scheduler and cinder-volume share the cinder-volume container's process:
    each keeps reporting to the service list, not only when it started."""
    started = parse_time(inspect("cinder-volume", "{{.State.StartedAt}}"))

    def reported_after_start() -> set[str]:
        services = openstack("admin", "volume", "service", "list", "-f", "json")
        return {
            s["Binary"]
            for s in services
            if s["State"] == "up"
            and parse_time(s["Updated At"]) > started + datetime.timedelta(seconds=30)
        }

    wait_until(
        "cinder-scheduler and cinder-volume to report again after their start",
        lambda: reported_after_start() >= {"cinder-scheduler", "cinder-volume"},
        timeout=150,
    )


def test_orchestration_service_is_up(cloud: Path) -> None:
    services = openstack("admin", "orchestration", "service", "list", "-f", "json")
    assert any(s["Binary"] == "heat-engine" and s["Status"] == "up" for s in services)


def test_heat_stack_of_neutron_resources(cloud: Path) -> None:
    template = str(DATA / "network-stack.yaml")
    openstack("demo", "stack", "create", "-t", template, "--wait", "itest-stack")
    stack = openstack("demo", "stack", "show", "itest-stack", "-f", "json")
    assert stack["stack_status"] == "CREATE_COMPLETE"
    openstack("demo", "stack", "delete", "--yes", "--wait", "itest-stack")
    assert "itest-stack" not in openstack("demo", "stack", "list")


def test_openrc_exports_work_with_the_client(cloud: Path) -> None:
    exports = run_dietstack("openrc", "demo", config=cloud).stdout
    client = shutil.which("openstack") or "openstack"
    result = subprocess.run(
        ["bash", "-c", f'{exports}\n"{client}" token issue -f value -c project_id'],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("OS_")},
    )
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


def test_redeploy_recreates_nothing_and_keeps_data(cloud: Path, runtime: DockerRuntime) -> None:
    before = container_ids(runtime)
    started = time.monotonic()
    result = run_dietstack("deploy", config=cloud)
    print(f"no-change redeploy took {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr[-3000:]
    for word in (": create (", ": recreate (", ": run (", ": start ("):
        assert word not in result.stderr
    assert container_ids(runtime) == before
    assert "itest-project" in openstack("admin", "project", "list")
    assert "itest-image" in openstack("demo", "image", "list")


def test_settings_without_the_clouds_secrets_are_refused(cloud: Path, tmp_path: Path) -> None:
    """The same data_dir from a settings file elsewhere: no secrets, or another cloud's."""
    other = tmp_path / "settings.yaml"
    other.write_text(cloud.read_text())
    refused = run_dietstack("deploy", config=other)
    assert refused.returncode != 0 and "holds a DietStack cloud" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["settings.yaml"]
    (tmp_path / "secrets.yaml").write_text(yaml.safe_dump({"mariadb_root_password": "x" * 32}))
    refused = run_dietstack("deploy", config=other)
    assert refused.returncode != 0 and "belong to another cloud" in refused.stderr, refused.stderr
    assert run_dietstack("status", config=cloud).returncode == 0


def test_a_users_certificate_that_misses_the_management_address_is_refused_first(
    cloud: Path, runtime: DockerRuntime, tmp_path: Path
) -> None:
    """A certificate of the user's for a name only: deploy lists what is wrong and
    changes nothing (no secret, no container)."""
    env = deployed_env(cloud)
    ca_key, ca = publictls.public_ca()
    key, cert = publictls.server_certificate(ca_key, ca, publictls.Names.of(["cloud.example"]))
    for name, text in (("cert.pem", cert), ("key.pem", key), ("ca.pem", ca)):
        (tmp_path / name).write_text(text)
    settings = yaml.safe_load(cloud.read_text()) or {}
    settings |= {
        "dashboard_names": ["cloud.example"],
        "tls_certificate": str(tmp_path / "cert.pem"),
        "tls_private_key": str(tmp_path / "key.pem"),
        "tls_ca_certificate": str(tmp_path / "ca.pem"),
    }
    mine = tmp_path / "etc"
    mine.mkdir()
    (mine / "settings.yaml").write_text(yaml.safe_dump(settings))
    held = (cloud.parent / "secrets.yaml").read_text()
    (mine / "secrets.yaml").write_text(held)
    (mine / "secrets.yaml").chmod(0o600)
    before = container_ids(runtime)
    refused = run_dietstack("deploy", config=mine / "settings.yaml")
    assert refused.returncode != 0, refused.stdout
    assert f"tls_certificate does not cover {env.control_ip}" in refused.stderr, refused.stderr
    assert "nothing was changed" in refused.stderr and "Traceback" not in refused.stderr
    assert container_ids(runtime) == before
    assert (mine / "secrets.yaml").read_text() == held


def test_config_show_and_plan_write_nothing(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    for command in (("config", "show"), ("plan",), ("deploy", "--dry-run")):
        result = run_dietstack(*command, config=config)
        assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["settings.yaml"]


def test_stopped_container_is_reported_and_restarted(cloud: Path, runtime: DockerRuntime) -> None:
    runtime.stop("heat-api")
    status = run_dietstack("status", config=cloud)
    assert status.returncode == 1 and "heat-api" in status.stdout
    result = run_dietstack("deploy", config=cloud)
    assert result.returncode == 0 and "heat-api: start (" in result.stderr
    status = run_dietstack("status", config=cloud)
    assert status.returncode == 0, status.stdout + status.stderr


def test_compute_host_and_agents_are_up(cloud: Path) -> None:
    hypervisors = openstack("admin", "hypervisor", "list", "-f", "json")
    assert len(hypervisors) == 1 and hypervisors[0]["State"] == "up"
    agents = openstack("admin", "network", "agent", "list", "-f", "json")
    alive = {agent["Agent Type"] for agent in agents if agent["Alive"]}
    assert {"OVN Controller Gateway agent", "OVN Metadata agent"} <= alive
    volumes = openstack("admin", "volume", "service", "list", "-f", "json")
    assert any(s["Binary"] == "cinder-volume" and s["State"] == "up" for s in volumes)


def test_tiny_image_is_added_once(cloud: Path) -> None:
    first = run_dietstack("image", "add", "tiny", config=cloud)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_dietstack("image", "add", "tiny", config=cloud)
    assert again.returncode == 0 and "Already there" in again.stdout
    images = openstack("demo", "image", "list", "--name", "dietstack-tiny", "-f", "json")
    assert len(images) == 1


def served_certificate(address: str, port: int, client: tuple[str, str] | None = None) -> bytes:
    """The DER certificate a TLS server presents (with a client certificate, PEM
    (key, cert), where it asks for one)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with tempfile.TemporaryDirectory() as scratch:
        if client:
            key, cert = Path(scratch, "key.pem"), Path(scratch, "cert.pem")
            key.write_text(client[0])
            cert.write_text(client[1])
            context.load_cert_chain(cert, key)
        with (
            socket.create_connection((address, port), timeout=15) as plain,
            context.wrap_socket(plain) as tls,
        ):
            served = tls.getpeercert(binary_form=True)
    assert served is not None
    return served


def guest_processes(runtime: DockerRuntime) -> list[str]:
    """The QEMU processes in the libvirt container (one per running guest)."""
    script = (
        'for p in /proc/[0-9]*; do case "$(cat $p/comm 2>/dev/null)" in '
        "qemu-system*) echo ${p#/proc/};; esac; done"
    )
    code, out = runtime.exec("libvirt", ["sh", "-c", script])
    assert code == 0, out
    return out.split()


def der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem)


def test_certs_renew_keeps_the_guests_running_and_serves_new_certificates(
    cloud: Path, runtime: DockerRuntime
) -> None:
    env = deployed_env(cloud)
    address, node = env.control_ip, env.node
    secrets_file = cloud.parent / "secrets.yaml"
    before = yaml.safe_load(secrets_file.read_text())
    demo_server("itest-renew")
    try:
        libvirt_id = container_ids(runtime)["libvirt"]
        guests = guest_processes(runtime)
        assert guests, "no guest runs"
        renewed = run_dietstack("certs", "renew", config=cloud)
        assert renewed.returncode == 0, renewed.stdout[-3000:] + renewed.stderr[-3000:]
        after = yaml.safe_load(secrets_file.read_text())
        # The CAs stay: nothing a client trusts changes.
        for name in ("tls_ca_certificate", "libvirt_ca_certificate"):
            assert after[name] == before[name], name
        # The APIs present the new certificate, which verifies with the same CA.
        assert served_certificate(address, 5000) == der(after["tls_server_certificate"])
        assert served_certificate(address, 5000) != der(before["tls_server_certificate"])
        # libvirt was not made anew, its guest kept running, and it presents the node's
        # new certificate.
        assert container_ids(runtime)["libvirt"] == libvirt_id
        assert guest_processes(runtime) == guests
        client = (after[f"libvirt_{node}_key"], after[f"libvirt_{node}_certificate"])
        assert served_certificate(address, 16514, client) == der(client[1])
        status = openstack("demo", "server", "show", "itest-renew", "-f", "json")["status"]
        assert status == "ACTIVE"
        listing = run_dietstack("certs", "list", config=cloud)
        assert listing.returncode == 0 and "node " in listing.stdout, listing.stderr
        plan = run_dietstack("plan", config=cloud)
        assert plan.stdout.strip().endswith("0 change(s)."), plan.stdout
    finally:
        openstack("demo", "server", "delete", "--wait", "itest-renew", check=False)


def stop_docker_daemon() -> None:
    """Stop the Docker engine as an operator or a reboot would: its containers stop too."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "stop", "docker.socket", "docker"], check=True)
        return
    pid = int(Path("/var/run/docker.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_until("dockerd to exit", lambda: process_ended(pid), timeout=120)


def process_ended(pid: int) -> bool:
    """Gone, or a zombie (whose parent has not collected it yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def running_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "--filter", f"label={LABEL_CONTAINER}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def in_demo_console(server: str) -> str:
    return str(openstack("demo", "console", "log", "show", server))


def test_stop_then_start_across_a_docker_restart_brings_back_what_ran(cloud: Path) -> None:
    """Two running instances and one shut off: stop shuts the two down cleanly (their
    guests see the power button) and stops every container, which stay stopped when
    the Docker engine restarts (as at a reboot); start brings back exactly the two."""
    names = ["itest-power-1", "itest-power-2", "itest-power-off"]
    data_dir = Path(yaml.safe_load(cloud.read_text())["data_dir"])
    try:
        ids = {}
        for name in names:
            ids[name] = demo_server(name)["id"]
        openstack("demo", "server", "stop", names[2])
        wait_until(
            "the third server to be shut off",
            lambda: (
                openstack("demo", "server", "show", names[2], "-f", "json")["status"] == "SHUTOFF"
            ),
        )
        for name in names[:2]:
            wait_until(
                f"{name} to boot",
                lambda n=name: "DIETSTACK-TINY ip=" in in_demo_console(n),
            )
        started = time.monotonic()
        stopped = run_dietstack("stop", config=cloud)
        print(stopped.stdout, stopped.stderr[-3000:])
        print(f"stop took {time.monotonic() - started:.0f} s")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr[-3000:]
        assert "with 2 instance(s)" in stopped.stdout
        assert running_containers() == []
        for name in names[:2]:
            log = data_dir / "nova" / "instances" / ids[name] / "console.log"
            assert "DIETSTACK-TINY shutdown=acpi" in log.read_text(errors="replace"), name
        stop_docker_daemon()
        ensure_docker(print)
        time.sleep(5)
        assert running_containers() == [], "stopped containers came back with Docker"
        started = time.monotonic()
        result = run_dietstack("start", config=cloud)
        print(result.stdout, result.stderr[-2000:])
        print(f"start took {time.monotonic() - started:.0f} s")
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        assert "2 of 2 instance(s)" in result.stdout
        statuses = {
            name: openstack("demo", "server", "show", name, "-f", "json")["status"]
            for name in names
        }
        assert statuses == dict(zip(names, ["ACTIVE", "ACTIVE", "SHUTOFF"], strict=True))
        assert run_dietstack("status", config=cloud).returncode == 0
    finally:
        for name in names:
            openstack("demo", "server", "delete", "--wait", name, check=False)


def power_loss() -> None:
    """What a power cut does to the cloud: every container's processes, containerd
    and the Docker engine killed at once, with no shutdown of anything."""
    pids = [inspect(name, "{{.State.Pid}}") for name in running_containers()]
    daemons = subprocess.run(
        ["pgrep", "-x", "-d", " ", "dockerd|containerd|containerd-shim.*"],
        capture_output=True,
        text=True,
    ).stdout.split()
    subprocess.run(["kill", "-9", *pids, *daemons], check=False)
    time.sleep(2)


def inspect(name: str, template: str) -> str:
    result = subprocess.run(
        ["docker", "inspect", "-f", template, name], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def main_process(name: str) -> int:
    """The service's process: the first child of the container's tini. Daemons that
    detach later (libvirt's virtlogd) are its children too, started after it."""
    tini = int(inspect(name, "{{.State.Pid}}"))
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == tini:
            # fields[19] is the start time, in clock ticks since boot.
            children.append((int(fields[19]), int(stat.parent.name)))
    assert children, f"{name}: its tini ({tini}) has no child"
    return min(children)[1]


def test_every_container_comes_back_when_its_main_process_is_killed(cloud: Path) -> None:
    """SIGKILL to each service's process, one container after the other: Docker restarts
    each (as it restarts them all when the engine or the host restarts, which the
    stop and start test does with a stopped cloud); then the whole cloud is healthy
    again, and the verify test after the restore proves the data plane works."""
    names = running_containers()
    assert len(names) > 20, names
    for name in names:
        before = inspect(name, "{{.State.StartedAt}}")
        os.kill(main_process(name), signal.SIGKILL)
        wait_until(
            f"{name} to be restarted",
            lambda n=name, b=before: (
                inspect(n, "{{.State.Running}} {{.State.StartedAt}}")
                not in (f"true {b}", f"false {b}")
                and inspect(n, "{{.State.Running}}") == "true"
            ),
            timeout=120,
        )
    wait_until(
        "every container healthy and every API answering",
        lambda: run_dietstack("status", config=cloud).returncode == 0,
        timeout=600,
    )


def test_a_running_but_broken_container_ends_and_is_restarted(cloud: Path) -> None:
    """The firewall's service is frozen (its process group: the container's watcher
    runs on) and its table deleted: the container keeps running while its check
    fails, until after a few failures the watcher ends the container, so Docker's
    restart policy brings it back, table and all. Docker runs no check of its own."""
    assert inspect("firewall", "{{json .Config.Healthcheck}}") in ("null", "{}")
    before = inspect("firewall", "{{.State.StartedAt}}")
    wait_until("the firewall's watcher to find it healthy", lambda: health("firewall") == "healthy")
    service = main_process("firewall")
    tini = int(inspect("firewall", "{{.State.Pid}}"))
    assert os.getpgid(service) != os.getpgid(tini)
    os.killpg(os.getpgid(service), signal.SIGSTOP)
    subprocess.run(
        ["docker", "exec", "firewall", "nft", "delete", "table", "inet", firewall.TABLE],
        check=True,
    )
    wait_until(
        "the firewall's watcher to find it unhealthy",
        lambda: health("firewall") == "unhealthy",
        timeout=240,
    )
    shown = run_dietstack("status", config=cloud)
    row = next(line for line in shown.stdout.splitlines() if line.startswith("firewall "))
    assert shown.returncode != 0 and "healthy" not in row.replace("unhealthy", ""), row
    wait_until(
        "the firewall to be restarted by its watcher",
        lambda: inspect("firewall", "{{.State.StartedAt}}") != before,
        timeout=400,
    )
    # The watcher's lines, ending with why it ended the container.
    print(DockerRuntime.connect().logs_tail("firewall"))
    wait_until(
        "the firewall to be healthy again",
        lambda: health("firewall") == "healthy",
        timeout=300,
    )
    tables = subprocess.run(
        ["docker", "exec", "firewall", "nft", "list", "tables"], capture_output=True, text=True
    ).stdout
    assert f"inet {firewall.TABLE}" in tables, tables


def health(name: str) -> str:
    """The container's health as deploy and status read it: its watcher's verdict."""
    state = DockerRuntime.connect().state(name)
    return (state.health or "-") if state else "missing"


def what_the_cloud_holds() -> dict[str, list[Any]]:
    """What a restore must bring back, as the admin's client lists it."""

    def rows(*what: str) -> list[dict[str, Any]]:
        return list(openstack("admin", *what, "-f", "json"))

    return {
        "projects": sorted(row["Name"] for row in rows("project", "list")),
        "users": sorted(row["Name"] for row in rows("user", "list")),
        "images": sorted((row["ID"], row["Name"], row["Status"]) for row in rows("image", "list")),
        "networks": sorted((row["ID"], row["Name"]) for row in rows("network", "list")),
        "routers": sorted(
            (row["ID"], row["Name"], row["Status"]) for row in rows("router", "list")
        ),
        "floating ips": sorted(
            (row["Floating IP Address"], row["Port"]) for row in rows("floating ip", "list")
        ),
        "security groups": sorted(
            (row["ID"], row["Name"]) for row in rows("security group", "list")
        ),
        "volumes": sorted(
            (row["ID"], row["Name"], row["Size"])
            for row in rows("volume", "list", "--all-projects")
        ),
        "flavors": sorted((row["ID"], row["Name"]) for row in rows("flavor", "list", "--all")),
        "stacks": sorted(
            (row["ID"], row["Stack Name"], row["Stack Status"])
            for row in openstack("demo", "stack", "list", "-f", "json")
        ),
        "servers": sorted(
            (row["ID"], row["Name"], row["Status"])
            for row in rows("server", "list", "--all-projects")
        ),
    }


def test_backup_then_destroy_data_then_restore_brings_the_cloud_back(
    cloud: Path, tmp_path: Path
) -> None:
    """A user with a password, a flavor, a security group, a stack, and a server
    booted from a volume with a floating IP: all back after destroy --data and
    restore, the server running and answering. The verify test after this one
    proves the restored cloud works."""
    archive = tmp_path / "cloud.tar.gz"
    password = secrets.generate()
    root = ""
    try:
        openstack(
            "admin", "user", "create", "--project", "demo", "--password", password, "itest-restored"
        )
        openstack("admin", "role", "add", "--user", "itest-restored", "--project", "demo", "member")
        openstack("admin", "flavor", "create", "--ram", "64", "--disk", "1", "itest-restored")
        openstack("demo", "security group", "create", "itest-restored")
        openstack(
            "demo",
            "stack",
            "create",
            "-t",
            str(DATA / "network-stack.yaml"),
            "--wait",
            "itest-restored",
        )
        root = openstack(
            "demo",
            "volume",
            "create",
            "--image",
            "dietstack-tiny",
            "--size",
            "1",
            "itest-restored-root",
            "-f",
            "json",
        )["id"]
        wait_for_status("volume", root, "available")
        demo_server("itest-restored", "--volume", root)
        address = openstack("demo", "floating ip", "create", "public", "-f", "json")[
            "floating_ip_address"
        ]
        openstack("demo", "server", "add", "floating", "ip", "itest-restored", address)
        try:
            wait_until(f"{address} to answer ping", lambda: ping(address), timeout=180)
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n{floating_ip_failure('itest-restored')}") from None
        before = what_the_cloud_holds()
        started = time.monotonic()
        taken = run_dietstack("backup", "--volumes", str(archive), config=cloud)
        print(taken.stdout, taken.stderr[-2000:])
        assert taken.returncode == 0, taken.stdout + taken.stderr[-3000:]
        print(f"backup took {time.monotonic() - started:.0f} s, {archive.stat().st_size} bytes")
        assert archive.stat().st_mode & 0o777 == 0o600 and "keep it private" in taken.stdout
        gone = run_dietstack("destroy", "--data", "--yes", config=cloud)
        assert gone.returncode == 0, gone.stderr
        started = time.monotonic()
        restored = run_dietstack("restore", str(archive), config=cloud)
        print(restored.stdout, restored.stderr[-3000:])
        print(f"restore took {time.monotonic() - started:.0f} s")
        assert restored.returncode == 0, restored.stdout + restored.stderr[-5000:]
        after = what_the_cloud_holds()
        for kind in before:
            assert after[kind] == before[kind], kind
        assert (
            openstack("demo", "server", "show", "itest-restored", "-f", "json")["status"]
            == "ACTIVE"
        )
        wait_until(f"{address} to answer ping again", lambda: ping(address), timeout=300)
        token = subprocess.run(
            [
                shutil.which("openstack") or "openstack",
                "--os-cloud",
                "demo",
                "--os-username",
                "itest-restored",
                "--os-password",
                password,
                "token",
                "issue",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert token.returncode == 0, token.stderr
        again = run_dietstack("restore", str(archive), config=cloud)
        assert again.returncode != 0 and "runs on this host" in again.stderr, again.stderr
    finally:
        openstack("demo", "server", "delete", "--wait", "itest-restored", check=False)
        for floating in openstack("demo", "floating ip", "list", "-f", "json"):
            openstack("demo", "floating ip", "delete", floating["ID"], check=False)
        openstack("demo", "stack", "delete", "--yes", "--wait", "itest-restored", check=False)
        if root:
            wait_until(
                "the root volume to be free",
                lambda: volume_status("volume", root) in ("available", "error"),
            )
            openstack("demo", "volume", "delete", root, check=False)
        openstack("demo", "security group", "delete", "itest-restored", check=False)
        openstack("admin", "flavor", "delete", "itest-restored", check=False)
        openstack("admin", "user", "delete", "itest-restored", check=False)


def test_verify_runs_every_step(cloud: Path) -> None:
    result = run_dietstack("verify", config=cloud)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    rows = [line for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert len(rows) == 6 and all(" ok " in row for row in rows)
    assert openstack("demo", "server", "list", "-f", "json") == []


def test_volume_lifecycle_and_boot_from_volume(cloud: Path) -> None:
    """From image, extend, snapshot, from snapshot, boot from it; all on NFS."""
    made = openstack(
        "demo",
        "volume",
        "create",
        "--image",
        "dietstack-tiny",
        "--size",
        "1",
        "itest-root",
        "-f",
        "json",
    )
    root = made["id"]
    wait_for_status("volume", root, "available")
    # A name lookup needs Cinder's filter list (a project user may filter by name).
    assert openstack("demo", "volume", "show", "itest-root", "-f", "json")["id"] == root
    openstack("demo", "volume", "set", "--size", "2", root)
    wait_until(
        "the volume to grow",
        lambda: (
            volume_status("volume", root) == "available"
            and openstack("demo", "volume", "show", root, "-f", "json")["size"] == 2
        ),
    )
    snap = openstack(
        "demo", "volume", "snapshot", "create", "--volume", root, "itest-snap", "-f", "json"
    )["id"]
    wait_for_status("volume snapshot", snap, "available")
    copy = openstack("demo", "volume", "create", "--snapshot", snap, "itest-copy", "-f", "json")[
        "id"
    ]
    wait_for_status("volume", copy, "available")
    openstack(
        "demo",
        "server",
        "create",
        "--volume",
        copy,
        "--flavor",
        "m1.tiny",
        "--network",
        "demo-net",
        "--wait",
        "itest-bfv",
    )
    wait_until(
        "the volume-backed guest to read its metadata",
        lambda: (
            "DIETSTACK-TINY metadata=ok" in openstack("demo", "console", "log", "show", "itest-bfv")
        ),
    )
    openstack("demo", "server", "delete", "--wait", "itest-bfv")
    wait_for_status("volume", copy, "available")
    openstack("demo", "volume", "delete", copy)
    openstack("demo", "volume", "snapshot", "delete", snap)
    wait_until(
        "the snapshot to go",
        lambda: openstack("demo", "volume", "snapshot", "list", "-f", "json") == [],
    )
    openstack("demo", "volume", "delete", root)
    wait_until("the volumes to go", lambda: openstack("demo", "volume", "list", "-f", "json") == [])


@contextmanager
def tiny_guest(name: str, key_file: Path, *source: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A tiny guest booted with the key pair itest-key from `source` (default: the
    tiny image), on a floating IP, answering SSH; deleted (with the IP) afterwards."""
    source = source or ("--image", "dietstack-tiny")
    try:
        server = openstack(
            "demo",
            "server",
            "create",
            *source,
            "--flavor",
            "m1.tiny",
            "--network",
            "demo-net",
            "--key-name",
            "itest-key",
            "--wait",
            name,
            "-f",
            "json",
        )
        address = openstack("demo", "floating ip", "create", "public", "-f", "json")[
            "floating_ip_address"
        ]
        openstack("demo", "server", "add", "floating", "ip", name, address)
        ssh_wait = 300
        try:
            wait_until(
                "the guest to start its SSH server",
                lambda: "DIETSTACK-TINY ssh=ok" in in_demo_console(name),
                timeout=ssh_wait,
            )
        except AssertionError:
            # Not in_demo_console: a failing console call must not hide the timeout.
            console = openstack("demo", "console", "log", "show", name, check=False)
            raise AssertionError(
                f"{name} started no SSH server within {ssh_wait} s; "
                f"its console ends:\n{console[-3000:]}"
            ) from None
        yield address, server
    finally:
        openstack("demo", "server", "delete", "--wait", name, check=False)
        for floating in openstack("demo", "floating ip", "list", "-f", "json"):
            openstack("demo", "floating ip", "delete", floating["ID"], check=False)


@pytest.fixture
def key_file(tmp_path: Path) -> Iterator[Path]:
    """The demo user's key pair itest-key; its private half in this file."""
    path = tmp_path / "itest-key"
    openstack("demo", "keypair", "delete", "itest-key", check=False)
    openstack("demo", "keypair", "create", "--private-key", str(path), "itest-key")
    yield path
    openstack("demo", "keypair", "delete", "itest-key", check=False)


def ssh(address: str, key_file: Path, command: str) -> str:
    """Run a command as root in a guest (retrying until SSH answers); its output."""
    key = paramiko.PKey.from_path(key_file)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a fresh guest's key
    wait_until("SSH to accept the key", lambda: connect(client, address, key), timeout=180)
    try:
        _, stdout, _ = client.exec_command(command, timeout=60)
        return str(stdout.read().decode())
    finally:
        client.close()


def test_tiny_guest_answers_ssh_takes_its_name_and_keeps_files(cloud: Path, key_file: Path) -> None:
    """SSH with the instance's key; the host name is the server's; what the guest
    writes (under / and /tmp) is on its disk after a hard reboot."""
    with tiny_guest("itest-ssh", key_file) as (address, server):
        metadata = ssh(
            address, key_file, "sudo curl -s http://169.254.169.254/openstack/latest/meta_data.json"
        )
        assert server["id"] in metadata
        assert ssh(address, key_file, "hostname").strip() == "itest-ssh"
        mounts = ssh(address, key_file, "cat /proc/mounts").splitlines()
        assert any(line.startswith("/dev/vda2 / ext4 rw,") for line in mounts), mounts
        ssh(address, key_file, f"echo {server['id']} >/root/kept; cp /root/kept /tmp/kept; sync")
        openstack("demo", "server", "reboot", "--hard", "--wait", "itest-ssh")
        kept = ssh(address, key_file, "cat /root/kept /tmp/kept")
        assert kept.split() == [server["id"], server["id"]]
        assert ssh(address, key_file, "hostname").strip() == "itest-ssh"


def test_volume_backed_guest_files_survive_a_snapshot(cloud: Path, key_file: Path) -> None:
    """Written in a volume-booted guest, read by a guest booted from a snapshot of it."""
    made = openstack(
        "demo", "volume", "create", "--image", "dietstack-tiny", "--size", "1", "itest-bfv-root",
        "-f", "json",
    )  # fmt: skip
    root, snap, copy = made["id"], "", ""
    try:
        wait_for_status("volume", root, "available")
        with tiny_guest("itest-bfv-1", key_file, "--volume", root) as (address, _):
            ssh(address, key_file, "echo written-before-the-snapshot >/root/kept; sync")
        wait_for_status("volume", root, "available")
        snap = openstack(
            "demo", "volume", "snapshot", "create", "--volume", root, "itest-bfv-snap", "-f", "json"
        )["id"]
        wait_for_status("volume snapshot", snap, "available")
        copy = openstack(
            "demo", "volume", "create", "--snapshot", snap, "itest-bfv-copy", "-f", "json"
        )["id"]
        wait_for_status("volume", copy, "available")
        with tiny_guest("itest-bfv-2", key_file, "--volume", copy) as (address, _):
            assert ssh(address, key_file, "cat /root/kept").strip() == "written-before-the-snapshot"
            assert ssh(address, key_file, "hostname").strip() == "itest-bfv-2"
    finally:
        # The guests are gone (with --wait), so their volumes are detached.
        if copy:
            openstack("demo", "volume", "delete", copy, check=False)
        if snap:
            openstack("demo", "volume", "snapshot", "delete", snap, check=False)
            wait_until("the snapshot to go", lambda: not openstack("demo", *SNAPSHOTS))
        openstack("demo", "volume", "delete", root, check=False)
        wait_until("the volumes to go", lambda: not openstack("demo", *VOLUMES))


SNAPSHOTS = ("volume", "snapshot", "list", "-f", "json")
VOLUMES = ("volume", "list", "-f", "json")


def test_tiny_guest_reads_a_config_drive(cloud: Path) -> None:
    """With a config drive attached, the guest takes its metadata (and name) from it."""
    try:
        openstack(
            "demo", "server", "create", "--image", "dietstack-tiny", "--flavor", "m1.tiny",
            "--network", "demo-net", "--config-drive", "True", "--wait", "itest-drive",
        )  # fmt: skip
        wait_until(
            "the guest to read its config drive",
            lambda: (
                "DIETSTACK-TINY metadata=ok source=config-drive"
                in openstack("demo", "console", "log", "show", "itest-drive")
            ),
        )
        log = openstack("demo", "console", "log", "show", "itest-drive")
        assert "DIETSTACK-TINY hostname=itest-drive" in log
    finally:
        openstack("demo", "server", "delete", "--wait", "itest-drive", check=False)


def connect(client: paramiko.SSHClient, address: str, key: paramiko.PKey) -> bool:
    try:
        client.connect(
            address, username="root", pkey=key, timeout=10, allow_agent=False, look_for_keys=False
        )
    except (paramiko.SSHException, OSError):
        return False
    return True


LAN = "ds-itest-lan"  # a network namespace standing in for the LAN's router
SPARE_NIC = "ds-itest-nic"  # the spare NIC: a veth whose far end is in that namespace


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def remove_lan() -> None:
    ip("netns", "delete", LAN, check=False)
    ip("link", "delete", SPARE_NIC, check=False)


def lan_pings(address: str) -> bool:
    """Ping from the LAN namespace, with the same ICMP code verify uses."""
    code = f"import sys; from dietstack.ops.icmp import ping; sys.exit(not ping({address!r}))"
    command = ["ip", "netns", "exec", LAN, sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True).returncode == 0


def print_lan_diagnostics(address: str) -> None:
    for command in (
        ["ip", "netns", "exec", LAN, "ip", "neigh"],
        ["docker", "exec", "openvswitch-vswitchd", "ovs-ofctl", "dump-ports", "br-ex"],
        ["docker", "exec", "ovn-sb-db", "ovn-sbctl", "find", "MAC_Binding", 'ip="172.24.4.1"'],
        ["docker", "logs", "--tail", "30", "openvswitch-vswitchd"],
    ):
        result = subprocess.run(command, capture_output=True, text=True)
        print(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")


def test_floating_ips_on_a_spare_nic(cloud: Path) -> None:
    """With external_interface set, floating IPs answer on that NIC's LAN, whose
    router owns the external network's first address; then back to one NIC."""
    single_nic = cloud.read_text()
    remove_lan()
    ip("netns", "add", LAN)
    try:
        ip("link", "add", SPARE_NIC, "type", "veth", "peer", "name", "lan0", "netns", LAN)
        ip("-n", LAN, "addr", "add", "172.24.4.1/24", "dev", "lan0")
        ip("-n", LAN, "link", "set", "lan0", "up")
        settings = yaml.safe_load(single_nic) | {"external_interface": SPARE_NIC}
        cloud.write_text(yaml.safe_dump(settings))
        result = run_dietstack("deploy", config=cloud)
        assert result.returncode == 0, result.stderr[-3000:]
        openstack(
            "demo",
            "server",
            "create",
            "--image",
            "dietstack-tiny",
            "--flavor",
            "m1.tiny",
            "--network",
            "demo-net",
            "--wait",
            "itest-lan",
        )
        address = openstack("demo", "floating ip", "create", "public", "-f", "json")[
            "floating_ip_address"
        ]
        openstack("demo", "server", "add", "floating", "ip", "itest-lan", address)
        try:
            wait_until(f"{address} to answer ping on the LAN", lambda: lan_pings(address), 180)
        except AssertionError:
            print_lan_diagnostics(address)
            raise
    finally:
        openstack("demo", "server", "delete", "--wait", "itest-lan", check=False)
        for floating in openstack("demo", "floating ip", "list", "-f", "json"):
            openstack("demo", "floating ip", "delete", floating["ID"], check=False)
        cloud.write_text(single_nic)
        restored = run_dietstack("deploy", config=cloud)
        remove_lan()
    assert restored.returncode == 0, restored.stderr[-3000:]
    assert run_dietstack("status", config=cloud).returncode == 0


#: What a tiny guest probes besides the cloud's own ports: a NAS (a namespace routed
#: through this host, answering on NFS's port) and a container on Docker's default
#: bridge, reachable from the LAN only through the one port Docker publishes.
STAND_IN_NAS = exposure.Target(stranger.STRANGER_ADDRESS.split("/")[0], nfs.PORT)
BRIDGED = "ds-itest-bridged"
BRIDGED_PORT = 8080
PUBLISHED_PORT = 28080


def answers(target: exposure.Target) -> bool:
    """Whether the target accepts a TCP connection from this host."""
    try:
        socket.create_connection((target.address, target.port), 3).close()
    except OSError:
        return False
    return True


@contextmanager
def accepting(namespace: str, target: exposure.Target) -> Iterator[None]:
    """A TCP server at the target inside the namespace that accepts every connection."""
    code = (
        "import socket, sys\n"
        "server = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
        "while True:\n"
        "    server.accept()[0].close()\n"
    )
    command = ["ip", "netns", "exec", namespace, sys.executable, "-c", code]
    server = subprocess.Popen([*command, target.address, str(target.port)])
    try:
        wait_until(f"{target} to accept connections", lambda: answers(target), timeout=30)
        yield
    finally:
        server.terminate()
        server.wait()


@contextmanager
def bridged_container(runtime: DockerRuntime) -> Iterator[str]:
    """A web server on Docker's default bridge, published on PUBLISHED_PORT; its address
    on the bridge. Any local image with python3 serves: the firewall's."""
    state = runtime.state("firewall")
    assert state is not None, "the firewall container is missing"
    subprocess.run(["docker", "rm", "-f", BRIDGED], capture_output=True)
    command = ["docker", "run", "-d", "--name", BRIDGED, "--network", "bridge"]
    command += ["-p", f"{PUBLISHED_PORT}:{BRIDGED_PORT}", state.labels[LABEL_IMAGE_TAG]]
    command += ["--", "python3", "-m", "http.server", "--bind", "0.0.0.0", str(BRIDGED_PORT)]
    try:
        started = subprocess.run(command, capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        address = inspect(BRIDGED, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
        served = exposure.Target(address, BRIDGED_PORT)
        wait_until(f"{BRIDGED} to serve on {served}", lambda: answers(served), timeout=60)
        yield address
    finally:
        subprocess.run(["docker", "rm", "-f", BRIDGED], capture_output=True)


def probe_in_guest(address: str, key_file: Path, targets: list[exposure.Target]) -> set[str]:
    """Connect from inside the guest to every target at once; those that accepted."""
    seen = answered(ssh(address, key_file, probe_script(targets)))
    print(f"{len(targets)} targets; the instance reached: {' '.join(map(str, seen))}")
    return {str(target) for target in seen}


def nas_set(runtime: DockerRuntime, action: str, address: str) -> tuple[int, str]:
    """Add an address to (or delete it from) the live firewall's set of NAS addresses."""
    element = ["element", "inet", firewall.TABLE, firewall.NAS_SET, f"{{ {address} }}"]
    return runtime.exec("firewall", ["nft", action, *element])


def test_an_instance_reaches_neither_the_control_plane_nor_the_nas_nor_containers(
    cloud: Path, runtime: DockerRuntime, key_file: Path
) -> None:
    """From inside a tiny guest, whose traffic leaves this host with the host's own
    address: the host's and the nodes' ports refuse it but for the user ports, a
    container's unpublished port refuses it while Docker's published one answers,
    and a NAS answers until its address is in the firewall's NAS set (which is what
    nfs_share puts there); this host itself still reaches that NAS."""
    env = deployed_env(cloud)
    listening = exposure.listening(runtime)
    addresses = exposure.instance_addresses(env, hostnet.probe())
    control_plane = exposure.targets(env, listening, addresses)
    unpublished = {3306, 5672, 11211, 6641, 6642}
    assert unpublished <= {target.port for target in control_plane}
    with (
        stranger.lan_stranger("ds-itest-nas", "ds-itest-nas0") as namespace,
        accepting(namespace, STAND_IN_NAS),
        bridged_container(runtime) as bridged,
        tiny_guest("itest-tenant", key_file) as (guest, _),
    ):
        container = exposure.Target(bridged, BRIDGED_PORT)
        published = exposure.Target(env.ip, PUBLISHED_PORT)
        seen = probe_in_guest(guest, key_file, [*control_plane, container, published, STAND_IN_NAS])
        reached = [target for target in control_plane if str(target) in seen]
        assert exposure.forbidden(env, reached, listening) == []
        # The probe itself works: every user port listening on the management address answers.
        user = {port for port in exposure.user_ports(env) if port in listening}
        assert {t.port for t in reached if t.address == env.ip} == user
        assert not {f"{env.ip}:{port}" for port in unpublished} & seen
        assert str(published) in seen and str(container) not in seen
        # Without nfs_share the set is empty and the stand-in answers the guest; with
        # its address there, the guest is refused, but not this host (its own traffic).
        assert str(STAND_IN_NAS) in seen
        added = nas_set(runtime, "add", STAND_IN_NAS.address)
        assert added[0] == 0, added[1]
        try:
            assert probe_in_guest(guest, key_file, [STAND_IN_NAS]) == set()
            assert answers(STAND_IN_NAS)
        finally:
            nas_set(runtime, "delete", STAND_IN_NAS.address)


def fill(directory: Path, filler: Path) -> None:
    """Take every free block of the file system holding `directory` (as root does,
    reserved blocks included), the way a user's copy that ran out of room would."""
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    subprocess.run(["fallocate", "-l", str(free), str(filler)], check=True)
    # What root alone may still use, taken too.
    rest = os.statvfs(directory).f_bfree * os.statvfs(directory).f_frsize
    if rest:
        subprocess.run(["fallocate", "-l", str(rest), str(filler) + ".rest"], check=False)


def databases_check() -> str:
    result = subprocess.run(
        ["docker", "exec", "mariadb", "mariadb-check", "--protocol=socket", "--all-databases"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def cinder_free_gb() -> float:
    """The free space Cinder's scheduler believes its NFS pool has (it hears from the
    volume service once a minute)."""
    pools = openstack("admin", "volume", "backend", "pool", "list", "--long", "-f", "json")
    return min(float(pool["Capabilities"]["free_capacity_gb"]) for pool in pools)


def new_server_fault(name: str) -> str:
    """Create a server and wait for it to settle; Nova's fault if it ended in ERROR,
    or the API's answer if the create itself was refused."""
    created = subprocess.run(
        [shutil.which("openstack") or "openstack", "--os-cloud", "demo", "server", "create",
         "--image", "dietstack-tiny", "--flavor", "m1.tiny", "--network", "demo-net", name],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if created.returncode != 0:
        return created.stderr

    def settled() -> str:
        status = str(openstack("demo", "server", "show", name, "-f", "json")["status"])
        return status if status in ("ACTIVE", "ERROR") else ""

    if wait_until(f"server {name} to settle", settled) == "ACTIVE":
        return ""
    return str(openstack("demo", "server", "show", name, "-f", "json").get("fault") or "")


def test_a_full_data_dir_refuses_new_volumes_and_all_serves_once_freed(
    cloud: Path, key_file: Path
) -> None:
    """data_dir (a small file system of its own in these tests) is filled to the last
    block while an instance runs: status says so, a new volume and a new server fail
    (Nova's fault says why), the APIs keep answering and the instance is at most
    paused; once the space is freed, it answers again with its files, and new volumes
    and servers work with no redeploy, and the databases check clean."""
    data_dir = Path(yaml.safe_load(cloud.read_text())["data_dir"])
    filler = data_dir / "itest-filler"
    volume = ""
    with tiny_guest("itest-full", key_file) as (address, _):
        ssh(address, key_file, "echo written-before-the-fill >/root/kept; sync")
        try:
            fill(data_dir, filler)
            shown = run_dietstack("status", config=cloud)
            print(shown.stdout[-1500:])
            assert "data_dir" in shown.stdout and "0.0 GiB free" in shown.stdout, shown.stdout
            volume = openstack(
                "demo", "volume", "create", "--size", "1", "itest-full-vol", "-f", "json"
            )["id"]
            wait_until(
                "the volume to be refused",
                lambda: volume_status("volume", volume) == "error",
                timeout=300,
            )
            messages = openstack(
                "demo", "--os-volume-api-version", "3.3", "volume", "message", "list",
                "-f", "json",
            )  # fmt: skip
            said = {m["User Message"] for m in messages if m["Resource UUID"] == volume}
            print("the full disk's volume:", said)
            # Cinder's user messages are a fixed list with no word for a full disk:
            # the driver's failure, then no backend left to try.
            assert "create volume from backend storage:Driver failed to create the volume." in said
            fault = new_server_fault("itest-full-new")
            print("a new server on the full disk:", fault[:600])
            # Where the full disk first stops it depends on what the database files
            # still hold free inside: the API's own write (a database error) or
            # the instance's disk on the compute host (Nova's fault says so).
            assert "No space left on device" in fault or (
                "Unexpected API Error" in fault and "OperationalError" in fault
            ), fault or server_failure("itest-full-new")
            # QEMU pauses a guest whose disk write finds no room (it sees no I/O
            # error); it is not shut off or in error.
            shown = openstack("demo", "server", "show", "itest-full", "-f", "json")
            print("the running instance while the disk is full:", shown["status"])
            assert shown["status"] == "ACTIVE", shown
        finally:
            for path in (filler, Path(str(filler) + ".rest")):
                path.unlink(missing_ok=True)
            freed = time.monotonic()
            openstack("demo", "server", "delete", "--wait", "itest-full-new", check=False)
            if volume:
                openstack("demo", "volume", "delete", volume, check=False)
        wait_until(
            "status to pass with no space warning",
            lambda: (
                (shown := run_dietstack("status", config=cloud)).returncode == 0
                and "data_dir" not in shown.stdout
            ),
        )
        wait_until("Cinder to see free space", lambda: cinder_free_gb() > 1, timeout=180)
        print(f"Cinder's scheduler saw the space {time.monotonic() - freed:.0f} s after")
        wait_until("the instance to answer again", lambda: ping(address), timeout=120)
        print(f"the running instance answered {time.monotonic() - freed:.0f} s after")
        assert ssh(address, key_file, "cat /root/kept").strip() == "written-before-the-fill"
    after = openstack("demo", "volume", "create", "--size", "1", "itest-full-after", "-f", "json")
    try:
        wait_for_status("volume", after["id"], "available")
    finally:
        openstack("demo", "volume", "delete", after["id"], check=False)
    demo_server("itest-full-after")
    openstack("demo", "server", "delete", "--wait", "itest-full-after")
    checked = databases_check()
    assert "error" not in checked.lower() and "corrupt" not in checked.lower(), checked


def test_after_a_power_loss_the_cloud_and_its_running_instances_come_back(
    cloud: Path, key_file: Path
) -> None:
    """Two running instances, one with a volume it wrote to: after a power loss and
    the engine started again (as at boot), with no DietStack command, the cloud
    serves, both instances answer on their floating IPs with the volume attached,
    what was written is there, and a new server boots. (Last before destroy: what a
    power loss may leave behind must show here, not in the tests after it.)"""
    with (
        tiny_guest("itest-cut-1", key_file) as (first, server),
        tiny_guest("itest-cut-2", key_file) as (second, _),
    ):
        try:
            openstack("demo", "volume", "create", "--size", "1", "itest-cut-vol")
            wait_for_status("volume", "itest-cut-vol", "available")
            openstack("demo", "server", "add", "volume", "itest-cut-1", "itest-cut-vol")
            wait_for_status("volume", "itest-cut-vol", "in-use")
            wait_until(
                "the guest to see vdb",
                lambda: ssh(first, key_file, "ls /sys/block").split().count("vdb") == 1,
            )
            ssh(first, key_file, "echo row-before-the-cut | dd of=/dev/vdb conv=fsync 2>/dev/null")
            power_loss()
            started = time.monotonic()
            ensure_docker(print)
            wait_until(
                "the cloud to serve again",
                lambda: run_dietstack("status", config=cloud).returncode == 0,
                timeout=600,
            )
            serving = time.monotonic() - started
            answered_after = {}
            for address in (first, second):
                wait_until(f"{address} to answer", lambda a=address: ping(a), timeout=600)
                answered_after[address] = time.monotonic() - started
            print(
                f"after the power loss: serving in {serving:.0f} s; "
                f"instances answer after {answered_after}"
            )
            row = ssh(first, key_file, "dd if=/dev/vdb bs=18 count=1 2>/dev/null")
            assert row == "row-before-the-cut", row
            shown = openstack("demo", "server", "show", "itest-cut-1", "-f", "json")
            assert shown["status"] == "ACTIVE" and shown["id"] == server["id"]
            # And the cloud takes new work: a new server boots.
            demo_server("itest-cut-new")
        finally:
            openstack("demo", "server", "delete", "--wait", "itest-cut-new", check=False)
            openstack(
                "demo", "server", "remove", "volume", "itest-cut-1", "itest-cut-vol", check=False
            )
            wait_for_status("volume", "itest-cut-vol", "available")
            openstack("demo", "volume", "delete", "itest-cut-vol", check=False)


def test_destroy_removes_the_containers_and_the_firewall(
    cloud: Path, runtime: DockerRuntime
) -> None:
    """Last: the cloud is gone afterwards (its data stays)."""
    result = run_dietstack("destroy", "--yes", config=cloud)
    assert result.returncode == 0, result.stdout + result.stderr
    assert runtime.containers(LABEL_CONTAINER) == {}
    tables = nft_tables(runtime)
    assert f"inet {firewall.TABLE}" not in tables and "ip dietstack" not in tables
