"""The Debian guest build's own logic: what it is made from, when it builds, what it
hands the disk step, and how its failures read (Docker stood in for)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dietstack.errors import DietStackError
from dietstack.images import guestbuild

from .fakes import FakeRuntime

BASE = "dietstack/base:0123456789ab"


class GuestRuntime(FakeRuntime):
    """Builds and exports nothing real; the disk step writes a disk unless told not to."""

    def __init__(self, disk_step_fails: bool = False) -> None:
        super().__init__()
        self.disk_step_fails = disk_step_fails
        self.exports: list[str] = []
        self.throwaways: list[tuple[str, list[str], list[tuple[str, str, bool]]]] = []

    def run_throwaway(self, image, command, mounts=(), devices=()):  # type: ignore[no-untyped-def]
        mounts = list(mounts)
        out = Path(next(source for source, target, _ in mounts if target == "/out"))
        if command[0] == "tar":  # the guest's image exports itself
            self.exports.append(image)
            (out / "root.tar").write_bytes(b"tar")
            return 0, ""
        self.throwaways.append((image, list(command), mounts))
        assert (out / "root.tar").read_bytes() == b"tar"
        if self.disk_step_fails:
            return 1, "E: Failed to fetch http://deb.debian.org/debian/pool/q.deb\n"
        (out / guestbuild.DISK).write_bytes(b"QFI\xfb")
        return 0, f"...\n{guestbuild.SUMMARY_PREFIX} kernel 6.12, disk 2860 MiB\n"


def test_the_disk_is_built_once_and_kept_while_the_recipe_is_unchanged(tmp_path: Path) -> None:
    runtime = GuestRuntime()
    said: list[str] = []
    built = guestbuild.build(runtime.as_runtime(), BASE, tmp_path, said.append, said.append)
    assert built.disk == tmp_path / guestbuild.DISK and built.disk.read_bytes() == b"QFI\xfb"
    assert built.summary == "kernel 6.12, disk 2860 MiB"
    # The root file system is an image built from the base, then exported for the disk step.
    (tag, args, labels, files) = runtime.builds[0]
    assert tag.startswith(guestbuild.REPOSITORY) and args == {"BASE": BASE}
    assert "Dockerfile" in files and "build-disk.sh" in files
    assert runtime.exports == [tag]
    image, command, mounts = runtime.throwaways[0]
    assert image == BASE and command[-1] == str(guestbuild.DISK_MIB)
    assert (str(guestbuild.files_dir()), "/recipe", True) in mounts
    assert not (tmp_path / "root.tar").exists()  # the export is not kept

    again = guestbuild.build(runtime.as_runtime(), BASE, tmp_path, said.append, said.append)
    assert again.disk == built.disk and len(runtime.throwaways) == 1
    # A new base image is a new recipe.
    guestbuild.build(runtime.as_runtime(), "dietstack/base:new", tmp_path, said.append, said.append)
    assert len(runtime.throwaways) == 2


def test_a_failed_disk_step_names_the_cause_and_keeps_no_stamp(tmp_path: Path) -> None:
    runtime = GuestRuntime(disk_step_fails=True)
    with pytest.raises(DietStackError) as caught:
        guestbuild.build(runtime.as_runtime(), BASE, tmp_path, lambda line: None, print)
    assert "making the Debian 13 guest's disk failed (exit code 1)" in caught.value.message
    assert "Failed to fetch" in caught.value.details
    assert "mirror" in caught.value.hint
    assert not (tmp_path / guestbuild.STAMP).exists() and not (tmp_path / "root.tar").exists()


def test_only_debian_13_is_built_here() -> None:
    assert guestbuild.buildable("debian-13").os_version == "13"
    with pytest.raises(DietStackError, match="ubuntu-24.04 cannot be built here") as caught:
        guestbuild.buildable("ubuntu-24.04")
    assert "image add ubuntu-24.04" in caught.value.hint


def test_the_recipe_covers_every_file_and_the_base() -> None:
    files = guestbuild.recipe_files()
    assert {"Dockerfile", "build-disk.sh", "syslinux.cfg", "fstab", "zz-syslinux"} <= set(files)
    first = guestbuild.recipe_hash(BASE, files)
    assert guestbuild.recipe_hash("dietstack/base:other", files) != first
    changed = {**files, "fstab": files["fstab"] + b"\n"}
    assert guestbuild.recipe_hash(BASE, changed) != first


def test_the_guest_boots_its_root_by_label_and_keeps_new_kernels_bootable() -> None:
    files = guestbuild.recipe_files()
    assert b"root=LABEL=debian-root" in files["syslinux.cfg"]
    assert b"console=ttyS0" in files["syslinux.cfg"]
    assert b"LABEL=debian-root" in files["fstab"] and b"-L debian-root" in files["build-disk.sh"]
    assert b"/etc/kernel/postinst.d/zz-syslinux" in files["Dockerfile"]
    # Host keys and the machine id are made per guest, never shared by every guest.
    assert b"rm -f /etc/ssh/ssh_host_*" in files["Dockerfile"]


def test_the_export_leaves_out_the_kernels_file_systems_and_the_disk_makes_them() -> None:
    # The host changes /sys and /dev while tar reads them, which fails the export.
    for mount in ("./proc", "./sys", "./dev"):
        assert f"--exclude={mount}" in guestbuild.EXPORT
    script = (guestbuild.files_dir() / "build-disk.sh").read_text()
    assert 'mkdir -m 0555 "$tree/proc" "$tree/sys"' in script
    assert 'mkdir -m 0755 "$tree/dev"' in script
