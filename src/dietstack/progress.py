"""Progress display for long work: which step, how far, and what it is doing now.

On a terminal the current activity is one line rewritten in place; elsewhere
(CI logs, pipes) only step headings and notable lines are printed, so logs stay
readable. Steps may run side by side (image builds): each line is written whole,
under a lock, and names the step it comes from.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.interactive = self.stream.isatty() and not verbose
        self._index = 0
        self._step_started = time.monotonic()
        self._status_shown = False
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        """A notice that stays on screen."""
        with self._lock:
            self._clear_status()
            print(text, file=self.stream, flush=True)

    def step(self, title: str) -> float:
        """Starts a step; returns when it started, for `done(since=...)` when steps
        run side by side."""
        self._index += 1
        self._step_started = time.monotonic()
        self.say(f"[{self._index}/{self.total}] {title}")
        return self._step_started

    def done(self, summary: str, since: float | None = None) -> None:
        elapsed = time.monotonic() - (self._step_started if since is None else since)
        self.say(f"      {summary} ({elapsed:.0f} s)")

    def activity(self, line: str, source: str = "") -> None:
        """One line of output from the running step (`source` names it when several
        steps run at once)."""
        label = f"{source}: " if source else ""
        with self._lock:
            if self.verbose:
                print(f"      {label}{line}", file=self.stream, flush=True)
            elif self.interactive:
                width = max(20, shutil.get_terminal_size().columns - 8)
                elapsed = time.monotonic() - self._step_started
                text = f"      {elapsed:4.0f}s {label}{line.strip()}"[:width]
                print(f"\r\033[K{text}", end="", file=self.stream, flush=True)
                self._status_shown = True
            elif line.startswith("Step "):
                # Docker's "Step 3/7 : RUN ..." lines mark progress inside a build.
                print(f"      {label}{line[:160]}", file=self.stream, flush=True)

    def _clear_status(self) -> None:
        if self._status_shown:
            print("\r\033[K", end="", file=self.stream, flush=True)
            self._status_shown = False
