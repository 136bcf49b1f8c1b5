"""The dashboard's plain HTTP port: every request is sent on to HTTPS.

A browser that types the cloud's address without https:// lands on the login
page over TLS. The Location names the host the browser asked for only when it
is one of the dashboard's names (an attacker's Host header is never echoed
back); otherwise the first name. Configured from the environment:

    DIETSTACK_HTTPS_PORT=443
    DIETSTACK_HTTPS_NAMES="192.168.1.10 cloud cloud.home.lan"

Standard library only: uWSGI imports this with the dashboard's Python.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote


def location(environ: dict[str, Any], names: list[str], port: int) -> str:
    """https://NAME[:PORT]/PATH?QUERY for this request."""
    asked = str(environ.get("HTTP_HOST", "")).rsplit(":", 1)[0] if environ.get("HTTP_HOST") else ""
    if asked.startswith("["):
        asked = ""
    host = asked if asked.lower() in (name.lower() for name in names) else names[0]
    suffix = "" if port == 443 else f":{port}"
    path = quote(str(environ.get("PATH_INFO", "/")) or "/", safe="/%:@!$&'()*+,;=-._~")
    query = str(environ.get("QUERY_STRING", ""))
    return f"https://{host}{suffix}{path}" + (f"?{query}" if query else "")


def redirecting(names: list[str], port: int) -> Callable[..., Iterable[bytes]]:
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(
            "301 Moved Permanently",
            [
                ("Location", location(environ, names, port)),
                ("Content-Type", "text/plain"),
                ("Content-Length", "0"),
            ],
        )
        return [b""]

    return application


if "DIETSTACK_HTTPS_NAMES" in os.environ:
    application = redirecting(
        os.environ["DIETSTACK_HTTPS_NAMES"].split(), int(os.environ["DIETSTACK_HTTPS_PORT"])
    )
