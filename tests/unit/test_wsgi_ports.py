"""The dispatcher that lets one uWSGI process serve two APIs of one project."""

from __future__ import annotations

from typing import Any

import pytest

from dietstack.start import wsgi_ports


def test_parse_reads_port_and_target_pairs() -> None:
    assert wsgi_ports.parse("8004=heat.wsgi.api:application 8000=heat.wsgi.cfn:application") == {
        "8004": "heat.wsgi.api:application",
        "8000": "heat.wsgi.cfn:application",
    }


@pytest.mark.parametrize("words", ["", "heat.wsgi.api:application", "x=heat.wsgi.api", "80=mod"])
def test_parse_rejects_malformed_words(words: str) -> None:
    with pytest.raises(ValueError, match=wsgi_ports.VARIABLE):
        wsgi_ports.parse(words)


def app_saying(text: str) -> wsgi_ports.WsgiApp:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [text.encode()]

    return app


def call(app: wsgi_ports.WsgiApp, port: str) -> tuple[str, bytes]:
    seen: list[str] = []
    body = b"".join(app({"SERVER_PORT": port}, lambda status, headers: seen.append(status)))
    return seen[0], body


def test_the_port_a_request_came_in_on_picks_the_application() -> None:
    app = wsgi_ports.dispatcher({"8774": app_saying("compute"), "8775": app_saying("metadata")})
    assert call(app, "8774") == ("200 OK", b"compute")
    assert call(app, "8775") == ("200 OK", b"metadata")
    assert call(app, "80")[0] == "404 Not Found"


def test_load_imports_module_attribute() -> None:
    assert wsgi_ports.load("os.path:join") is __import__("os").path.join
