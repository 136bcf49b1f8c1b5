"""destroy --data on a compute node: what its data_dir leads to there is checked
before anything is removed (the settings were checked on the control node only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dietstack.engine import teardown
from dietstack.errors import DietStackError


class NodeWithLink:
    """A node whose data_dir is a link to `target`; records every command."""

    name = "compute-1"

    def __init__(self, target: str) -> None:
        self.target = target
        self.commands: list[list[str]] = []

    def call(self, command: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        self.commands.append(command)
        if command[0] == "readlink":
            return 0, f"{self.target}\n"
        return 0, ""

    def read_text(self, path: Path) -> str | None:
        raise AssertionError("not read")

    def write_file(self, path: Path, content: bytes, mode: int = 0o600) -> None:
        raise AssertionError("not written")


@pytest.mark.parametrize("target", ["/home", "/", "/usr/lib", "/var/lib"])
def test_a_data_dir_that_leads_somewhere_shared_is_refused_untouched(target: str) -> None:
    node = NodeWithLink(target)
    with pytest.raises(DietStackError, match=f"leads \\(through a link\\) to {target},"):
        teardown.remove_data_dir_on(node, Path("/var/lib/dietstack"))
    assert [command[0] for command in node.commands] == ["readlink"]


def test_a_data_dir_of_its_own_is_removed() -> None:
    node = NodeWithLink("/srv/dietstack")
    assert teardown.remove_data_dir_on(node, Path("/var/lib/dietstack")) == ""
    assert node.commands[-1][:2] == ["sh", "-c"]
    assert node.commands[-1][-1] == "/var/lib/dietstack"


def test_what_a_node_reports_reaches_the_terminal_escaped() -> None:
    class Hostile(NodeWithLink):
        def call(self, command: list[str], stdin: bytes | None = None) -> tuple[int, str]:
            if command[0] == "readlink":
                return 0, "/srv/dietstack\n"
            return 0, "/var/lib/dietstack/\x1b]0;owned\x07\n"

    note = teardown.remove_data_dir_on(Hostile("/srv/dietstack"), Path("/var/lib/dietstack"))
    assert "\x1b" not in note and "\\x1b" in note
