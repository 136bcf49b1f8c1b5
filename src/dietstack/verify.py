"""`dietstack verify`: prove the cloud works end to end, as the demo user.

Boots a VM from the tiny test image, checks from its console that it got its
address by DHCP and read its instance id from the metadata service and that it
reaches no port of this host but the cloud's user-facing ones, pings it on a
floating IP from this host, attaches a volume it must see, and runs a Heat
stack whose server signals a wait condition. Everything made is deleted again.
"""

from __future__ import annotations

import base64
import itertools
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dietstack import cloudsetup, exposure
from dietstack.errors import DietStackError
from dietstack.keystone_api import Keystone
from dietstack.render import Env
from dietstack.services import cinder, heat, keystone, neutron, nova

TINY_IMAGE = "dietstack-tiny"
MARK = "DIETSTACK-TINY"


class VerifyFailed(DietStackError):
    pass


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = False
    detail: str = ""


@dataclass
class Verification:
    env: Env
    demo: Keystone
    steps: list[Step] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    server_id: str = ""
    floating_ip: str = ""
    #: With more than one compute node: an anti-affinity group, so that the second
    #: VM lands on another node than the first.
    group_id: str = ""
    #: Host ports the VM tries to connect to, and who listens on each.
    probe: list[exposure.Target] = field(default_factory=list)
    listening: dict[int, str] = field(default_factory=dict)

    def url(self, port: int, path: str) -> str:
        return self.env.url(port, path)

    @contextmanager
    def step(self, name: str, say: Callable[[str], None]) -> Iterator[Step]:
        step = Step(name)
        self.steps.append(step)
        say(f"[{len(self.steps)}] {name}")
        started = time.monotonic()
        try:
            yield step
            step.ok = True
        except DietStackError as exc:
            step.detail = exc.message
            raise VerifyFailed(
                f"verify failed at step {len(self.steps)} ({name}): {exc.message}",
                details=exc.details,
                hint=exc.hint,
            ) from None
        finally:
            step.seconds = time.monotonic() - started


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DietStackError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- ICMP echo from this host (root), so no ping binary is needed ----------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(address: str, timeout: float = 2.0) -> bool:
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    payload = b"dietstack-verify"
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, source = sock.recvfrom(1024)
            except TimeoutError:
                return False
            icmp = data[(data[0] & 0x0F) * 4 :]
            if source[0] == address and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                return True
    return False


class PingWatch:
    """Pings an address every `interval` seconds in the background; the longest
    run without an answer is what an instance's users saw of a migration."""

    def __init__(self, address: str, interval: float = 0.2) -> None:
        self.address = address
        self.interval = interval
        self.answers: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            self.answers.append((sent, ping(self.address, timeout=1.0)))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - sent)))

    def __enter__(self) -> PingWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def longest_gap(self) -> float:
        """The longest time without an answer, from the first ping sent to the last
        (a silence at either end counts)."""
        if not self.answers:
            return 0.0
        marks = [self.answers[0][0], *(sent for sent, ok in self.answers if ok)]
        marks.append(self.answers[-1][0])
        return max(later - earlier for earlier, later in itertools.pairwise(marks))


# --- the steps -------------------------------------------------------------------


def _find_id(client: Keystone, url: str, key: str, container: str, name: str) -> str:
    items = client.get(url, container, name=name)[key]
    matching = [item for item in items if item.get("name") == name]
    if not matching:
        raise DietStackError(f"{name!r} not found", hint="run `dietstack deploy` first")
    return str(matching[0]["id"])


def boot(v: Verification, name: str, user_data: str = "") -> str:
    """Boot a tiny VM (into the anti-affinity group, if any) and wait until ACTIVE;
    returns its id. The first one booted is the VM the steps check."""
    image = _find_id(v.demo, v.url(9292, "/v2/images"), "images", "glance-api", TINY_IMAGE)
    flavors = v.demo.get(v.url(nova.PORT, "/v2.1/flavors"), "nova-api")["flavors"]
    flavor = next(f["id"] for f in flavors if f["name"] == cloudsetup.FLAVORS[0].name)
    network = _find_id(
        v.demo,
        v.url(neutron.PORT, "/v2.0/networks"),
        "networks",
        "neutron-server",
        cloudsetup.DEMO_NETWORK,
    )
    body = {
        "server": {
            "name": name,
            "imageRef": image,
            "flavorRef": flavor,
            "networks": [{"uuid": network}],
            "user_data": base64.b64encode((user_data or probe_script(v.probe)).encode()).decode(),
        }
    }
    if v.group_id:
        body["os:scheduler_hints"] = {"group": v.group_id}
    server = v.demo.post(v.url(nova.PORT, "/v2.1/servers"), body, "nova-api")["server"]
    server_id = str(server["id"])
    v.server_id = v.server_id or server_id
    server_url = v.url(nova.PORT, f"/v2.1/servers/{server_id}")
    v.cleanups.append(lambda: delete_server(v, server_url, server_id))

    def active() -> bool:
        status = v.demo.get(server_url, "nova-api")["server"]
        if status["status"] == "ERROR":
            fault = status.get("fault", {}).get("message", "no reason given")
            raise DietStackError(
                f"the server went into ERROR: {fault}",
                hint="see `docker logs nova-compute` and `docker logs nova-conductor`",
            )
        return bool(status["status"] == "ACTIVE")

    # Polled twice a second: a tiny server is ACTIVE in seconds, and each poll is one GET.
    wait_for("the server to become ACTIVE", active, timeout=300, interval=0.5)
    return server_id


def delete_server(v: Verification, server_url: str, server_id: str) -> None:
    """Delete and wait until it is gone, so verify leaves nothing behind."""
    v.demo.delete(server_url, "nova-api")
    servers = v.url(nova.PORT, "/v2.1/servers")

    def gone() -> bool:
        listed = v.demo.get(servers, "nova-api")["servers"]
        return all(server["id"] != server_id for server in listed)

    wait_for("the server to be deleted", gone, timeout=180)


def console(v: Verification, server_id: str = "") -> str:
    action = v.url(nova.PORT, f"/v2.1/servers/{server_id or v.server_id}/action")
    return str(v.demo.post(action, {"os-getConsoleOutput": {}}, "nova-api")["output"])


def check_console(v: Verification) -> None:
    def booted() -> bool:
        text = console(v)
        return f"{MARK} ip=" in text and f"{MARK} instance-id={v.server_id}" in text

    wait_for(
        "the console to show a DHCP address and the instance id from metadata",
        booted,
        timeout=240,
        interval=1,
    )


PROBE_OPEN = f"{MARK} probe-open="
PROBE_DONE = f"{MARK} probe=done"


def probe_script(targets: list[exposure.Target]) -> str:
    """User-data that tries every target at once with busybox nc (connect, then
    exit at once) and reports each that accepted on the console."""
    lines = [
        "#!/bin/sh",
        "# Which of the host's ports answer this instance.",
        "for target in " + " ".join(map(str, targets)) + "; do",
        '    (nc -w 3 "${target%:*}" "${target##*:}" -e /bin/true 2>/dev/null'
        f' && echo "{PROBE_OPEN}$target") &',
        "done",
        "wait",
        f"echo '{PROBE_DONE}'",
    ]
    return "\n".join(lines) + "\n"


def answered(text: str) -> list[exposure.Target]:
    found = [
        exposure.Target.parse(line[len(PROBE_OPEN) :])
        for line in text.splitlines()
        if line.startswith(PROBE_OPEN)
    ]
    return [target for target in found if target is not None]


def probe_report(v: Verification, timeout: float = 120) -> list[exposure.Target]:
    """Wait for the VM's probe (its user-data) to finish; the targets that answered."""

    def reported() -> str:
        text = console(v)
        return text if PROBE_DONE in text else ""

    return answered(wait_for("the VM to report which host ports answer it", reported, timeout, 3))


def check_isolation(v: Verification, say: Callable[[str], None]) -> None:
    seen = probe_report(v)
    say(f"    {len(v.probe)} host ports tried; answered: {' '.join(map(str, seen)) or 'none'}")
    problems = exposure.forbidden(v.env, seen, v.listening)
    if problems:
        raise DietStackError(
            f"an instance reaches {len(problems)} port(s) of this host that only the cloud's "
            "nodes or this host may use: " + "; ".join(problems),
            hint="the firewall table inet dietstack_firewall is missing or incomplete: "
            "see `docker logs firewall` and run `dietstack deploy`",
        )
    api = exposure.Target(v.env.ip, keystone.PORT)
    if api not in seen:
        # A probe that reaches nothing proves nothing: the API must answer.
        raise DietStackError(
            f"the VM could not reach the Identity API at {api}, so its probe proves nothing",
            hint="check the demo router's gateway and br-ex (`dietstack status`)",
        )


def anti_affinity_group(v: Verification) -> None:
    name = f"verify-{uuid.uuid4().hex[:8]}"
    body = {"server_group": {"name": name, "policies": ["anti-affinity"]}}
    groups = v.url(nova.PORT, "/v2.1/os-server-groups")
    group = v.demo.post(groups, body, "nova-api")["server_group"]
    v.group_id = str(group["id"])
    v.cleanups.append(lambda: v.demo.delete(f"{groups}/{group['id']}", "nova-api"))


PEER_OK = f"{MARK} peer=ok"
PEER_FAILED = f"{MARK} peer=failed"


def peer_script(address: str) -> str:
    return (
        "#!/bin/sh\n"
        f"if ping -c 3 -W 3 {address} >/dev/null; then echo '{PEER_OK}'; "
        f"else echo '{PEER_FAILED}'; fi\n"
    )


def check_peer(v: Verification, name: str) -> None:
    """A second VM, on another node (anti-affinity), pings the first over Geneve."""
    base = v.url(neutron.PORT, "/v2.0")
    ports = v.demo.get(f"{base}/ports", "neutron-server", device_id=v.server_id)["ports"]
    address = ports[0]["fixed_ips"][0]["ip_address"]
    peer = boot(v, f"{name}-peer", peer_script(address))
    servers = [
        v.demo.get(v.url(nova.PORT, f"/v2.1/servers/{ident}"), "nova-api")["server"]
        for ident in (v.server_id, peer)
    ]
    if servers[0]["hostId"] == servers[1]["hostId"]:
        raise DietStackError("both VMs landed on the same node despite the anti-affinity group")

    def reported() -> str:
        text = console(v, peer)
        return text if PEER_OK in text or PEER_FAILED in text else ""

    text = wait_for("the second VM to ping the first", reported, timeout=240, interval=5)
    if PEER_FAILED in text:
        raise DietStackError(
            f"a VM on another node could not ping {address} over the project network",
            hint="check the Geneve tunnels: `ovs-vsctl show` in openvswitch-db on both nodes, "
            "and the nodes' firewalls (udp 6081)",
        )


def floating_ip(v: Verification) -> None:
    base = v.url(neutron.PORT, "/v2.0")
    public = _find_id(v.demo, f"{base}/networks", "networks", "neutron-server", neutron.PHYSNET)
    ports = v.demo.get(f"{base}/ports", "neutron-server", device_id=v.server_id)["ports"]
    body = {"floatingip": {"floating_network_id": public, "port_id": ports[0]["id"]}}
    fip = v.demo.post(f"{base}/floatingips", body, "neutron-server")["floatingip"]
    v.floating_ip = fip["floating_ip_address"]
    v.cleanups.append(lambda: v.demo.delete(f"{base}/floatingips/{fip['id']}", "neutron-server"))
    wait_for(f"{v.floating_ip} to answer ping", lambda: ping(v.floating_ip), timeout=180)


def volume(v: Verification) -> None:
    project = v.demo.project_id
    base = v.url(cinder.PORT, f"/v3/{project}")
    body = {"volume": {"size": 1, "name": f"verify-{uuid.uuid4().hex[:8]}"}}
    created = v.demo.post(f"{base}/volumes", body, "cinder-api")["volume"]
    volume_url = f"{base}/volumes/{created['id']}"

    def status() -> str:
        return str(v.demo.get(volume_url, "cinder-api")["volume"]["status"])

    def reached(wanted: str) -> Callable[[], bool]:
        def check() -> bool:
            current = status()
            if current.startswith("error"):
                raise DietStackError(
                    f"the volume went into {current}", hint="see `docker logs cinder-volume`"
                )
            return current == wanted

        return check

    wait_for("the volume to become available", reached("available"), timeout=120)
    attach_url = v.url(nova.PORT, f"/v2.1/servers/{v.server_id}/os-volume_attachments")
    v.demo.post(attach_url, {"volumeAttachment": {"volumeId": created["id"]}}, "nova-api")
    wait_for("the volume to be attached", reached("in-use"), timeout=180)
    wait_for(
        "the guest to see its new disk vdb",
        lambda: f"{MARK} disks=vda vdb" in console(v),
        timeout=120,
    )
    v.demo.delete(f"{attach_url}/{created['id']}", "nova-api")
    wait_for("the volume to be detached", reached("available"), timeout=180)
    v.demo.delete(volume_url, "cinder-api")


STACK_TEMPLATE = Path(__file__).parent / "data" / "verify-stack.yaml"


@dataclass(frozen=True)
class Stack:
    """A stack being created: verify starts it first and checks it last, so its
    server boots while the other steps work on the first VM."""

    url: str
    listing: str
    id: str


def start_stack(v: Verification) -> Stack:
    project = v.demo.project_id
    base = v.url(heat.PORT, f"/v1/{project}")
    name = f"verify-{uuid.uuid4().hex[:8]}"
    body = {
        "stack_name": name,
        "template": STACK_TEMPLATE.read_text(),
        "parameters": {
            "image": TINY_IMAGE,
            "flavor": cloudsetup.FLAVORS[0].name,
            "router": cloudsetup.DEMO_ROUTER,
        },
        "timeout_mins": 10,
    }
    created = v.demo.post(f"{base}/stacks", body, "heat-api")["stack"]
    stack = Stack(f"{base}/stacks/{name}/{created['id']}", f"{base}/stacks", str(created["id"]))
    # Should a step before the stack's fail, the stack goes too.
    v.cleanups.append(lambda: delete_stack(v, stack))
    return stack


def finish_stack(v: Verification, stack: Stack) -> None:
    """Wait until the stack's server has signalled its wait condition, then delete it."""

    def complete() -> bool:
        status = v.demo.get(stack.url, "heat-api")["stack"]
        if status["stack_status"].endswith("FAILED"):
            raise DietStackError(
                f"the stack failed: {status['stack_status_reason']}",
                hint="see `docker logs heat-engine`",
            )
        return bool(status["stack_status"] == "CREATE_COMPLETE")

    try:
        wait_for(
            "the stack (its server signals the wait condition)", complete, timeout=600, interval=1
        )
    finally:
        delete_stack(v, stack)


def delete_stack(v: Verification, stack: Stack) -> None:
    """Delete the stack unless it is gone already, and wait until it is."""

    def deleted() -> bool:
        return not v.demo.get(stack.listing, "heat-api", id=stack.id)["stacks"]

    if deleted():
        return
    v.demo.delete(stack.url, "heat-api")
    wait_for("the stack to be deleted", deleted, timeout=300, interval=1)


def run(
    env: Env,
    say: Callable[[str], None],
    steps: list[Step],
    probe: list[exposure.Target],
    listening: dict[int, str],
) -> list[Step]:
    """Runs every step, recording into `steps` (so a failure still leaves a summary).
    `probe` lists the host ports the VM tries, `listening` who listens on each."""
    v = Verification(env, cloudsetup.demo_client(env), steps, probe=probe, listening=listening)
    name = f"verify-{uuid.uuid4().hex[:8]}"
    compute_nodes = [node for node in env.nodes if "compute" in node.roles]
    try:
        if len(compute_nodes) > 1:
            anti_affinity_group(v)
        # Heat boots the stack's server while the steps below use the first VM;
        # its own step, last, waits for what is left of it (or reports why it
        # could not be created).
        stack: Stack | DietStackError
        try:
            stack = start_stack(v)
        except DietStackError as exc:
            stack = exc
        with v.step("boot a VM from the tiny image; wait for ACTIVE", say):
            boot(v, name)
        with v.step("console shows a DHCP address and the instance id from metadata", say):
            check_console(v)
        with v.step("instances cannot reach the control plane (only user-facing ports)", say):
            check_isolation(v, say)
        with v.step("floating IP answers ping from this host", say):
            floating_ip(v)
        if len(compute_nodes) > 1:
            with v.step("a VM on another node pings it over the project network", say):
                check_peer(v, name)
        with v.step("1 GB volume: create, attach, seen by the guest, detach, delete", say):
            volume(v)
        with v.step("Heat stack: network, port, server, wait condition; delete", say):
            if isinstance(stack, DietStackError):
                raise stack
            finish_stack(v, stack)
    finally:
        for cleanup in reversed(v.cleanups):
            try:
                cleanup()
            except DietStackError:
                continue
    return v.steps


def summary(steps: list[Step]) -> str:
    lines = [f"{'#':<3} {'STEP':<68} {'RESULT':<7} TIME"]
    for number, step in enumerate(steps, 1):
        result = "ok" if step.ok else "FAILED"
        lines.append(f"{number:<3} {step.name:<68} {result:<7} {step.seconds:5.1f} s")
    return "\n".join(lines)
