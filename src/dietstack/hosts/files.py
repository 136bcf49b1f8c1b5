"""Replacing a file on this host all at once.

A reader (or a crash) sees the old file or the new one, never half of one: the
new content goes to a temporary file beside the target, which then replaces it.
A mode given is the temporary file's from its creation, so a secret never exists
readable by others, not even while it is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def temporary(path: Path) -> Path:
    """Where `path` is written before it replaces what is there (same directory,
    so the replacing is a rename within one file system)."""
    return path.with_name(f".{path.name}.tmp")


@contextmanager
def replacing(path: Path, mode: int | None = None, sync: bool = False) -> Iterator[BinaryIO]:
    """A new file to write `path`'s content to; it replaces `path` when the block
    ends without an error, and is removed when it does not.

    `mode` None gives what the umask allows (as open() does); a mode is set
    exactly, whatever the umask. `sync` flushes the content to disk before the
    rename, for files whose loss a crash must not cause (the secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    # A temporary file left by an interrupted write may have another mode: made
    # anew (O_EXCL), it has this one from the start.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as stream:
            if mode is not None:
                os.fchmod(stream.fileno(), mode)
            yield stream
            if sync:
                stream.flush()
                os.fsync(stream.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(
    path: Path, data: bytes | str, mode: int | None = None, sync: bool = False
) -> None:
    """Replace `path` with `data` (text is written as UTF-8) all at once."""
    with replacing(path, mode, sync) as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
