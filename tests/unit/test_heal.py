"""The health-check wrapper that ends a container which stays unhealthy."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from dietstack.engine import converge
from dietstack.model import Container, Healthcheck, Privileges
from dietstack.start import heal, run_check


def test_failures_count_in_a_row_per_run_and_not_in_the_start_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "health.json"
    ended: list[int] = []
    monkeypatch.setattr(heal, "end_container", lambda failures, retries: ended.append(failures))
    monkeypatch.setattr(heal, "pid1_started", lambda: 7)
    monkeypatch.setattr(heal, "seconds_up", lambda: 10.0)
    assert heal.supervise(3, 60, lambda: 1, state) == 1
    assert heal.failures_so_far(7, state) == 0 and ended == []  # in the start period
    monkeypatch.setattr(heal, "seconds_up", lambda: 100.0)
    heal.supervise(3, 60, lambda: 1, state)
    heal.supervise(3, 60, lambda: 1, state)
    assert heal.failures_so_far(7, state) == 2 and ended == [1, 2]
    assert heal.supervise(3, 60, lambda: 0, state) == 0
    assert heal.failures_so_far(7, state) == 0
    # A check that Docker kills for taking too long has already counted.
    heal.supervise(3, 60, lambda: heal.failures_so_far(7, state), state)
    assert heal.failures_so_far(7, state) == 1
    # A new run of the container (its first process started again) starts over.
    assert heal.failures_so_far(8, state) == 0
    state.write_text("not json")
    assert heal.failures_so_far(7, state) == 0


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
    assert heal.pid1_started(tmp_path) == 4242


def test_our_own_checks_run_in_process_others_as_programs() -> None:
    assert run_check(["/usr/lib/dietstack/dietstack-start", "--health-tcp", "127.0.0.1:1"]) == 1
    assert run_check(["true"]) == 0 and run_check(["false"]) == 1


def test_docker_runs_every_check_through_the_wrapper() -> None:
    health = Healthcheck(("nft", "list", "table", "inet", "x"), retries=3, start_period=10)
    plain = Container(name="c", service="s", image="ovn", command=(), healthcheck=health)
    assert converge.docker_health_test(plain) == (
        "/usr/lib/dietstack/dietstack-start",
        "--heal",
        "3,10",
        "--",
        "nft",
        "list",
        "table",
        "inet",
        "x",
    )
    on_host = Container(
        name="c",
        service="s",
        image="ovn",
        command=(),
        healthcheck=health,
        privileges=Privileges(pid_host=True),
    )
    assert converge.docker_health_test(on_host) == health.test


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
