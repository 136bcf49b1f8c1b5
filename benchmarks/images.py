"""Image build benchmark: cold build time, warm rebuild time and image sizes.

Run as root on the machine to measure (it removes every DietStack image first):

    python benchmarks/images.py [--keep] [--output benchmarks/results/images.md]

--keep skips the cold build and measures only a warm rebuild and the sizes.
Writes a Markdown report with the machine it ran on.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dietstack.engine.converge import LABEL_CONTAINER
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images.catalog import IMAGES, LABEL_IMAGE

GOALS = {"cold": 8 * 60.0, "warm": 30.0, "total_bytes": 1.5e9}


def dietstack(*args: str) -> float:
    command = shutil.which("dietstack") or ""
    argv = [command] if command else [sys.executable, "-m", "dietstack"]
    started = time.monotonic()
    subprocess.run([*argv, *args], check=True)
    return time.monotonic() - started


def current_tags(runtime: DockerRuntime) -> dict[str, tuple[str, int]]:
    """name -> (tag, size) of the newest image of each name."""
    newest: dict[str, tuple[str, int, str]] = {}
    for row in runtime.images(LABEL_IMAGE):
        name = row.labels.get(LABEL_IMAGE, "")
        if name and (name not in newest or row.created > newest[name][2]):
            newest[name] = (row.tag, row.size, row.created)
    return {name: (tag, size) for name, (tag, size, _) in newest.items()}


def disk_usage(runtime: DockerRuntime, tags: list[str]) -> int:
    """Bytes on disk for all these images together, shared layers counted once."""
    dirs = sorted({str(d) for tag in tags for d in runtime.image_layer_dirs(tag)})
    out = subprocess.run(
        ["du", "-s", "-c", "--block-size=1", *dirs], capture_output=True, text=True, check=True
    ).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Docker {docker or 'unknown'}"
    )


def report(cold: float | None, warm: float, sizes: dict[str, tuple[str, int]], total: int) -> str:
    def verdict(ok: bool) -> str:
        return "meets goal" if ok else "misses goal"

    lines = [
        f"# Image build benchmark ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}.",
        "",
        "| measure | result | goal | |",
        "|---|---|---|---|",
    ]
    if cold is not None:
        lines.append(
            f"| cold build (no DietStack images, base via the configured source) | "
            f"{cold / 60:.1f} min | <= 8 min | {verdict(cold <= GOALS['cold'])} |"
        )
    lines += [
        f"| warm rebuild (nothing changed) | {warm:.1f} s | <= 30 s | "
        f"{verdict(warm <= GOALS['warm'])} |",
        f"| all images on disk (shared layers once) | {total / 1e9:.2f} GB | <= 1.5 GB | "
        f"{verdict(total <= GOALS['total_bytes'])} |",
        "",
        "| image | tag | size (with base) |",
        "|---|---|---|",
    ]
    for image in IMAGES:
        tag, size = sizes[image.name]
        lines.append(f"| {image.name} | `{tag}` | {size / 1e6:.0f} MB |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="skip the cold build")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/images.md"))
    args = parser.parse_args()
    runtime = DockerRuntime.connect()
    cold = None
    if not args.keep:
        # A cold build needs every DietStack image gone, so the cloud goes first.
        for name in runtime.containers(LABEL_CONTAINER):
            runtime.remove(name)
        runtime.remove_images(LABEL_IMAGE)
        cold = dietstack("images", "build")
    warm = dietstack("images", "build")
    sizes = current_tags(runtime)
    total = disk_usage(runtime, [tag for tag, _ in sizes.values()])
    text = report(cold, warm, sizes, total)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
