"""One uWSGI worker serving sister WSGI applications, one per port.

Nova's compute and metadata APIs, and Heat's native and CloudFormation APIs, read
the same configuration files; Placement, served beside Nova's, reads its own into
a configuration object of its own. Serving them from one Python process saves the
memory of a whole interpreter with the project loaded. uWSGI listens on every
port; the port a request arrived on (SERVER_PORT, taken from the socket, never
from the Host header) picks the application.

The pairs come from the environment, as `PORT=module:attribute` words:

    DIETSTACK_WSGI_APPS="8004=heat.wsgi.api:application 8000=heat.wsgi.cfn:application"

Standard library only: uWSGI imports this with the services' Python.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from typing import Any

VARIABLE = "DIETSTACK_WSGI_APPS"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def parse(words: str) -> dict[str, str]:
    """`PORT=module:attribute ...` -> {port: "module:attribute"}."""
    apps: dict[str, str] = {}
    for word in words.split():
        port, _, target = word.partition("=")
        if not port.isdigit() or ":" not in target:
            raise ValueError(f"{VARIABLE}: expected PORT=module:attribute, got {word!r}")
        apps[port] = target
    if not apps:
        raise ValueError(f"{VARIABLE} names no application")
    return apps


def load(target: str) -> WsgiApp:
    module, _, attribute = target.partition(":")
    app: WsgiApp = getattr(importlib.import_module(module), attribute)
    return app


def dispatcher(apps: dict[str, WsgiApp]) -> WsgiApp:
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = apps.get(str(environ.get("SERVER_PORT", "")))
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no application on this port\n"]
        return app(environ, start_response)

    return application


def from_environment() -> WsgiApp:
    # Loaded in order: the first application sets up what its project shares.
    return dispatcher({port: load(target) for port, target in parse(os.environ[VARIABLE]).items()})


if VARIABLE in os.environ:
    application = from_environment()
