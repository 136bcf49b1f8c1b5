"""How each setting's value is read: one parser per kind of value.

Each takes the raw YAML value and returns the typed value, or raises ValueError
with a message that says what is expected (settings.py names the setting).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {type(raw).__name__}")
    return raw.strip()


def choice(*choices: str) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        value = _text(raw)
        if value not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return value

    return parse


def yes_no(raw: object) -> bool:
    """true/false (YAML also reads yes/no as these)."""
    if isinstance(raw, bool):
        return raw
    value = _text(raw).lower()
    if value not in ("true", "false", "yes", "no"):
        raise ValueError("expected true or false")
    return value in ("true", "yes")


def _unusable(kind: str, address: ipaddress.IPv4Address | ipaddress.IPv4Network) -> str:
    """Why an address or range cannot carry the cloud's traffic ('' when it can)."""
    for unusable, why in (
        ("is_loopback", "is a loopback address, reachable from this host only"),
        ("is_link_local", "is link-local (169.254.0.0/16), not routed between hosts"),
        ("is_multicast", "is a multicast address"),
        ("is_unspecified", "is the unspecified address"),
        ("is_reserved", "is in the reserved range 240.0.0.0/4"),
    ):
        if getattr(address, unusable):
            return f"{why}; use a {kind}"
    return ""


def ipv4(raw: object) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.IPv4Address(_text(raw))
    except ipaddress.AddressValueError:
        raise ValueError("expected an IPv4 address such as 192.168.1.10") from None
    problem = _unusable("LAN address of this host such as 192.168.1.10", address)
    if problem:
        raise ValueError(problem)
    return address


def cidr(raw: object) -> ipaddress.IPv4Network:
    text = _text(raw)
    if "/" not in text:
        raise ValueError("expected a network in CIDR form such as 172.24.4.0/24")
    try:
        network = ipaddress.IPv4Network(text)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.IPv4Network(text, strict=False)
            raise ValueError(f"has host bits set; did you mean {fixed}?") from None
        raise ValueError("expected a network in CIDR form such as 172.24.4.0/24") from None
    if network.prefixlen > 28:
        raise ValueError("is too small for floating IPs; use a /28 or larger, e.g. a /24")
    problem = _unusable("private range such as 172.24.4.0/24", network)
    if problem:
        raise ValueError(problem)
    return network


def interface_name(raw: object) -> str:
    value = _text(raw)
    if value and (len(value) > 15 or "/" in value or " " in value):
        raise ValueError("is not a valid network interface name")
    return value


#: The operating system's own trees: data_dir is never one of them nor inside one.
#: (/lib, /lib64 and the like are matched by their prefix.)
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lost+found",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lock",
    "/var/run",
)
#: Directories other programs and users share: data_dir may lie inside one, but is
#: never one itself, as `destroy --data` deletes data_dir whole.
SHARED_DIRS = (
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/srv",
    "/tmp",
    "/var",
    "/var/backups",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/mail",
    "/var/spool",
    "/var/tmp",
)
_OWN_DIRECTORY = "set data_dir to a directory of its own such as /var/lib/dietstack"


def _system_tree(path: str) -> str:
    """The operating system's tree that `path` is or lies in ('' when none)."""
    top = "/" + path.split("/")[1]
    if top.startswith("/lib"):
        return top
    return next((t for t in SYSTEM_TREES if path == t or path.startswith(f"{t}/")), "")


def unfit_data_dir(path: str) -> str:
    """Why a plain absolute path cannot hold DietStack's data ('' when it can)."""
    if path == "/":
        return "the root file system"
    tree = _system_tree(path)
    if tree:
        return f"{'' if path == tree else 'inside '}{tree}, which belongs to the operating system"
    if path in SHARED_DIRS:
        return "a directory other programs share"
    return ""


def data_dir(raw: object) -> Path:
    value = _text(raw)
    if not value.startswith("/"):
        raise ValueError("must be an absolute path such as /var/lib/dietstack")
    if any(ord(char) < 0x20 or char == "\x7f" for char in value):
        raise ValueError(f"holds control characters; {_OWN_DIRECTORY}")
    parts = value.split("/")[1:]
    if any(part in (".", "..") for part in parts):
        raise ValueError(f"must be a plain path without . or .. parts; {_OWN_DIRECTORY}")
    # "//etc" and "/etc/" are /etc: checked and kept in their plain form.
    plain = "/" + "/".join(part for part in parts if part)
    real = os.path.realpath(plain)
    why, why_real = unfit_data_dir(plain), unfit_data_dir(real)
    if not why and not why_real:
        return Path(plain)
    problem = f"is {why}" if why else f"leads (through a link) to {real}, {why_real}"
    # `destroy --data` deletes data_dir whole: it must hold nothing else.
    raise ValueError(f"{problem}, and `destroy --data` deletes data_dir; {_OWN_DIRECTORY}")


def workers(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected a whole number, got {type(raw).__name__}")
    if not 1 <= raw <= 32:
        raise ValueError("must be between 1 and 32")
    return raw


def port(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected a port number, got {type(raw).__name__}")
    if not 1 <= raw <= 65535:
        raise ValueError("must be a port number between 1 and 65535, e.g. 80 or 8080")
    return raw


_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


def host_names(raw: object) -> tuple[str, ...]:
    """A YAML list (or comma-separated text) of host names or addresses."""
    items = raw if isinstance(raw, list) else _text(raw).split(",")
    names = []
    for item in items:
        name = _text(item)
        if not name:
            continue
        if not _HOST_NAME.match(name):
            raise ValueError(
                f"has {name!r}, which is not a host name or IPv4 address; list bare names "
                "such as cloud.home.lan or 192.168.1.10 (no http://, no port)"
            )
        names.append(name)
    return tuple(names)


def nfs_share(raw: object) -> str:
    value = _text(raw)
    host, _, path = value.partition(":")
    if value and (not host or not path.startswith("/") or " " in value):
        raise ValueError("expected an NFS share as host:/path, e.g. nas.lan:/volumes")
    return value


def http_url(raw: object) -> str:
    value = _text(raw).rstrip("/")
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("expected an http:// or https:// URL such as http://deb.debian.org/debian")
    return value


def optional_http_url(raw: object) -> str:
    """Empty, or an http(s) URL (its trailing slash dropped)."""
    return http_url(raw) if _text(raw) else ""


def pem_file(raw: object) -> str:
    """Empty, or the absolute path of a readable file (a PEM certificate or key)."""
    value = _text(raw)
    if not value:
        return ""
    path = Path(value)
    if not path.is_absolute():
        raise ValueError(f"expected an absolute path to a PEM file; got {value!r}")
    if not path.is_file():
        raise ValueError(f"{value} is not a file on this host")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{value} cannot be read (run dietstack as root)")
    return value
