"""The host adapter: run a command and read or write a file on one node.

Deploy works on every node through this one small interface: `LocalHost` is the
machine DietStack runs on, `sshhost.SshHost` a node reached over SSH. Nothing
else in deploy touches a node's files or runs its commands.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

from dietstack.errors import DietStackError
from dietstack.hosts import files


class Host(Protocol):
    #: How messages name the node: its host name, or "this host".
    name: str

    def call(self, command: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        """Run a command; its exit code and output.

        The output is what the command printed; when it failed, its error stream
        too. A command that succeeded answers with its standard output alone, so
        warnings (a node's SSH client reporting a stale shared connection, say)
        never end up in a host name or a JSON document read from a node.
        """
        ...

    def read_text(self, path: Path) -> str | None:
        """A file's text, or None when it does not exist."""
        ...

    def write_file(self, path: Path, content: bytes, mode: int) -> None:
        """Replace a file atomically, with this mode from the start."""
        ...


def run(host: Host, command: list[str], what: str, hint: str) -> str:
    """Run a command on the host; its output, or an error naming the node."""
    code, output = host.call(command)
    if code != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise DietStackError(f"{host.name}: {what} failed", details=tail, hint=hint)
    return output


def output_of(result: subprocess.CompletedProcess[bytes]) -> str:
    """What `Host.call` answers: standard output, and the errors when it failed."""
    output = result.stdout if result.returncode == 0 else result.stdout + result.stderr
    return output.decode(errors="replace")


def mkdirs(host: Host, *paths: Path) -> None:
    if paths:
        run(host, ["mkdir", "-p", *map(str, paths)], "creating directories", "check the disk")


def exists(host: Host, path: Path) -> bool:
    return host.call(["test", "-e", str(path)])[0] == 0


class LocalHost:
    """The machine DietStack runs on."""

    name = "this host"

    def call(self, command: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        try:
            result = subprocess.run(command, input=stdin, capture_output=True)
        except OSError as exc:
            return 127, f"{command[0]}: {exc.strerror}"
        return result.returncode, output_of(result)

    def read_text(self, path: Path) -> str | None:
        try:
            return path.read_text()
        except FileNotFoundError:
            return None

    def write_file(self, path: Path, content: bytes, mode: int) -> None:
        files.write_atomic(path, content, mode)
