"""What another node's nova-compute may run on this node's nova-ssh, whatever it asks.

sshd runs `dietstack-start --nova-ssh` for every session of the nova key (the key's
forced command), with the command asked for in SSH_ORIGINAL_COMMAND. Nova's SSH
remote file system driver needs exactly: `touch`, `rm`, `mkdir -p` and `rm -rf` of a
path, and `scp` to copy a disk (sink, `-t`) or, when an image is gone from Glance,
to fetch one (source, `-f`). Each runs only on a path inside the instances'
directory. nova-compute's scp speaks scp's own protocol (-O, see nova.py), whose
receiving end writes only where it is told and refuses file names with '/' or
'..'; SFTP, which would let the key open any file of the container, is refused.

Standard library only: it runs on the image's system Python.
"""

from __future__ import annotations

import os
import shlex
import sys

INSTANCES = "/var/lib/nova/instances"
FILE_COMMANDS = (["touch"], ["rm"], ["mkdir", "-p"], ["rm", "-rf"])
#: scp's own flags (recursive, preserve times, target is a directory, verbose).
SCP_FLAGS = {"-r", "-p", "-d", "-v"}
SCP_DIRECTIONS = {"-t", "-f"}


def inside_instances(path: str) -> bool:
    """Strictly below the instances' directory, named without '..'."""
    return (
        os.path.normpath(path).startswith(INSTANCES + "/")
        and ".." not in path.split("/")
        and "\0" not in path
    )


def _scp(words: list[str]) -> list[str] | None:
    flags, path = words[1:-1], words[-1]
    flags = [flag for flag in flags if flag != "--"]
    directions = [flag for flag in flags if flag in SCP_DIRECTIONS]
    if len(directions) != 1 or not set(flags) <= SCP_FLAGS | SCP_DIRECTIONS:
        return None
    return ["/usr/bin/scp", *flags, "--", path] if inside_instances(path) else None


def allowed(asked: str) -> list[str] | None:
    """The program to run for a request, or None when it is refused."""
    try:
        words = shlex.split(asked)
    except ValueError:
        return None
    if len(words) < 2:
        return None
    if words[0] == "scp":
        return _scp(words)
    verb, path = words[:-1], words[-1]
    if verb in FILE_COMMANDS and inside_instances(path):
        return [*verb, path]
    return None


def main() -> None:
    asked = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    command = allowed(asked)
    if command is None:
        print(f"nova-ssh: refused: {asked[:200]!r}", file=sys.stderr)
        sys.exit(1)
    os.execvp(command[0], command)
