"""What the host adapters answer: a command's output, never its client's warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from dietstack.app import nodelist, nodes
from dietstack.errors import DietStackError, NodeUnreachable
from dietstack.hosts import hostio
from dietstack.hosts.hostio import LocalHost

from .fakes import fake_ssh

STALE_MASTER = "mux_client_request_session: read from master failed: Broken pipe"


def test_a_local_command_that_succeeds_answers_with_its_output_alone() -> None:
    code, output = LocalHost().call(["sh", "-c", "echo vm; echo warning >&2"])
    assert (code, output) == (0, "vm\n")


def test_a_local_command_that_fails_answers_with_its_errors_too() -> None:
    code, output = LocalHost().call(["sh", "-c", "echo partial; echo broken >&2; exit 3"])
    assert code == 3
    assert "partial" in output and "broken" in output


def test_a_stale_shared_connection_never_leaks_into_what_a_node_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = fake_ssh(tmp_path, monkeypatch, f"echo '{STALE_MASTER}' >&2; echo compute1")
    assert host.call(["hostname"]) == (0, "compute1\n")
    assert nodes.node_name(host) == "compute1"


def test_ssh_failing_to_connect_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = fake_ssh(
        tmp_path,
        monkeypatch,
        "echo 'ssh: connect to host 198.51.100.7: No route to host' >&2; exit 255",
    )
    with pytest.raises(NodeUnreachable) as caught:
        host.call(["hostname"])
    assert "198.51.100.7" in str(caught.value)


def test_a_refused_login_is_an_error_not_an_unreachable_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = fake_ssh(
        tmp_path, monkeypatch, "echo 'root@192.0.2.9: Permission denied (publickey).' >&2; exit 255"
    )
    with pytest.raises(DietStackError) as caught:
        host.call(["hostname"])
    assert not isinstance(caught.value, NodeUnreachable)
    assert nodelist.health_word(caught.value) == "error"
    assert nodelist.health_word(NodeUnreachable("x")) == "unreachable"
    row = nodelist.NodeRow("c1", "192.0.2.9", "compute", "error", "-", "-", "0", "-", "why")
    assert nodelist.render_rows([row]).splitlines()[-1] == "c1: why"


@pytest.mark.parametrize("name", [STALE_MASTER + "compute1", "-compute", "node_1", "x" * 64, ""])
def test_a_host_name_that_cannot_name_a_node_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    host = fake_ssh(tmp_path, monkeypatch, f"printf '%s\\n' '{name}'")
    with pytest.raises(DietStackError) as caught:
        nodes.node_name(host)
    assert "nothing was changed" in str(caught.value)
    assert "hostnamectl" in (caught.value.hint or "")


def test_what_a_failing_command_wrote_is_shown_without_its_control_sequences() -> None:
    # A compromised node answers with sequences that would retitle, clear and
    # overwrite the admin's terminal.
    hostile = r"printf 'first line\n\033]0;owned\007\033[2Jcleared\rhidden\tend\n'; exit 1"
    with pytest.raises(DietStackError) as failure:
        hostio.run(LocalHost(), ["sh", "-c", hostile], "checking", "look")
    shown = str(failure.value)
    assert not any(c in shown for c in "\x1b\x07\r")
    assert "first line\n\\x1b]0;owned\\x07\\x1b[2Jcleared" in shown
    assert "hidden\tend" in shown
