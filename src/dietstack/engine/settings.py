"""The one settings file: schema, safe defaults, validation and the commented file.

Each option is described once, as data: its key, what it means (written into the
file as a comment), how its default is found on this host, and how a value is
parsed. Loading collects every problem before failing, so the user fixes them
all in one go, and nothing is changed until the whole file is valid.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from dietstack import releases
from dietstack.engine import settingvalues as values
from dietstack.engine.settingsfile import read_raw
from dietstack.errors import SettingsError
from dietstack.hosts.hostnet import HostNetwork
from dietstack.services.openvswitch import TUNNEL_BRIDGE

DEFAULT_PATH = Path("/etc/dietstack/settings.yaml")

VIRT_TYPES = ("auto", "kvm", "qemu")
BASE_IMAGE_SOURCES = ("auto", "registry", "debootstrap")


@dataclass(frozen=True)
class Settings:
    """The effective, validated settings of one DietStack node."""

    release: str
    management_interface: str
    management_ip: ipaddress.IPv4Address
    external_cidr: ipaddress.IPv4Network
    external_interface: str
    tunnel_interface: str
    data_dir: Path
    api_workers: int
    virt_type: str
    nfs_share: str
    dashboard_port: int
    dashboard_https_port: int
    dashboard_behind_proxy: bool
    dashboard_names: tuple[str, ...]
    base_image: str
    debian_mirror: str
    image_mirror: str
    tls_certificate: str
    tls_private_key: str
    tls_ca_certificate: str

    def as_dict(self) -> dict[str, Any]:
        """Plain YAML-friendly values, in schema order."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value if isinstance(value, int | str) else str(value)
        return out


@dataclass(frozen=True)
class Option:
    key: str
    help: str
    parse: Callable[[object], Any]
    default: Callable[[HostNetwork], object]


OPTIONS: tuple[Option, ...] = (
    Option(
        "release",
        "OpenStack release to deploy. A deployed cloud moves to a newer one with\n"
        "`dietstack upgrade`, not by changing this.",
        values.choice(*releases.NAMES),
        lambda host: releases.DEFAULT,
    ),
    Option(
        "management_interface",
        "Host interface that carries the APIs, the overlay network and storage traffic.\n"
        "Detected: the interface of the default route.",
        values.interface_name,
        lambda host: host.management_interface(),
    ),
    Option(
        "management_ip",
        "IPv4 address of management_interface that the OpenStack APIs are published on.",
        values.ipv4,
        lambda host: _detected_ip(host),
    ),
    Option(
        "external_cidr",
        "Range for floating IPs (the `public` network). Without external_interface it is\n"
        "routed on this host, so it must not overlap any network the host is on.",
        values.cidr,
        lambda host: str(host.free_external_network()),
    ),
    Option(
        "external_interface",
        "Optional spare NIC (no IP address on it) for floating IPs visible on your LAN.\n"
        "Empty: floating IPs are reachable from this host and VMs reach out through NAT.",
        values.interface_name,
        lambda host: "",
    ),
    Option(
        "tunnel_interface",
        "Optional NIC (with an IPv4 address) for the Geneve tunnels to compute nodes.\n"
        "Empty: tunnels use management_ip. Needed where the kernel has no openvswitch\n"
        "module: Open vSwitch then takes the NIC over (never the management NIC).",
        values.interface_name,
        lambda host: "",
    ),
    Option(
        "data_dir",
        "Where databases, images, volumes and other persistent data live.",
        values.data_dir,
        lambda host: "/var/lib/dietstack",
    ),
    Option(
        "api_workers",
        "Worker processes per OpenStack API and engine. 1 suits a small box; each more\n"
        "costs about 100-150 MB of memory per service.",
        values.workers,
        lambda host: 1,
    ),
    Option(
        "virt_type",
        "Hypervisor: auto (KVM when a test guest really runs, else QEMU emulation), kvm, qemu.",
        values.choice(*VIRT_TYPES),
        lambda host: "auto",
    ),
    Option(
        "nfs_share",
        "NFS share for Cinder volumes, as host:/path. Empty: this host serves one itself\n"
        "from data_dir (a userspace NFS server; no kernel NFS server needed).",
        values.nfs_share,
        lambda host: "",
    ),
    Option(
        "dashboard_port",
        "Plain HTTP port of the dashboard (Horizon) on management_ip: it only redirects\n"
        "browsers to dashboard_https_port.",
        values.port,
        lambda host: 80,
    ),
    Option(
        "dashboard_https_port",
        "HTTPS port of the dashboard on management_ip.",
        values.port,
        lambda host: 443,
    ),
    Option(
        "dashboard_behind_proxy",
        "true when a reverse proxy of yours ends TLS in front of the dashboard and says so\n"
        "in X-Forwarded-Proto (Django's SECURE_PROXY_SSL_HEADER); false otherwise.",
        values.yes_no,
        lambda host: False,
    ),
    Option(
        "dashboard_names",
        "Extra host names the dashboard is reached by (e.g. [cloud.home.lan]), besides\n"
        "management_ip and this host's name. Browsers using other names are refused.",
        values.host_names,
        lambda host: [],
    ),
    Option(
        "base_image",
        "Where the Debian 13 base image comes from: auto (the registry when reachable,\n"
        "else debootstrap), registry (debian:trixie-slim), debootstrap (from debian_mirror).",
        values.choice(*BASE_IMAGE_SOURCES),
        lambda host: "auto",
    ),
    Option(
        "debian_mirror",
        "Debian mirror for debootstrap builds.",
        values.http_url,
        lambda host: "http://deb.debian.org/debian",
    ),
    Option(
        "image_mirror",
        "A mirror of the distributions' cloud images for `dietstack image add NAME`,\n"
        "serving each publisher's files as MIRROR/HOST/PATH; empty: the publishers.",
        values.optional_http_url,
        lambda host: "",
    ),
    Option(
        "tls_certificate",
        "Your own certificate for the APIs, the dashboard and the consoles (PEM, with its\n"
        "intermediates after it), covering management_ip and dashboard_names.\n"
        "Empty: DietStack's own CA signs one (`dietstack ca` prints the CA).",
        values.pem_file,
        lambda host: "",
    ),
    Option(
        "tls_private_key",
        "The unencrypted PEM key of tls_certificate (keep it 0600).",
        values.pem_file,
        lambda host: "",
    ),
    Option(
        "tls_ca_certificate",
        "The CA that signed tls_certificate, when it is not one this host trusts already.",
        values.pem_file,
        lambda host: "",
    ),
)

OPTION_KEYS = tuple(option.key for option in OPTIONS)


def _detected_ip(host: HostNetwork) -> str:
    address = host.primary_address(host.management_interface())
    return str(address.ip) if address else "127.0.0.1"


def defaults(host: HostNetwork) -> dict[str, object]:
    return {option.key: option.default(host) for option in OPTIONS}


def _tls_pair_problems(values: Mapping[str, Any]) -> list[str]:
    """Your own certificate comes with its key; a CA only with a certificate."""
    certificate, key = values.get("tls_certificate"), values.get("tls_private_key")
    if bool(certificate) != bool(key):
        return [
            "tls_certificate and tls_private_key: set both (your certificate and its key), "
            "or neither (DietStack's own CA signs one)"
        ]
    if values.get("tls_ca_certificate") and not certificate:
        return ["tls_ca_certificate: only used with tls_certificate; leave it empty"]
    return []


def _dashboard_port_problems(values: Mapping[str, Any]) -> list[str]:
    plain, secure = values.get("dashboard_port"), values.get("dashboard_https_port")
    if plain is not None and plain == secure:
        return [
            f"dashboard_port and dashboard_https_port: both are {plain}; the plain port "
            "only redirects to the HTTPS one, so give them different ports (e.g. 80 and 443)"
        ]
    return []


def _cross_check(values: Mapping[str, Any], host: HostNetwork) -> list[str]:
    """Problems that involve several settings or the live host."""
    problems: list[str] = _tls_pair_problems(values) + _dashboard_port_problems(values)
    mgmt_if = values.get("management_interface")
    mgmt_ip = values.get("management_ip")
    ext_cidr = values.get("external_cidr")
    ext_if = values.get("external_interface")
    interfaces = ", ".join(sorted(name for name in host.addresses if name)) or "none found"
    if mgmt_if is not None and not host.has_interface(mgmt_if):
        problems.append(
            f"management_interface: {mgmt_if!r} does not exist on this host; "
            f"use one of: {interfaces}"
        )
    elif mgmt_if is not None and mgmt_ip is not None:
        own = [addr.ip for addr in host.addresses.get(mgmt_if, ())]
        if mgmt_ip not in own:
            shown = ", ".join(map(str, own)) or "no IPv4 address"
            problems.append(
                f"management_ip: {mgmt_ip} is not an address of {mgmt_if} ({shown}); "
                f"set it to one of them"
            )
    if ext_if:
        if not host.has_interface(ext_if):
            problems.append(
                f"external_interface: {ext_if!r} does not exist on this host; "
                f"use one of: {interfaces}, or leave it empty"
            )
        elif ext_if == mgmt_if:
            problems.append(
                f"external_interface: {ext_if!r} is the management interface; use a spare "
                "NIC, or leave it empty to route floating IPs on this host"
            )
        elif host.addresses.get(ext_if):
            problems.append(
                f"external_interface: {ext_if!r} has an IP address; DietStack takes over the "
                "whole NIC, so use one without an address, or leave it empty"
            )
    problems.extend(_tunnel_problems(values, host, interfaces))
    if ext_cidr is not None:
        if mgmt_ip is not None and mgmt_ip in ext_cidr:
            problems.append(
                f"external_cidr: {ext_cidr} contains management_ip {mgmt_ip}; "
                "choose a range that is not in use, e.g. 172.24.4.0/24"
            )
        elif not ext_if:
            for network in host.used_networks():
                if ext_cidr.overlaps(network):
                    problems.append(
                        f"external_cidr: {ext_cidr} overlaps {network}, which this host "
                        f"already uses; choose another range, e.g. {host.free_external_network()}"
                    )
                    break
    return problems


def _tunnel_problems(values: Mapping[str, Any], host: HostNetwork, interfaces: str) -> list[str]:
    nic = values.get("tunnel_interface")
    if not nic:
        return []
    if not host.has_interface(nic):
        return [f"tunnel_interface: {nic!r} does not exist on this host; use one of: {interfaces}"]
    if nic == values.get("management_interface"):
        return [
            f"tunnel_interface: {nic!r} is the management interface; use a spare NIC, or "
            "leave it empty to run the tunnels over management_ip"
        ]
    if nic == values.get("external_interface"):
        return [f"tunnel_interface: {nic!r} is also external_interface; use another NIC"]
    # Once Open vSwitch owns the NIC its address sits on the tunnel bridge.
    if not host.addresses.get(nic) and not host.addresses.get(TUNNEL_BRIDGE):
        return [
            f"tunnel_interface: {nic!r} has no IPv4 address; give it one on a network "
            "that reaches the compute nodes"
        ]
    return []


def validate(raw: Mapping[str, object], host: HostNetwork, path: Path) -> Settings:
    """Turn raw file values (over defaults) into Settings, or raise listing every problem."""
    problems: list[str] = []
    for key in raw:
        if key not in OPTION_KEYS:
            close = difflib.get_close_matches(str(key), OPTION_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove it"
            problems.append(f"{key}: unknown setting; {hint}")
    merged = {**defaults(host), **{k: v for k, v in raw.items() if k in OPTION_KEYS}}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        try:
            values[option.key] = option.parse(merged[option.key])
        except ValueError as exc:
            problems.append(f"{option.key}: {merged[option.key]!r} {exc}")
    problems.extend(_cross_check(values, host))
    if problems:
        raise SettingsError(problems, str(path))
    return Settings(**values)


def load(path: Path, host: HostNetwork) -> Settings:
    return validate(read_raw(path), host, path)


def render_file(settings: Settings) -> str:
    """The settings file with a comment above each value."""
    lines = [
        "# DietStack settings. Change a value and run `dietstack deploy` again;",
        "# `dietstack config show` prints the effective values.",
        "",
    ]
    values = settings.as_dict()
    for option in OPTIONS:
        lines.extend(f"# {line}" for line in option.help.splitlines())
        dumped = yaml.safe_dump({option.key: values[option.key]}, default_flow_style=False)
        lines.append(dumped.rstrip("\n"))
        lines.append("")
    return "\n".join(lines)
