"""The `dietstack` command: it parses arguments and prints; each verb calls the
application layer (cloud.py opens the cloud; lifecycle, nodes, recovery, looking
and checking do the work).

Every DietStackError is printed once, as a message plus a hint, and never as a
traceback.
"""

from __future__ import annotations

import errno
import sys

import click

from dietstack.cli import (
    cert_verbs,
    cloud_verbs,
    data_verbs,
    node_verbs,
    setup_verbs,
    upgrade_verbs,
)
from dietstack.cli.base import cli
from dietstack.errors import DietStackError

#: The verb modules register themselves on the group when imported.
VERBS = (setup_verbs, cloud_verbs, node_verbs, data_verbs, cert_verbs, upgrade_verbs)


def main() -> None:
    """Run the CLI; user errors become one message, never a traceback."""
    try:
        code = cli.main(standalone_mode=False, prog_name="dietstack")
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        # A verb group called without its verb: show that group's help.
        click.echo(exc.format_message(), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        command = "dietstack --help"
        click.echo(f"dietstack: error: {exc.format_message()} (see `{command}`)", err=True)
        sys.exit(exc.exit_code)
    except DietStackError as exc:
        click.echo(f"dietstack: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A full disk is the user's to fix, wherever the write was.
        where = f" writing {exc.filename}" if exc.filename else ""
        full = DietStackError(
            f"no space left on the disk{where}",
            hint="free space there (`df -h` shows which file system is full; "
            "`docker system prune` removes unused images), then run the command again",
        )
        click.echo(f"dietstack: error: {full}", err=True)
        sys.exit(full.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted; run the command again to continue.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["cli", "main"]
