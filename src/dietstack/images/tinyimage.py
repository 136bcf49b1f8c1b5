"""A tiny bootable test guest, made locally from Debian packages.

The image plays the part CirrOS plays in other clouds, without downloading
anything but Debian packages. Its disk has two partitions: a FAT one SYSLINUX
boots from, holding Debian's cloud kernel and a small initramfs (a static
busybox and the drivers), and an ext4 root filesystem with the guest's userland
(busybox, dropbear) that the initramfs mounts read-write and switches to, so
what a guest writes stays on its disk across reboots, snapshots and
boot-from-volume. Its init takes the host name and the SSH key from the
metadata service or a config drive and prints `DIETSTACK-TINY key=value`
markers on the serial console (the address DHCP gave it, the instance ID, the
root filesystem, the outcome of a user-data script, the block devices it sees)
so that tests can follow a guest through Nova's console log.

The build runs in one throw-away container from the base image, with this
package mounted read-only: the container runs `files/tiny/build.sh`, which in
turn runs this module (`python3 -m dietstack.images.tinyimage load-order ...`) to
order the kernel modules. That is why this module imports only the standard
library and `dietstack.errors` at import time.

The outputs are cached in their directory next to a stamp holding the hash of
the recipe; a build with the recipe unchanged starts no container.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from dietstack.errors import DietStackError

if TYPE_CHECKING:
    from dietstack.hosts.runtime import DockerRuntime

#: Modules the guest loads, by name; whichever the kernel has built in are skipped.
#: virtio_net and virtio_blk drive the NIC and disks of a QEMU/libvirt guest;
#: button and evdev deliver the ACPI power button to busybox acpid, so that a
#: clean shutdown (`openstack server stop`) ends the guest at once instead of
#: after Nova's shutdown timeout.
#: The root filesystem, ext4, is built into the kernel. These load from the initramfs.
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "button", "evdev")
#: A config drive is an ISO 9660 CD-ROM on the IDE or SATA bus. Probing those buses
#: takes a second or more under emulation, so the root filesystem's init loads these
#: while DHCP runs.
CONFIG_DRIVE_MODULES = ("ata_piix", "ahci", "sr_mod", "isofs")
#: How the build script's arguments list both: boot modules, this, config drive ones.
MODULE_GROUPS_SEPARATOR = "--"

OUTPUTS = ("disk.img", "vmlinuz", "initramfs.gz")
STAMP = "tiny.recipe"
MARKER = "DIETSTACK-TINY"

#: Where the container sees the dietstack package and the output directory.
PACKAGE_MOUNT = "/recipe/dietstack"
OUTPUT_MOUNT = "/out"
BUILD_SCRIPT = f"{PACKAGE_MOUNT}/images/files/tiny/build.sh"

#: The build script reports its result in a last line starting with this.
SUMMARY_PREFIX = "tiny image built:"

COMPRESSED_SUFFIXES = (".xz", ".zst", ".gz")


@dataclass(frozen=True)
class TinyImage:
    disk: Path
    kernel: Path
    initramfs: Path


def outputs(output_dir: Path) -> TinyImage:
    disk, kernel, initramfs = (output_dir / name for name in OUTPUTS)
    return TinyImage(disk=disk, kernel=kernel, initramfs=initramfs)


# --- the recipe and the cache ---------------------------------------------------


def files_dir() -> Path:
    return Path(str(resources.files("dietstack"))) / "images" / "files" / "tiny"


def recipe_files() -> dict[str, bytes]:
    root = files_dir()
    return {path.name: path.read_bytes() for path in sorted(root.iterdir()) if path.is_file()}


def recipe_hash(base_image: str, files: Mapping[str, bytes], modules: Sequence[str]) -> str:
    """What the outputs are made from: the base image, the scripts and the module list."""
    return digest_of(f"base {base_image}\0modules {' '.join(modules)}\0", files)


def digest_of(header: str, files: Mapping[str, bytes]) -> str:
    """A short digest of a recipe: its header line and its files, names and contents."""
    digest = hashlib.sha256(header.encode())
    for name in sorted(files):
        digest.update(f"file {name} {len(files[name])}\0".encode())
        digest.update(files[name])
    return digest.hexdigest()[:16]


def is_current(output_dir: Path, recipe: str) -> bool:
    """Whether the outputs exist and were made by this very recipe."""
    stamp = output_dir / STAMP
    try:
        built_by = stamp.read_text().strip()
    except OSError:
        return False
    return built_by == recipe and all(_nonempty(output_dir / name) for name in OUTPUTS)


def built_recipe(output_dir: Path) -> str:
    """The recipe the outputs in this directory were built from ("" if unknown)."""
    try:
        return (output_dir / STAMP).read_text().strip()
    except OSError:
        return ""


def _nonempty(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


# --- building --------------------------------------------------------------------


def build(
    runtime: DockerRuntime, base_image: str, output_dir: Path, say: Callable[[str], None]
) -> TinyImage:
    """Make (or reuse) the disk image, kernel and initramfs in `output_dir`."""
    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    image = outputs(output_dir)
    modules = (*MODULES, MODULE_GROUPS_SEPARATOR, *CONFIG_DRIVE_MODULES)
    recipe = recipe_hash(base_image, recipe_files(), modules)
    if is_current(output_dir, recipe):
        say(f"tiny test image up to date: {image.disk}")
        return image
    # A build that stops halfway must never leave a stamp vouching for old files.
    (output_dir / STAMP).unlink(missing_ok=True)
    say(
        f"building the tiny test image in a {base_image} container "
        "(it downloads about 40 MB of Debian packages)"
    )
    started = time.monotonic()
    package_dir = Path(str(resources.files("dietstack")))
    exit_code, output = runtime.run_throwaway(
        base_image,
        ["sh", BUILD_SCRIPT, *modules],
        mounts=[(str(package_dir), PACKAGE_MOUNT, True), (str(output_dir), OUTPUT_MOUNT, False)],
    )
    missing = [name for name in OUTPUTS if not _nonempty(output_dir / name)]
    if exit_code != 0 or missing:
        raise _failure(exit_code, missing, output)
    (output_dir / STAMP).write_text(recipe + "\n")
    summary = _summary(output)
    say(f"built {image.disk} in {time.monotonic() - started:.0f} s{summary}")
    return image


def _summary(output: str) -> str:
    for line in reversed(output.splitlines()):
        if line.startswith(SUMMARY_PREFIX):
            return f" ({line.removeprefix(SUMMARY_PREFIX).strip()})"
    return ""


def _failure(exit_code: int, missing: list[str], output: str) -> DietStackError:
    # Imported here: the build failure hints live with the image builder, which
    # needs the Docker library this module must not import (see the docstring).
    from dietstack.images.build import explain_build_failure

    why = f"exit code {exit_code}" if exit_code else f"{', '.join(missing)} not written"
    tail = "\n".join(output.rstrip().splitlines()[-25:])
    return DietStackError(
        f"building the tiny test image failed ({why})",
        hint=explain_build_failure(output),
        details=tail,
    )


# --- kernel modules ------------------------------------------------------------------


def module_name(path: str) -> str:
    """The name a module is known by: its file name without suffixes, `-` read as `_`."""
    name = path.rsplit("/", 1)[-1]
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, ...]]:
    """modules.dep as each module's path mapped to the paths it depends on."""
    deps: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        module, sep, needs = line.partition(":")
        if sep and module.strip():
            deps[module.strip()] = tuple(needs.split())
    return deps


def load_order(modules_dep: str, wanted: Iterable[str], builtin: str = "") -> list[str]:
    """Module paths to insmod, each after everything it depends on.

    `builtin` is the kernel's modules.builtin: a wanted module found there is
    part of the kernel already and is skipped; one found nowhere is an error.
    """
    deps = parse_modules_dep(modules_dep)
    by_name = {module_name(path): path for path in deps}
    built_in = {module_name(line) for line in builtin.split()}
    order: list[str] = []
    done: set[str] = set()

    def visit(path: str, chain: tuple[str, ...]) -> None:
        if path in done:
            return
        if path in chain:
            raise ValueError(f"modules.dep has a dependency cycle: {' -> '.join(chain + (path,))}")
        for needed in deps.get(path, ()):
            visit(needed, chain + (path,))
        done.add(path)
        order.append(path)

    for name in wanted:
        key = module_name(name)
        if key in by_name:
            visit(by_name[key], ())
        elif key not in built_in:
            raise ValueError(f"kernel module {name} is neither in modules.dep nor built in")
    return order


def main(argv: Sequence[str]) -> int:
    """Inside the build container: `load-order MODULES_DIR NAME...` prints module paths."""
    if len(argv) < 2 or argv[0] != "load-order":
        print(
            "usage: python3 -m dietstack.images.tinyimage load-order MODULES_DIR NAME...",
            file=sys.stderr,
        )
        return 2
    modules_dir = Path(argv[1])
    builtin_file = modules_dir / "modules.builtin"
    builtin = builtin_file.read_text() if builtin_file.exists() else ""
    try:
        paths = load_order((modules_dir / "modules.dep").read_text(), argv[2:], builtin)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
