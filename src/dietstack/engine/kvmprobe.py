"""Does a KVM guest really boot here? Boot the tiny test kernel briefly and see.

Some hosts have /dev/kvm yet cannot run ordinary guests (nested or
paravirtualised setups): only a real boot tells. The guest prints a marker and
powers off at once when its kernel command line asks for a probe.
"""

from __future__ import annotations

import threading
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


class EarlyProbe:
    """The probe on this host, started in the background as soon as the images it
    needs are built, so that it runs beside the longer image builds of a first
    deploy instead of after them. `answer` waits for it (or runs it, if it never
    started)."""

    NEEDS = ("base", "libvirt")

    def __init__(self, runtime: DockerRuntime, data_dir: Path, progress: Progress) -> None:
        self._runtime = runtime
        self._data_dir = data_dir
        self._progress = progress
        self._thread: threading.Thread | None = None
        self._outcome: list[bool | BaseException] = []

    def images_built(self, tags: dict[str, str]) -> None:
        """Called with the tags of every image there so far; starts the probe once."""
        if self._thread is not None or not all(name in tags for name in self.NEEDS):
            return
        wanted = {name: tags[name] for name in self.NEEDS}
        self._thread = threading.Thread(target=self._run, args=(wanted,), name="kvm-probe")
        self._thread.start()

    def _run(self, tags: dict[str, str]) -> None:
        try:
            self._outcome.append(
                kvm_guest_boots(self._runtime, tags, self._data_dir, self._progress)
            )
        except BaseException as exc:  # handed to the caller of answer()
            self._outcome.append(exc)

    def answer(self, tags: dict[str, str]) -> bool:
        if self._thread is None:
            return kvm_guest_boots(self._runtime, tags, self._data_dir, self._progress)
        self._thread.join()
        outcome = self._outcome[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
