from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import pytest

from dietstack.errors import DietStackError
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images import tinyimage

# Shaped like the real thing: paths relative to the modules directory, each
# line listing everything the module needs, compressed files.
MODULES_DEP = """\
kernel/net/core/failover.ko.xz:
kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz \
kernel/net/core/failover.ko.xz
kernel/drivers/block/virtio_blk.ko.xz:

kernel/drivers/acpi/button.ko.xz:
kernel/drivers/input/evdev.ko.xz:
kernel/drivers/hid/hid-generic.ko.zst: kernel/drivers/hid/hid.ko.zst
kernel/drivers/hid/hid.ko.zst:
kernel/drivers/scsi/scsi_common.ko.xz:
kernel/drivers/scsi/scsi_mod.ko.xz: kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/ata/libata.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz \
kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/ata/ata_piix.ko.xz: kernel/drivers/ata/libata.ko.xz \
kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/ata/libahci.ko.xz: kernel/drivers/ata/libata.ko.xz \
kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/ata/ahci.ko.xz: kernel/drivers/ata/libahci.ko.xz kernel/drivers/ata/libata.ko.xz \
kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/cdrom/cdrom.ko.xz:
kernel/drivers/scsi/sr_mod.ko.xz: kernel/drivers/cdrom/cdrom.ko.xz \
kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/fs/isofs/isofs.ko.xz:
"""
BUILTIN = """\
kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci.ko
"""


def test_dependencies_come_first_and_only_once() -> None:
    order = tinyimage.load_order(MODULES_DEP, ["virtio_net", "virtio_blk", "net_failover"])
    assert order == [
        "kernel/net/core/failover.ko.xz",
        "kernel/drivers/net/net_failover.ko.xz",
        "kernel/drivers/net/virtio_net.ko.xz",
        "kernel/drivers/block/virtio_blk.ko.xz",
    ]


def test_built_in_modules_are_skipped() -> None:
    order = tinyimage.load_order(MODULES_DEP, ["virtio_pci", "virtio_blk"], BUILTIN)
    assert order == ["kernel/drivers/block/virtio_blk.ko.xz"]


def test_dashes_and_underscores_name_the_same_module() -> None:
    assert tinyimage.load_order(MODULES_DEP, ["hid_generic"]) == [
        "kernel/drivers/hid/hid.ko.zst",
        "kernel/drivers/hid/hid-generic.ko.zst",
    ]
    assert tinyimage.module_name("kernel/drivers/hid/hid-generic.ko.zst") == "hid_generic"
    assert tinyimage.module_name("virtio_blk.ko") == "virtio_blk"


def test_a_module_found_nowhere_is_an_error() -> None:
    with pytest.raises(ValueError, match="virtio_scsi"):
        tinyimage.load_order(MODULES_DEP, ["virtio_scsi"], BUILTIN)


def test_a_dependency_cycle_is_an_error() -> None:
    with pytest.raises(ValueError, match="cycle"):
        tinyimage.load_order("a.ko: b.ko\nb.ko: a.ko\n", ["a"])


def test_the_wanted_modules_resolve_against_the_real_layout() -> None:
    wanted = (*tinyimage.MODULES, *tinyimage.CONFIG_DRIVE_MODULES)
    order = tinyimage.load_order(MODULES_DEP, wanted, BUILTIN)
    assert [tinyimage.module_name(path) for path in order] == [
        "failover",
        "net_failover",
        "virtio_net",
        "virtio_blk",
        "button",
        "evdev",
        "scsi_common",
        "scsi_mod",
        "libata",
        "ata_piix",
        "libahci",
        "ahci",
        "cdrom",
        "sr_mod",
        "isofs",
    ]


def test_main_prints_the_load_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "modules.dep").write_text(MODULES_DEP)
    (tmp_path / "modules.builtin").write_text(BUILTIN)
    assert tinyimage.main(["load-order", str(tmp_path), "virtio_pci", "virtio_net"]) == 0
    assert capsys.readouterr().out.split() == [
        "kernel/net/core/failover.ko.xz",
        "kernel/drivers/net/net_failover.ko.xz",
        "kernel/drivers/net/virtio_net.ko.xz",
    ]
    assert tinyimage.main(["load-order", str(tmp_path), "nonesuch"]) == 1
    assert "nonesuch" in capsys.readouterr().err
    assert tinyimage.main([]) == 2


# --- the recipe and the cache ---------------------------------------------------------

FILES = {"build.sh": b"echo build\n", "init": b"#!/bin/sh\n"}


def test_the_recipe_hash_covers_base_files_and_modules() -> None:
    one = tinyimage.recipe_hash("base:1", FILES, ("virtio_net",))
    assert one == tinyimage.recipe_hash("base:1", dict(FILES), ("virtio_net",))
    assert one != tinyimage.recipe_hash("base:2", FILES, ("virtio_net",))
    assert one != tinyimage.recipe_hash("base:1", FILES, ("virtio_net", "virtio_blk"))
    assert one != tinyimage.recipe_hash(
        "base:1", {**FILES, "init": b"#!/bin/sh\n\n"}, ("virtio_net",)
    )


def test_the_recipe_files_are_packaged() -> None:
    files = tinyimage.recipe_files()
    assert {"build.sh", "init", "initramfs-init", "udhcpc.script", "power-button"} <= set(files)
    assert b"root=/dev/vda2" in files["syslinux.cfg"]
    assert tinyimage.MARKER.encode() in files["init"]


def _write_outputs(directory: Path) -> None:
    for name in tinyimage.OUTPUTS:
        (directory / name).write_bytes(b"x")


def test_outputs_count_only_with_a_matching_stamp(tmp_path: Path) -> None:
    assert not tinyimage.is_current(tmp_path, "abc")
    _write_outputs(tmp_path)
    assert not tinyimage.is_current(tmp_path, "abc")
    (tmp_path / tinyimage.STAMP).write_text("abc\n")
    assert tinyimage.is_current(tmp_path, "abc")
    assert not tinyimage.is_current(tmp_path, "abd")
    (tmp_path / "vmlinuz").write_bytes(b"")
    assert not tinyimage.is_current(tmp_path, "abc")


class FakeRunner:
    """Stands in for DockerRuntime.run_throwaway: plays the build container."""

    def __init__(self, exit_code: int = 0, output: str = "", write: bool = True) -> None:
        self.exit_code = exit_code
        self.output = output
        self.write = write
        self.calls: list[tuple[str, list[str], list[tuple[str, str, bool]]]] = []

    def run_throwaway(
        self, image: str, command: Iterable[str], mounts: Iterable[tuple[str, str, bool]] = ()
    ) -> tuple[int, str]:
        mounted = list(mounts)
        self.calls.append((image, list(command), mounted))
        if self.write:
            out = next(src for src, dst, _ in mounted if dst == tinyimage.OUTPUT_MOUNT)
            _write_outputs(Path(out))
        return self.exit_code, self.output

    def as_runtime(self) -> DockerRuntime:
        return cast(DockerRuntime, cast(Any, self))


def test_build_runs_one_container_then_reuses_its_outputs(tmp_path: Path) -> None:
    runner = FakeRunner(output="...\ntiny image built: kernel 6.12, disk 14 MiB\n")
    said: list[str] = []
    image = tinyimage.build(runner.as_runtime(), "base:1", tmp_path / "tiny", said.append)
    assert image.disk == tmp_path / "tiny" / "disk.img"
    assert image.kernel.name == "vmlinuz" and image.initramfs.name == "initramfs.gz"
    [(base, command, mounts)] = runner.calls
    assert base == "base:1"
    assert command[:2] == ["sh", tinyimage.BUILD_SCRIPT]
    assert command[2:] == [*tinyimage.MODULES, "--", *tinyimage.CONFIG_DRIVE_MODULES]
    assert (str(tmp_path / "tiny"), tinyimage.OUTPUT_MOUNT, False) in mounts
    assert any(dst == tinyimage.PACKAGE_MOUNT and ro for _, dst, ro in mounts)
    assert "kernel 6.12, disk 14 MiB" in said[-1]

    again = tinyimage.build(runner.as_runtime(), "base:1", tmp_path / "tiny", said.append)
    assert again == image and len(runner.calls) == 1
    tinyimage.build(runner.as_runtime(), "base:2", tmp_path / "tiny", said.append)
    assert len(runner.calls) == 2


def test_a_failed_build_says_why_and_leaves_no_stamp(tmp_path: Path) -> None:
    _write_outputs(tmp_path)
    (tmp_path / tinyimage.STAMP).write_text("an older recipe\n")
    lines = [f"line {n}" for n in range(100)]
    output = "\n".join([*lines, "E: Failed to fetch http://deb.debian.org/debian/pool/x.deb"])
    runner = FakeRunner(exit_code=100, output=output, write=False)
    with pytest.raises(DietStackError) as failure:
        tinyimage.build(runner.as_runtime(), "base:1", tmp_path, lambda _: None)
    assert "exit code 100" in failure.value.message
    assert "Debian package mirror" in failure.value.hint
    assert failure.value.details.endswith("x.deb") and "line 10\n" not in failure.value.details
    assert not (tmp_path / tinyimage.STAMP).exists()


def test_missing_outputs_fail_the_build(tmp_path: Path) -> None:
    runner = FakeRunner(write=False)
    with pytest.raises(DietStackError, match="not written"):
        tinyimage.build(runner.as_runtime(), "base:1", tmp_path, lambda _: None)
