"""Pinning a node's host keys on first contact: a node that does not finish the key
exchange at once is asked again before the command gives up."""

from __future__ import annotations

from pathlib import Path

import pytest

from dietstack.errors import DietStackError
from dietstack.hosts import sshhost
from dietstack.hosts.sshhost import SshTarget

KEY = "10.9.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHfABvLY76SBlPGifJoS5nazoRoBGaFMqW0Vq1x0xw1e"


def scans(monkeypatch: pytest.MonkeyPatch, answers: list[list[str]]) -> list[str]:
    """Each scan gives the next answer; returns what was said."""
    monkeypatch.setattr(sshhost, "_scan_host_keys", lambda target: answers.pop(0))
    monkeypatch.setattr("dietstack.hosts.sshhost.time.sleep", lambda seconds: None)
    return []


def test_a_slow_node_is_asked_again_and_its_keys_pinned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    said = scans(monkeypatch, [[], [KEY]])
    known_hosts = tmp_path / "known_hosts"
    assert sshhost.pin_host_key(SshTarget("10.9.0.5"), known_hosts, said.append)
    assert known_hosts.read_text() == KEY + "\n"
    assert oct(known_hosts.stat().st_mode & 0o777) == "0o600"
    assert any("asking again" in line for line in said), said


def test_a_node_that_never_answers_is_a_clear_error_and_nothing_is_pinned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    said = scans(monkeypatch, [[], [], []])
    known_hosts = tmp_path / "known_hosts"
    with pytest.raises(DietStackError, match="10.9.0.5: no SSH server answered on port 22"):
        sshhost.pin_host_key(SshTarget("10.9.0.5"), known_hosts, said.append)
    assert not known_hosts.exists()
