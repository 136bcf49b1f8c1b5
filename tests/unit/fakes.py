"""A stand-in for DockerRuntime that records what it is asked to do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from dietstack.runtime import DockerRuntime


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
