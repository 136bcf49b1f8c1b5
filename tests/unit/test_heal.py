"""The health-check wrapper that ends a container which stays unhealthy."""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from dietstack.engine import converge, publictls
from dietstack.engine.converge import NodePaths
from dietstack.engine.publictls import Names
from dietstack.hosts.dockerdata import LABEL_WATCHED, watched_health
from dietstack.model import HEALTH_LINK, STARTING_INTERVAL, Container, Healthcheck
from dietstack.start import heal, run_check

from .helpers import make_env


def test_failures_count_in_a_row_and_not_in_the_start_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = str(tmp_path / "health")
    ended: list[int] = []
    monkeypatch.setattr(heal, "end_container", lambda failures, retries: ended.append(failures))
    monkeypatch.setattr(heal, "seconds_up", lambda: 10.0)
    assert heal.read_state(link) == ("starting", 0)  # not checked yet
    assert heal.supervise(3, 60, lambda: (1, "no"), link=link) == 1
    assert heal.read_state(link) == ("starting", 0) and ended == []  # in the start period
    monkeypatch.setattr(heal, "seconds_up", lambda: 100.0)
    heal.supervise(3, 60, lambda: (1, "no"), link=link)
    heal.supervise(3, 60, lambda: (1, "no"), link=link)
    assert heal.read_state(link) == ("starting", 2) and ended == [1, 2]
    heal.supervise(3, 60, lambda: (1, "no"), link=link)
    assert heal.read_state(link) == ("unhealthy", 3)  # never passed, past the start period
    assert heal.supervise(3, 60, lambda: (0, "ok"), link=link) == 0
    assert heal.read_state(link) == ("healthy", 0)
    heal.supervise(3, 60, lambda: (1, "no"), link=link)
    assert heal.read_state(link) == ("healthy", 1)  # Docker's rule: healthy until 3 in a row
    # A check that never returns has already counted when it is killed.
    heal.supervise(
        3, 60, lambda: (0 if heal.read_state(link) == ("healthy", 2) else 1, ""), link=link
    )
    assert heal.read_state(link) == ("healthy", 0)
    os.unlink(link)
    os.symlink("no such verdict", link)
    assert heal.read_state(link) == ("starting", 0)


def test_a_failure_is_shown_in_the_log_and_a_pass_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(heal, "seconds_up", lambda: 100.0)
    heal.supervise(3, 60, lambda: (0, "https://x: HTTP 200"), ends=False, link=str(tmp_path / "h"))
    assert capsys.readouterr().err == ""
    heal.supervise(
        3, 60, lambda: (1, "unhealthy: x: refused\n"), ends=False, link=str(tmp_path / "h")
    )
    assert capsys.readouterr().err == "health check failed (1 in a row): unhealthy: x: refused\n"


def test_a_watcher_that_only_reports_never_ends_its_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heal, "seconds_up", lambda: 100.0)
    monkeypatch.setattr("os.kill", lambda pid, sig: pytest.fail("signalled"))
    for _ in range(8):
        heal.supervise(3, 60, lambda: (1, ""), ends=False, link=str(tmp_path / "h"))
    assert heal.read_state(str(tmp_path / "h")) == ("unhealthy", 8)


def test_the_watcher_loop_checks_often_until_a_verdict_then_every_interval() -> None:
    script = heal.watch_script(("nft", "list", "table", "inet", "x y"), 15, 10, 3, 20, True)
    assert script.startswith("while :; do ")
    assert 'state=$(readlink /run/dietstack-health); case "$state" in' in script
    assert "healthy*|unhealthy*) sleep 15;; *) sleep 5;;" in script
    assert (
        "/usr/bin/python3 -S /usr/lib/dietstack/dietstack-start --heal 3,20,10,1 -- "
        "nft list table inet 'x y'" in script
    )
    # The loop is valid shell.
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0


def test_checks_the_shell_runs_alone_and_those_it_does_not() -> None:
    assert heal.quick_check(("nft", "list", "table")) == ("nft", "list", "table")
    tcp = heal.quick_check(("/usr/lib/dietstack/dietstack-start", "--health-tcp", "10.1.2.3:5671"))
    assert tcp == ("bash", "-c", ": </dev/tcp/10.1.2.3/5671")
    https = heal.quick_check(("/x/dietstack-start", "--health-http", "https://a:1/v3"))
    assert https is not None and "--cacert /etc/dietstack-tls/public-ca.pem" in https[2]
    assert heal.quick_check(("/x/dietstack-start", "--health-http", "http://a:1/")) is None
    assert heal.quick_check(("/x/dietstack-start", "--health-connected", "a,b")) is None
    assert heal.quick_check(("/x/dietstack-start", "--health-tcp", "no-port")) is None


def run_rounds(where: Path, state: str) -> str:
    """Run the loop for a moment with the verdict at `state` and a quick check that
    notes each run in a file: what the file holds tells whether it ran."""
    where.mkdir()
    link, ran = where / "health", where / "ran"
    link.symlink_to(state)
    script = heal.watch_script(("sh", "-c", f"echo x >> {ran}"), 0, 5, 3, 0, True, link=str(link))
    subprocess.run(["timeout", "1", "sh", "-c", script], capture_output=True)
    return ran.read_text() if ran.exists() else ""


def test_a_healthy_container_is_checked_without_python_until_a_failure(tmp_path: Path) -> None:
    assert run_rounds(tmp_path / "a", "healthy 0").startswith("x\nx\n")
    # After a failure each round is supervise's, which checks again and counts.
    assert run_rounds(tmp_path / "b", "healthy 1") == ""
    assert run_rounds(tmp_path / "c", "unhealthy 3") == ""


def test_the_watcher_constants_are_the_models() -> None:
    assert str(heal.LINK) == HEALTH_LINK and heal.STARTING_INTERVAL == STARTING_INTERVAL


def encoded(stat: object) -> str:
    """As Docker sends a path's stat: JSON in base64."""
    return base64.b64encode(json.dumps(stat).encode()).decode()


def test_the_watched_verdict_is_one_of_three_words() -> None:
    assert watched_health(None) == "starting"
    assert watched_health(encoded({"name": "h", "linkTarget": "/run/healthy 0"})) == "healthy"
    assert watched_health(encoded({"linkTarget": "healthy 0", "mtime": "x"})) == "healthy"
    assert watched_health(encoded({"linkTarget": "unhealthy 4"})) == "unhealthy"
    assert watched_health(encoded({"linkTarget": "/run/../etc/passwd"})) == "starting"
    assert watched_health(encoded({"name": "x"})) == "starting"
    assert watched_health(encoded(["healthy"])) == "starting"
    assert watched_health("not base64 !") == "starting"


def test_the_last_runs_verdict_is_not_taken_for_this_ones() -> None:
    """Between Docker's start of a container and its watcher's removal of the old
    link, the link still says what the last run ended with."""
    started = "2026-12-06T17:05:25.5Z"
    old = encoded({"linkTarget": "healthy 0", "mtime": "2026-12-06T17:01:00.160542819Z"})
    new = encoded({"linkTarget": "healthy 0", "mtime": "2026-12-06T18:05:26.1+01:00"})
    assert watched_health(old, started) == "starting"
    assert watched_health(new, started) == "healthy"
    assert watched_health(encoded({"linkTarget": "healthy 0"}), started) == "starting"
    assert watched_health(encoded({"linkTarget": "healthy 0", "mtime": "?"}), started) == (
        "starting"
    )


def test_the_container_is_ended_then_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr("os.kill", lambda pid, sig: sent.append((pid, sig)))
    for failures in range(1, 7):
        heal.end_container(failures, retries=3)
    assert sent == [(1, signal.SIGTERM), (-1, signal.SIGKILL)]


def test_the_first_process_start_time_is_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    fields = ["S", *(str(n) for n in range(4, 22)), "4242", "0"]
    (tmp_path / "1" / "stat").write_text(f"1 (tini (x)) {' '.join(fields)}\n")
    assert heal.pid1_started(str(tmp_path)) == 4242


def test_our_own_checks_run_in_process_others_as_programs() -> None:
    code, printed = run_check(["/usr/lib/dietstack/dietstack-start", "--health-tcp", "127.0.0.1:1"])
    assert code == 1 and "unhealthy: 127.0.0.1:1" in printed
    assert run_check(["true"]) == (0, "") and run_check(["false"])[0] == 1
    assert run_check(["sleep", "5"], timeout=1) == (1, "sleep 5: no answer within 1 s")
    assert run_check(["/no/such/check"])[0] == 127


def test_each_checked_container_is_labelled_for_its_watcher(tmp_path: Path) -> None:
    paths = NodePaths(tmp_path / "secrets.yaml", tmp_path / "overrides", tmp_path / "data")
    health = Healthcheck(("nft", "list", "table", "inet", "x"), retries=3, start_period=10)
    checked = Container(name="c", service="s", image="ovn", command=(), healthcheck=health)
    unchecked = Container(name="d", service="s", image="ovn", command=())
    env = make_env()
    assert converge.desired(checked, env, paths, "t", "i").spec.labels[LABEL_WATCHED] == "1"
    assert LABEL_WATCHED not in converge.desired(unchecked, env, paths, "t", "i").spec.labels


def test_http_check_is_healthy_below_500_and_unhealthy_when_nothing_answers() -> None:
    import http.server
    import threading

    from dietstack.start import health_http

    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(int(self.path.strip("/")))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert health_http(f"{base}/200") == 0
        assert health_http(f"{base}/401") == 0  # the server answers: it is up
        assert health_http(f"{base}/503") == 1
    finally:
        server.shutdown()
        server.server_close()
    assert health_http(base + "/200") == 1  # nothing listens any more
    assert health_http("https://127.0.0.1/") == 1


def test_the_shells_connection_check_finds_what_pythons_finds() -> None:
    """A connection this process holds to a listening port: both checks find it,
    and neither finds one to a port nothing is connected to."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)), server.accept()[0]:
            for ports, expected in (([port], 0), ([1], 1), ([1, port], 0)):
                wanted = ",".join(map(str, ports))
                quick = heal.quick_check(("/x/dietstack-start", "--health-connected", wanted))
                assert quick is not None
                assert subprocess.run(quick).returncode == expected, ports
                assert run_check(["/x/dietstack-start", "--health-connected", wanted])[0] == (
                    expected
                )


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_shells_https_check_takes_what_is_served_with_the_clouds_ca(tmp_path: Path) -> None:
    ca_key, ca_cert = publictls.public_ca()
    key, cert = publictls.server_certificate(ca_key, ca_cert, Names.of(["127.0.0.1"]))
    (tmp_path / "ca.pem").write_text(ca_cert)
    (tmp_path / "server.pem").write_text(cert + key)
    other_ca = tmp_path / "other.pem"
    other_ca.write_text(publictls.public_ca()[1])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem")
    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"https://127.0.0.1:{server.server_address[1]}"
    try:

        def passes(path: str, ca: Path = tmp_path / "ca.pem") -> bool:
            script = heal.https_script(f"{base}/{path}", str(ca))
            return subprocess.run(["sh", "-c", script]).returncode == 0

        assert passes("401") and passes("300")
        assert not passes("503")
        assert not passes("200", other_ca)
    finally:
        server.shutdown()
