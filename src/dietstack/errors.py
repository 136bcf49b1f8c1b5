"""The one kind of error a user sees.

Everything that can go wrong for a reason the user can act on is raised as a
DietStackError carrying what went wrong and how to fix it; the CLI prints it
once, without a traceback. Anything else is a bug and keeps its traceback.
"""


class DietStackError(Exception):
    """A failure the user can act on: a message plus a hint on what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "", details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        parts = [self.message]
        if self.details:
            parts.append(self.details.rstrip())
        if self.hint:
            parts.append(f"Hint: {self.hint}")
        return printable("\n".join(parts))


def printable(text: str) -> str:
    """The text with its control characters escaped, line breaks and tabs kept.

    Errors carry what nodes and containers wrote (a command's output, a log's
    tail); a compromised node could fill that with sequences that rewrite the
    admin's terminal.
    """
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


class SettingsError(DietStackError):
    """The settings file has one or more invalid values."""

    exit_code = 2

    def __init__(self, problems: list[str], path: str) -> None:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"{path} has {len(problems)} invalid setting(s):\n{listing}",
            hint=f"edit {path} and run the command again; "
            "`dietstack config show` prints the effective values",
        )
        self.problems = problems


class NodeUnreachable(DietStackError):
    """No SSH connection to a node could be made (down, or not on the network)."""


class DockerUnavailable(DietStackError):
    """The Docker engine cannot be reached or used."""


class BuildFailed(DietStackError):
    """An image build failed."""
