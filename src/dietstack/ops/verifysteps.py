"""The steps of `dietstack verify`, each on the demo user's connection: boot the
tiny image, read its console, probe the host's ports from it, ping it on a floating
IP, ping it from a VM on another node and attach a volume (the Heat stack is in
verifystack).

Everything a step makes is noted in `Verification.cleanups`; the runner (verify)
deletes it again, whatever happened.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dietstack.apis import cloudrest
from dietstack.engine import cloudsetup
from dietstack.errors import DietStackError
from dietstack.ops import exposure
from dietstack.ops.icmp import ping
from dietstack.render import Env
from dietstack.services import cinder, keystone, neutron, nova

TINY_IMAGE = "dietstack-tiny"
MARK = "DIETSTACK-TINY"


@dataclass
class Verification:
    """What the steps share: the demo user's connection and what they made."""

    env: Env
    #: The demo user's openstacksdk connection (cloudsetup.demo_connection).
    demo: Any
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


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    interval: float = 1,
    evidence: Callable[[], str] | None = None,
) -> Any:
    """Poll `check` until it returns something true; on a timeout, the error
    carries what `evidence` shows (a guest's console, say) so the cause is visible."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DietStackError(
                f"timed out after {timeout:.0f} s waiting for {what}",
                details=last_lines(evidence) if evidence else "",
            )
        time.sleep(interval)


def last_lines(evidence: Callable[[], str], count: int = 15) -> str:
    try:
        text = evidence()
    except DietStackError as error:
        return f"(could not be read: {error.message})"
    return "\n".join(text.rstrip().splitlines()[-count:])


def _find_id(conn: Any, url: str, key: str, container: str, name: str) -> str:
    items = cloudrest.get(conn, url, container, name=name)[key]
    matching = [item for item in items if item.get("name") == name]
    if not matching:
        raise DietStackError(f"{name!r} not found", hint="run `dietstack deploy` first")
    return str(matching[0]["id"])


def boot(v: Verification, name: str, user_data: str = "") -> str:
    """Boot a tiny VM (into the anti-affinity group, if any) and wait until ACTIVE;
    returns its id. The first one booted is the VM the steps check."""
    image = _find_id(v.demo, v.url(9292, "/v2/images"), "images", "glance-api", TINY_IMAGE)
    flavors = cloudrest.get(v.demo, v.url(nova.PORT, "/v2.1/flavors"), "nova-api")["flavors"]
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
    server = cloudrest.post(v.demo, v.url(nova.PORT, "/v2.1/servers"), body, "nova-api")["server"]
    server_id = str(server["id"])
    v.server_id = v.server_id or server_id
    server_url = v.url(nova.PORT, f"/v2.1/servers/{server_id}")
    v.cleanups.append(lambda: delete_server(v, server_url, server_id))

    def active() -> bool:
        status = cloudrest.get(v.demo, server_url, "nova-api")["server"]
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
    cloudrest.delete(v.demo, server_url, "nova-api")
    servers = v.url(nova.PORT, "/v2.1/servers")

    def gone() -> bool:
        listed = cloudrest.get(v.demo, servers, "nova-api")["servers"]
        return all(server["id"] != server_id for server in listed)

    wait_for("the server to be deleted", gone, timeout=180)


def console(v: Verification, server_id: str = "") -> str:
    action = v.url(nova.PORT, f"/v2.1/servers/{server_id or v.server_id}/action")
    return str(cloudrest.post(v.demo, action, {"os-getConsoleOutput": {}}, "nova-api")["output"])


def check_console(v: Verification) -> None:
    def booted() -> bool:
        text = console(v)
        return f"{MARK} ip=" in text and f"{MARK} instance-id={v.server_id}" in text

    wait_for(
        "the console to show a DHCP address and the instance id from metadata",
        booted,
        timeout=240,
        interval=1,
        evidence=lambda: no_address_evidence(v),
    )


def no_address_evidence(v: Verification) -> str:
    """The console's end, then what tells a missing lease from a missing answer: the
    guest's DHCP client lines and its port's state (DOWN: no node's OVN claimed it)."""
    text = console(v)
    dhcp = [line for line in text.splitlines() if "udhcpc" in line][-3:]
    listing = v.url(neutron.PORT, "/v2.0/ports")
    ports = cloudrest.get(v.demo, listing, "neutron-server", device_id=v.server_id)["ports"]
    states = ", ".join(f"{port['id']} {port['status']}" for port in ports) or "none"
    return "\n".join(
        [
            "the guest's console ends:",
            *text.rstrip().splitlines()[-8:],
            "its DHCP client said last:" if dhcp else "its DHCP client said nothing",
            *dhcp,
            f"its port: {states}",
        ]
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
    group = cloudrest.post(v.demo, groups, body, "nova-api")["server_group"]
    v.group_id = str(group["id"])
    v.cleanups.append(lambda: cloudrest.delete(v.demo, f"{groups}/{group['id']}", "nova-api"))


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
    ports = cloudrest.get(v.demo, f"{base}/ports", "neutron-server", device_id=v.server_id)["ports"]
    address = ports[0]["fixed_ips"][0]["ip_address"]
    peer = boot(v, f"{name}-peer", peer_script(address))
    servers = [
        cloudrest.get(v.demo, v.url(nova.PORT, f"/v2.1/servers/{ident}"), "nova-api")["server"]
        for ident in (v.server_id, peer)
    ]
    if servers[0]["hostId"] == servers[1]["hostId"]:
        raise DietStackError("both VMs landed on the same node despite the anti-affinity group")

    def reported() -> str:
        text = console(v, peer)
        return text if PEER_OK in text or PEER_FAILED in text else ""

    text = wait_for(
        "the second VM to ping the first",
        reported,
        timeout=240,
        interval=5,
        evidence=lambda: "the second VM's console ends:\n" + console(v, peer),
    )
    if PEER_FAILED in text:
        raise DietStackError(
            f"a VM on another node could not ping {address} over the project network",
            hint="check the Geneve tunnels: `ovs-vsctl show` in openvswitch-db on both nodes, "
            "and the nodes' firewalls (udp 6081)",
        )


def floating_ip(v: Verification) -> None:
    base = v.url(neutron.PORT, "/v2.0")
    public = _find_id(v.demo, f"{base}/networks", "networks", "neutron-server", neutron.PHYSNET)
    ports = cloudrest.get(v.demo, f"{base}/ports", "neutron-server", device_id=v.server_id)["ports"]
    body = {"floatingip": {"floating_network_id": public, "port_id": ports[0]["id"]}}
    fip = cloudrest.post(v.demo, f"{base}/floatingips", body, "neutron-server")["floatingip"]
    v.floating_ip = fip["floating_ip_address"]
    v.cleanups.append(
        lambda: cloudrest.delete(v.demo, f"{base}/floatingips/{fip['id']}", "neutron-server")
    )
    wait_for(f"{v.floating_ip} to answer ping", lambda: ping(v.floating_ip), timeout=180)


def volume(v: Verification) -> None:
    project = v.demo.current_project_id
    base = v.url(cinder.PORT, f"/v3/{project}")
    body = {"volume": {"size": 1, "name": f"verify-{uuid.uuid4().hex[:8]}"}}
    created = cloudrest.post(v.demo, f"{base}/volumes", body, "cinder-api")["volume"]
    volume_url = f"{base}/volumes/{created['id']}"

    def status() -> str:
        return str(cloudrest.get(v.demo, volume_url, "cinder-api")["volume"]["status"])

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
    cloudrest.post(
        v.demo, attach_url, {"volumeAttachment": {"volumeId": created["id"]}}, "nova-api"
    )
    wait_for("the volume to be attached", reached("in-use"), timeout=180)
    wait_for(
        "the guest to see its new disk vdb",
        lambda: f"{MARK} disks=vda vdb" in console(v),
        timeout=120,
    )
    cloudrest.delete(v.demo, f"{attach_url}/{created['id']}", "nova-api")
    wait_for("the volume to be detached", reached("available"), timeout=180)
    cloudrest.delete(v.demo, volume_url, "cinder-api")
