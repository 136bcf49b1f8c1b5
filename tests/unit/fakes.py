"""Stand-ins for Docker, a node's host adapter and its SSH client, recording what
they are asked to do."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from dietstack.hosts import sshhost
from dietstack.hosts.runtime import DockerRuntime
from dietstack.hosts.sshhost import SshHost, SshTarget


class FakeRuntime:
    def __init__(self, present: set[str] | None = None) -> None:
        self.present = set(present or ())
        self.builds: list[tuple[str, dict[str, str], dict[str, str], dict[str, bytes]]] = []

    def image_id(self, ref: str) -> str | None:
        return f"sha256:{abs(hash(ref)):x}" if ref in self.present else None

    def root_dir(self) -> Path:
        return Path("/")

    def pull(self, ref: str, timeout: float) -> str | None:
        return "registry not reachable"

    def build(
        self,
        context_dir: Path,
        tag: str,
        buildargs: dict[str, str],
        labels: dict[str, str],
        on_line: Callable[[str], None],
    ) -> None:
        files = {
            str(p.relative_to(context_dir)): p.read_bytes()
            for p in context_dir.rglob("*")
            if p.is_file()
        }
        self.builds.append((tag, buildargs, labels, files))
        on_line("Step 1/1 : RUN true")
        self.present.add(tag)

    def as_runtime(self) -> DockerRuntime:
        return cast(DockerRuntime, cast(Any, self))


class FakeHost:
    """A node for the host adapter: files in a dict, commands answered by a function."""

    name = "fake-node"

    def __init__(
        self,
        answers: dict[str, tuple[int, str]] | None = None,
        files: dict[str, str] | None = None,
    ) -> None:
        self.answers = answers or {}
        self.files = dict(files or {})
        self.commands: list[list[str]] = []

    def call(self, command: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        self.commands.append(command)
        return self.answers.get(" ".join(command), (0, ""))

    def read_text(self, path: Path) -> str | None:
        return self.files.get(str(path))

    def write_file(self, path: Path, content: bytes, mode: int) -> None:
        self.files[str(path)] = content.decode()


class RoutingHost(FakeHost):
    """The control node: its routes to every address leave from `source` through eth0."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def call(self, command: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        if command[:5] != ["ip", "-json", "-4", "route", "get"]:
            return super().call(command, stdin)
        self.commands.append(command)
        return 0, json.dumps([{"dst": command[5], "dev": "eth0", "prefsrc": self.source}])


def healthy_node() -> FakeHost:
    """A node that passes every check unless told otherwise."""
    return FakeHost(
        {"date +%s.%N": (0, f"{time.time():.3f}\n")},
        {
            "/etc/os-release": 'ID=debian\nPRETTY_NAME="Debian GNU/Linux 13 (trixie)"\n',
            "/proc/meminfo": "MemAvailable:   8000000 kB\n",
        },
    )


def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> SshHost:
    """A node reached through an `ssh` in PATH that runs `script` instead of connecting."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(f"#!/bin/sh\n{script}\n")
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sshhost, "CONTROL_DIR", tmp_path / "control")
    return SshHost("compute1", SshTarget("198.51.100.7"), tmp_path / "known_hosts")
