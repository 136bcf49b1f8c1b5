"""Does a KVM guest really boot here? Boot the tiny test kernel briefly and see.

Some hosts have /dev/kvm yet cannot run ordinary guests (nested or
paravirtualised setups): only a real boot tells. The guest prints a marker and
powers off at once when its kernel command line asks for a probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dietstack.hosts.hostio import Host
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images import tinyimage
from dietstack.progress import Progress

MARKER = "DIETSTACK-TINY probe=ok"


@dataclass(frozen=True)
class NodeCopy:
    """Where a node other than this host runs the probe."""

    host: Host
    runtime: DockerRuntime
    data_dir: Path


TIMEOUT = 60


def kvm_guest_boots(
    runtime: DockerRuntime,
    image_tags: dict[str, str],
    data_dir: Path,
    progress: Progress,
    node: NodeCopy | None = None,
) -> bool:
    """Boot the probe on this host, or on a node (`node`: the node's host adapter,
    runtime and data directory; the test kernel built here is copied there)."""
    where = node.host.name if node else "this host"
    progress.say(f"      checking whether KVM guests run on {where} (a test guest boots briefly)")
    tiny = tinyimage.build(runtime, image_tags["base"], data_dir / "images" / "tiny", progress.say)
    probe_dir = tiny.kernel.parent
    if node is not None:
        probe_dir = node.data_dir / "images" / "probe"
        for part in (tiny.kernel, tiny.initramfs):
            node.host.write_file(probe_dir / part.name, part.read_bytes(), 0o644)
        runtime = node.runtime
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
        mounts=((str(probe_dir), "/probe", True),),
        devices=("/dev/kvm:/dev/kvm",),
    )
    return MARKER in output
