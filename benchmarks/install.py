"""First-install benchmark: `./install.sh` on a fresh machine, and where its time goes.

Run as root from the repository root on a machine with no DietStack cloud, no
DietStack image and, to count Docker's installation too, no Docker:

    PYTHONPATH=benchmarks:src:. python benchmarks/install.py \
        [--output benchmarks/results/install.md]

It runs `./install.sh`, stamps each line of its output with the time it was
printed, and splits the run into phases by the lines install.sh and deploy print:
DietStack's own installation (the venv, pip), the settings, Docker's
installation, the Debian root filesystem, the image builds (wall time, and each
build's own time, which overlap when builds run side by side), the KVM probe
and the test image it boots, the container steps, and what follows them.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from images import machine

GOAL_SECONDS = 300

BUILT = re.compile(r"^\s+built dietstack/([a-z]+):\S+ \((\d+) s\)")
ROOTFS = re.compile(r"^\s+using dietstack/rootfs:\S+ \((\d+) s\)")
CONTAINER_STEP = re.compile(r"^\[\d+/\d+\] \S+: ")
TINY = re.compile(r"^built \S+disk\.img in (\d+) s")


@dataclass(frozen=True)
class Line:
    at: float
    text: str


def run(command: list[str]) -> tuple[int, list[Line]]:
    started = time.monotonic()
    lines: list[Line] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for text in process.stdout:
            lines.append(Line(time.monotonic() - started, text.rstrip("\n")))
            print(text, end="", flush=True)
    return process.returncode, lines


def first(lines: list[Line], predicate: str | re.Pattern[str]) -> Line | None:
    for line in lines:
        if isinstance(predicate, str) and predicate in line.text:
            return line
        if isinstance(predicate, re.Pattern) and predicate.search(line.text):
            return line
    return None


def phases(lines: list[Line], total: float) -> list[tuple[str, float]]:
    """(phase, seconds) in order; a phase whose marks are missing is left out."""
    marks = [
        ("DietStack's installation (venv, pip)", first(lines, "Wrote ")),
        ("settings and secrets, Docker's installation and start", first(lines, "] Debian")),
        ("the Debian root filesystem (debootstrap)", first(lines, ROOTFS)),
        ("the image builds and the KVM probe", _first_container_step(lines)),
        ("the container steps", first(lines, "DietStack is deployed")),
    ]
    out: list[tuple[str, float]] = []
    previous = 0.0
    for name, mark in marks:
        if mark is None:
            continue
        out.append((name, mark.at - previous))
        previous = mark.at
    out.append(("after the deploy (clouds.yaml, the summary)", total - previous))
    return out


def _first_container_step(lines: list[Line]) -> Line | None:
    for line in lines:
        if CONTAINER_STEP.match(line.text) and "/10]" not in line.text:
            return line
    return None


def builds(lines: list[Line]) -> list[tuple[str, int]]:
    return [(m.group(1), int(m.group(2))) for line in lines if (m := BUILT.match(line.text))]


def tiny_seconds(lines: list[Line]) -> str:
    for line in lines:
        if found := TINY.match(line.text):
            return found.group(1)
    return "-"


def report(code: int, total: float, lines: list[Line]) -> str:
    own = builds(lines)
    rows = [
        f"# First-install benchmark ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}. `./install.sh` exited {code}.",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
        f"| `./install.sh` on a fresh machine, in all | {total:.0f} s | <= {GOAL_SECONDS} s |",
        *(f"| {name} | {seconds:.0f} s | - |" for name, seconds in phases(lines, total)),
        f"| the tiny test image for the KVM probe | {tiny_seconds(lines)} s | - |",
        "",
        "Each image's own build time (builds run two at a time, so these overlap):",
        "",
        "| image | s |",
        "|---|---|",
        *(f"| {name} | {seconds} |" for name, seconds in own),
        f"| sum | {sum(seconds for _, seconds in own)} |",
    ]
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    started = time.monotonic()
    code, lines = run(["./install.sh"])
    text = report(code, time.monotonic() - started, lines)
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
