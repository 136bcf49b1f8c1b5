"""DietStack's in-container start program.

Every DietStack image runs this first (as `dietstack-start`, under tini). It
reads the node's settings and secrets, mounted read-only at /etc/dietstack,
renders the container's configuration files and then replaces itself with the
container's real command. It runs on the image's system Python, so it may only
use the standard library and PyYAML (python3-yaml in the base image).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dietstack import RELEASE, __version__

CONFIG_DIR = Path(os.environ.get("DIETSTACK_CONFIG_DIR", "/etc/dietstack"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dietstack-start",
        description="Render this container's configuration, then run COMMAND.",
    )
    parser.add_argument("--version", action="version", version=f"{__version__} ({RELEASE})")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the program to run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("dietstack-start: no command given", file=sys.stderr)
        sys.exit(2)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"dietstack-start: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        sys.exit(127)
