"""Extra "machines" for multi-node tests: node containers with their own sshd and
Docker engine, on a management network of their own and a tunnel network.

- management: a Docker network (10.198.0.0/24); the control node (this host) answers
  there from its management address, as on a LAN where all nodes share a subnet;
- tunnels: a plain Linux bridge (10.199.0.0/24) with one veth per node, plus one for
  the control node, because this kernel has no openvswitch module and Open vSwitch's
  userspace datapath must own the NIC its tunnels leave through.

Docker is not installed in the node image: `dietstack node add` installs it from
the distribution's packages, as it would on a fresh machine.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

IMAGE = "dietstack-itest/node:trixie"
MANAGEMENT_NETWORK = "ds-itest-mgmt"
MANAGEMENT_BRIDGE = "ds-itest-mgmt0"
MANAGEMENT_SUBNET = "10.198.0.0/24"
TUNNEL_BRIDGE = "ds-itest-tun"
#: The control node's tunnel NIC (given to Open vSwitch) and its bridge end.
CONTROL_TUNNEL = "ds-tun"
CONTROL_TUNNEL_PEER = "ds-tun-br"
CONTROL_TUNNEL_CIDR = "10.199.0.2/24"
STATE = Path("/var/lib/dietstack-itest-nodes")
FORWARD_RULE = ("-i", TUNNEL_BRIDGE, "-o", TUNNEL_BRIDGE, "-j", "ACCEPT")

ENTRYPOINT = """#!/bin/sh
set -e
# A machine of its own: fresh host keys, and its Docker engine in its own cgroup.
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A
mkdir -p /etc/docker /run/sshd /root/.ssh
printf '{"cgroup-parent": "/%s"}\\n' "$(hostname)" > /etc/docker/daemon.json
cp /keys/authorized_keys /root/.ssh/authorized_keys
chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys
exec /usr/sbin/sshd -D -e
"""


def sh(*command: str, check: bool = True) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)}: {result.stdout}{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class NodeBox:
    name: str
    management_ip: str
    tunnel_ip: str

    @property
    def container(self) -> str:
        return self.name

    def exec(self, *command: str, check: bool = True) -> str:
        return sh("docker", "exec", self.container, *command, check=check)


def build_image(base_tag: str, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "entrypoint").write_text(ENTRYPOINT)
    (workdir / "Dockerfile").write_text(
        textwrap.dedent(
            f"""\
            FROM {base_tag}
            RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \\
                    --no-install-recommends openssh-server iproute2 procps kmod \\
                    ca-certificates && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*
            COPY entrypoint /usr/local/sbin/node-entrypoint
            RUN chmod 755 /usr/local/sbin/node-entrypoint
            ENTRYPOINT ["/usr/local/sbin/node-entrypoint"]
            """
        )
    )
    sh("docker", "build", "-q", "-t", IMAGE, str(workdir))


def boxes(count: int) -> list[NodeBox]:
    """ds-node-1 .. ds-node-COUNT (at most 9: names end in one digit)."""
    assert 1 <= count <= 9
    return [
        NodeBox(f"ds-node-{n}", f"10.198.0.{10 + n}", f"10.199.0.{10 + n}")
        for n in range(1, count + 1)
    ]


#: The two compute nodes of the multi-node tests.
BOXES = boxes(2)

#: Runs `dietstack ARGS` with a settings file.
Run = Callable[..., subprocess.CompletedProcess[str]]


def fresh_control(run: Run, config: Path, data_dir: Path, release: str = "") -> str:
    """Deploy the control node with a tunnel NIC (of `release`, else the default);
    returns its management address."""
    remove_all()
    control_tunnel()
    wanted = {"data_dir": str(data_dir), "tunnel_interface": CONTROL_TUNNEL}
    config.write_text(yaml.safe_dump(wanted | ({"release": release} if release else {})))
    result = run("deploy", config=config)
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    control_ip = str(
        yaml.safe_load((data_dir / "config" / "settings.yaml").read_text())["management_ip"]
    )
    management_network(control_ip)
    return control_ip


def start_boxes(base_tag: str, workdir: Path, started: list[NodeBox]) -> Path:
    """Build the node image, make a key the nodes accept and start them; returns the key."""
    build_image(base_tag, workdir / "image")
    keys = workdir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    key = keys / "id_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    (keys / "authorized_keys").write_text((keys / "id_ed25519.pub").read_text())
    for box in started:
        start(box, keys)
    return key


def add_node(run: Run, config: Path, key: Path, box: NodeBox) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = run(
        "node",
        "add",
        box.management_ip,
        "--identity",
        str(key),
        "--tunnel-interface",
        "eth1",
        config=config,
    )
    print(f"node add {box.name} took {time.monotonic() - started:.0f} s")
    print(result.stderr[-3000:])
    return result


def remove_all(image: bool = False) -> None:
    """Every node container and network of the tests and benchmarks (and with `image`
    their image, which is built on DietStack's base image)."""
    for box in boxes(9):
        sh("docker", "rm", "-f", box.container, check=False)
        sh("ip", "link", "del", f"ds-t-{box.name[-1]}", check=False)
        sh("rm", "-rf", str(STATE / box.name))
    sh("docker", "network", "rm", MANAGEMENT_NETWORK, check=False)
    sh("ip", "link", "del", CONTROL_TUNNEL, check=False)
    sh("ip", "link", "del", TUNNEL_BRIDGE, check=False)
    if image:
        sh("docker", "rmi", "-f", IMAGE, check=False)
    while sh("iptables", "-D", "DOCKER-USER", *FORWARD_RULE, check=False) == "" and sh(
        "iptables", "-C", "DOCKER-USER", *FORWARD_RULE, check=False
    ):
        pass


def control_tunnel() -> None:
    """The control node's tunnel NIC: a veth whose other end is on the tunnel bridge."""
    sh("ip", "link", "add", TUNNEL_BRIDGE, "type", "bridge")
    sh("ip", "link", "set", TUNNEL_BRIDGE, "up")
    sh("ip", "link", "add", CONTROL_TUNNEL, "type", "veth", "peer", "name", CONTROL_TUNNEL_PEER)
    sh("ip", "link", "set", CONTROL_TUNNEL_PEER, "master", TUNNEL_BRIDGE, "up")
    sh("ip", "addr", "add", CONTROL_TUNNEL_CIDR, "dev", CONTROL_TUNNEL)
    sh("ip", "link", "set", CONTROL_TUNNEL, "up")
    # Docker's FORWARD policy (drop) also filters bridged frames (br_netfilter): a
    # switch between machines would not.
    sh("iptables", "-I", "DOCKER-USER", *FORWARD_RULE)


def management_network(control_ip: str) -> None:
    sh(
        "docker",
        "network",
        "create",
        "--subnet",
        MANAGEMENT_SUBNET,
        "-o",
        f"com.docker.network.bridge.name={MANAGEMENT_BRIDGE}",
        MANAGEMENT_NETWORK,
    )
    # The control node talks to the nodes from its management address, as on a LAN.
    sh("ip", "route", "replace", MANAGEMENT_SUBNET, "dev", MANAGEMENT_BRIDGE, "src", control_ip)


def start(box: NodeBox, keys_dir: Path) -> None:
    state = STATE / box.name
    for part in ("docker", "dietstack"):
        (state / part).mkdir(parents=True, exist_ok=True)
    sh(
        "docker",
        "run",
        "-d",
        "--name",
        box.container,
        "--hostname",
        box.name,
        "--network",
        MANAGEMENT_NETWORK,
        "--ip",
        box.management_ip,
        # A machine's powers, listed: not --privileged (this host refuses it).
        "--cap-add",
        "ALL",
        "--cap-drop",
        "SYS_RESOURCE",
        "--security-opt",
        "apparmor=unconfined",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "systempaths=unconfined",
        "--device-cgroup-rule",
        "a *:* rwm",
        "--device",
        "/dev/net/tun",
        "--device",
        "/dev/fuse",
        "--device",
        "/dev/kvm",
        "--cgroupns",
        "host",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "-v",
        "/lib/modules:/lib/modules:ro",
        "-v",
        f"{state / 'docker'}:/var/lib/docker",
        "-v",
        f"{state / 'dietstack'}:/var/lib/dietstack",
        "-v",
        f"{keys_dir}:/keys:ro",
        IMAGE,
    )
    plug_tunnel_nic(box)
    wait_for_sshd(box)


def power_cycle(box: NodeBox) -> None:
    """The node's machine loses power and boots again: every process killed at once,
    then the machine started with its NICs, and its Docker engine started as its
    init system would, which starts the containers it had."""
    sh("docker", "kill", box.container)
    boot(box)


def boot(box: NodeBox) -> None:
    """A stopped node's machine starts again (see power_cycle)."""
    sh("docker", "start", box.container)
    plug_tunnel_nic(box)
    wait_for_sshd(box)
    # What a boot does before the Docker engine starts: /run starts empty (it is a
    # tmpfs), sshd's own files aside, and systemd makes every mount shared.
    boot_script = (
        "find /run -mindepth 1 -maxdepth 1 ! -name 'sshd*' -exec rm -rf {} + ; "
        "mount --make-rshared / ; exec dockerd >/var/log/dockerd.log 2>&1"
    )
    sh("docker", "exec", "-d", box.container, "sh", "-c", boot_script)


def plug_tunnel_nic(box: NodeBox) -> None:
    """Its second NIC, for tunnels only: SSH stays on the first."""
    pid = sh("docker", "inspect", "-f", "{{.State.Pid}}", box.container).strip()
    host_end = f"ds-t-{box.name[-1]}"
    sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", f"{host_end}n")
    sh("ip", "link", "set", host_end, "master", TUNNEL_BRIDGE, "up")
    sh("ip", "link", "set", f"{host_end}n", "netns", pid)
    box.exec("ip", "link", "set", f"{host_end}n", "name", "eth1")
    # A NIC keeps its MAC address across a reboot: the other nodes' tunnel
    # neighbour caches stay right.
    last = int(box.tunnel_ip.rsplit(".", 1)[1])
    box.exec("ip", "link", "set", "eth1", "address", f"02:00:0a:c7:00:{last:02x}")
    box.exec("ip", "addr", "add", f"{box.tunnel_ip}/24", "dev", "eth1")
    box.exec("ip", "link", "set", "eth1", "up")


def wait_for_sshd(box: NodeBox) -> None:
    deadline = time.monotonic() + 30
    while "sshd" not in box.exec("ps", "-e", check=False):
        assert time.monotonic() < deadline, "sshd did not start in the node container"
        time.sleep(0.5)
