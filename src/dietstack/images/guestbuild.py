"""A Debian 13 cloud guest built here, from the configured Debian mirror only: how a
site without the internet (or CI) gets a real guest.

Two steps, neither needing a loop device or a privileged container:
1. the guest's root file system is an image built FROM DietStack's base image
   (`files/guest/Dockerfile`: the cloud kernel and its initramfs, systemd,
   cloud-init, SSH, growpart), so that every package's scripts run as in any
   image build;
2. that file system, exported as a tar file, becomes one self-contained disk in a
   throw-away container (`files/guest/build-disk.sh`): an MBR with SYSLINUX, a
   small FAT partition with the kernel and the initramfs, and the ext4 root file
   system last, where cloud-init's growpart can grow it to the flavor's disk.

One disk image, rather than a root file system with the kernel and initramfs as
separate Glance images: it can be exported, snapshotted and booted from a volume
like any distribution's image, and kernel updates inside the guest reach the
boot partition (a kernel hook copies them there).

The disk is kept in its directory beside a stamp of the recipe it came from; a
build with the recipe unchanged does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dietstack.errors import BuildFailed, DietStackError
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images import guests, tinyimage
from dietstack.images.build import explain_build_failure
from dietstack.images.catalog import LABEL_HASH, LABEL_IMAGE

#: The one distribution built here, and the catalog entry its properties come from.
BUILDABLE = "debian-13"
#: The disk's virtual size: the catalog's minimum for Debian 13 (3 GB, under 3 GiB).
DISK_MIB = 2860
DISK = "disk.qcow2"
STAMP = "guest.recipe"
REPOSITORY = "dietstack/guest-debian-13"
#: The guest's own file system, written by its own tar: owners, modes, links and
#: capabilities kept; Docker's mounts (/out) and the files Docker writes as the
#: container starts (which tar would find changing, and build-disk.sh writes for
#: the guest) left out. So are the kernel's file systems, mount points included:
#: the host changes /sys and /dev while tar reads them ("file changed as we read
#: it" fails the export), and build-disk.sh makes the empty directories.
EXPORT = (
    "tar", "--one-file-system", "--numeric-owner", "--xattrs", "--xattrs-include=*",
    "--exclude=./etc/hostname", "--exclude=./etc/hosts", "--exclude=./etc/resolv.conf",
    "--exclude=./.dockerenv", "--exclude=./proc", "--exclude=./sys", "--exclude=./dev",
    "-C", "/", "-cpf", "/out/root.tar", ".",
)  # fmt: skip
#: The build script's last line starts with this.
SUMMARY_PREFIX = "guest disk built:"


@dataclass(frozen=True)
class BuiltGuest:
    disk: Path
    summary: str


def files_dir() -> Path:
    return Path(str(resources.files("dietstack"))) / "images" / "files" / "guest"


def recipe_hash(base_image: str, files: dict[str, bytes]) -> str:
    """What the disk is made from: the base image, the recipe's files, the size."""
    return tinyimage.digest_of(f"base {base_image}\0disk {DISK_MIB}\0", files)


def recipe_files() -> dict[str, bytes]:
    root = files_dir()
    return {path.name: path.read_bytes() for path in sorted(root.iterdir()) if path.is_file()}


def buildable(name: str) -> guests.GuestImage:
    """The catalog entry `--build` makes, or a clear refusal."""
    if name != BUILDABLE:
        raise DietStackError(
            f"{name} cannot be built here; only {BUILDABLE} can (`--build`)",
            hint=f"`dietstack image add {name}` downloads it instead, or "
            f"`dietstack image add {BUILDABLE} --build` builds Debian 13 from the Debian mirror",
        )
    return guests.BY_NAME[BUILDABLE]


def build(
    runtime: DockerRuntime,
    base_image: str,
    output_dir: Path,
    say: Callable[[str], None],
    on_line: Callable[[str], None],
) -> BuiltGuest:
    """The disk in `output_dir`, built (or kept, when its recipe is unchanged)."""
    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    disk = output_dir / DISK
    recipe = recipe_hash(base_image, recipe_files())
    if _current(output_dir, recipe):
        say(f"the Debian 13 guest disk is up to date: {disk}")
        return BuiltGuest(disk, "")
    (output_dir / STAMP).unlink(missing_ok=True)
    started = time.monotonic()
    tag = f"{REPOSITORY}:{recipe}"
    if runtime.image_id(tag) is None:
        say(f"building the Debian 13 guest's root file system ({tag}) from {base_image}")
        labels = {LABEL_IMAGE: "guest-debian-13", LABEL_HASH: recipe}
        try:
            runtime.build(files_dir(), tag, {"BASE": base_image}, labels, on_line)
        except BuildFailed as exc:
            exc.message = f"building the Debian 13 guest's root file system failed: {exc.message}"
            exc.hint = explain_build_failure(exc.details)
            raise
    say("making the guest's disk: a boot partition with SYSLINUX, then the root file system")
    tar = output_dir / "root.tar"
    try:
        exit_code, output = runtime.run_throwaway(
            tag, EXPORT, mounts=[(str(output_dir), "/out", False)]
        )
        if exit_code != 0:
            raise DietStackError(
                f"exporting the Debian 13 guest's root file system failed (exit code {exit_code})",
                details="\n".join(output.rstrip().splitlines()[-25:]),
            )
        exit_code, output = runtime.run_throwaway(
            base_image,
            ["sh", "/recipe/build-disk.sh", str(DISK_MIB)],
            mounts=[(str(files_dir()), "/recipe", True), (str(output_dir), "/out", False)],
        )
    finally:
        tar.unlink(missing_ok=True)
    if exit_code != 0 or not disk.is_file():
        raise DietStackError(
            f"making the Debian 13 guest's disk failed (exit code {exit_code})",
            hint=explain_build_failure(output),
            details="\n".join(output.rstrip().splitlines()[-25:]),
        )
    (output_dir / STAMP).write_text(recipe + "\n")
    summary = _summary(output)
    say(f"built {disk} in {time.monotonic() - started:.0f} s ({summary})")
    return BuiltGuest(disk, summary)


def _current(output_dir: Path, recipe: str) -> bool:
    try:
        built_by = (output_dir / STAMP).read_text().strip()
    except OSError:
        return False
    return built_by == recipe and (output_dir / DISK).is_file()


def _summary(output: str) -> str:
    for line in reversed(output.splitlines()):
        if line.startswith(SUMMARY_PREFIX):
            return line.removeprefix(SUMMARY_PREFIX).strip()
    return ""


def scratch_dir(data_dir: Path) -> Path:
    """Where the guest disk is built and kept: beside the tiny test image."""
    return data_dir / "images" / "debian-13"
