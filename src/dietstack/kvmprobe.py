"""Does a KVM guest really boot here? Boot the tiny test kernel briefly and see.

Some hosts have /dev/kvm yet cannot run ordinary guests (nested or
paravirtualised setups): only a real boot tells. The guest prints a marker and
powers off at once when its kernel command line asks for a probe.
"""

from __future__ import annotations

from pathlib import Path

from dietstack import tinyimage
from dietstack.progress import Progress
from dietstack.runtime import DockerRuntime

MARKER = "DIETSTACK-TINY probe=ok"
TIMEOUT = 60


def kvm_guest_boots(
    runtime: DockerRuntime, image_tags: dict[str, str], data_dir: Path, progress: Progress
) -> bool:
    progress.say("      checking whether KVM guests run on this host (a test guest boots briefly)")
    tiny = tinyimage.build(runtime, image_tags["base"], data_dir / "images" / "tiny", progress.say)
    command = (
        "timeout",
        str(TIMEOUT),
        "qemu-system-x86_64",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "128",
        "-nographic",
        "-no-reboot",
        "-kernel",
        f"/probe/{tiny.kernel.name}",
        "-initrd",
        f"/probe/{tiny.initramfs.name}",
        "-append",
        "console=ttyS0 dietstack.probe panic=-1",
    )
    exit_code, output = runtime.run_throwaway(
        image_tags["libvirt"],
        command,
        mounts=((str(tiny.kernel.parent), "/probe", True),),
        devices=("/dev/kvm:/dev/kvm",),
    )
    return MARKER in output
