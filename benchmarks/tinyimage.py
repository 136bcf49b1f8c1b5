"""The tiny test image: its size, and how long it takes to boot under QEMU emulation.

Boots the disk image in the libvirt image's QEMU (TCG, no KVM, QEMU's user-mode network) and
times power-on -> the first `DIETSTACK-TINY ip=` line on the serial console,
which the guest prints once DHCP gave it an address (median of several boots).

    python benchmarks/tinyimage.py [--dir DIR] [--runs 5] [--output FILE]

DIR defaults to the image `dietstack image add tiny` uploads (built if needed).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
from pathlib import Path

from dietstack import releases
from dietstack.engine import settings
from dietstack.hosts import hostnet
from dietstack.hosts.runtime import DockerRuntime
from dietstack.images import build as image_build
from dietstack.images import tinyimage
from images import machine

BOOT = """
start=$(date +%s%N)
qemu-system-x86_64 -accel tcg -cpu Nehalem -m 256 -nographic -no-reboot \\
    -drive file=/tiny/disk.img,if=virtio,format=raw,snapshot=on \\
    -nic user,model=virtio-net-pci >/tmp/console 2>&1 &
qemu=$!
waited=0
until grep -q "DIETSTACK-TINY ip=" /tmp/console; do
    sleep 0.1
    waited=$((waited + 1))
    [ "$waited" -lt 1200 ] || { cat /tmp/console; kill $qemu; exit 1; }
done
echo "BOOTED $(( ($(date +%s%N) - start) / 1000000 ))"
grep -a "DIETSTACK-TINY" /tmp/console
kill $qemu
"""


def boot_seconds(runtime: DockerRuntime, libvirt_image: str, directory: Path) -> float:
    code, output = runtime.run_throwaway(
        libvirt_image, ["sh", "-c", BOOT], mounts=[(str(directory), "/tiny", True)]
    )
    for line in output.splitlines():
        if line.startswith("BOOTED "):
            return int(line.split()[1]) / 1000
    raise SystemExit(f"the guest did not boot (exit {code}):\n{output[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/tinyimage.md"))
    args = parser.parse_args()
    runtime = DockerRuntime.connect()
    effective = settings.load(settings.DEFAULT_PATH, hostnet.probe())
    tags = image_build.local_tags(runtime, effective.base_image, releases.named(effective.release))
    directory = (
        args.dir
        or tinyimage.build(
            runtime, tags["base"], effective.data_dir / "images" / "tiny", print
        ).disk.parent
    )
    image = tinyimage.outputs(directory)
    runs = [boot_seconds(runtime, tags["libvirt"], directory) for _ in range(args.runs)]
    mib = 1024 * 1024
    lines = [
        f"# Tiny test image ({datetime.date.today()})",
        "",
        f"Machine: {machine()}; QEMU emulation (TCG), 256 MiB, user-mode network.",
        "",
        "| measure | result |",
        "|---|---|",
        f"| disk image (raw, as uploaded) | {image.disk.stat().st_size / mib:.1f} MiB |",
        f"| kernel | {image.kernel.stat().st_size / mib:.1f} MiB |",
        f"| initramfs | {image.initramfs.stat().st_size / mib:.1f} MiB |",
        f"| power-on -> DHCP address (median of {args.runs}) | {statistics.median(runs):.1f} s |",
        "",
        "Boots: " + ", ".join(f"{seconds:.1f} s" for seconds in runs),
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
