#!/bin/sh
# Turns the guest's exported root filesystem (/out/root.tar) into a bootable disk,
# /out/disk.qcow2, inside a throw-away Debian container, without a loop device:
# an MBR with SYSLINUX's boot code; partition 1 (active) a FAT file system with
# SYSLINUX, the kernel and the initramfs; partition 2, the last, the ext4 root
# file system that cloud-init grows to the flavor's disk.
#
#   sh build-disk.sh DISK_MIB
set -eu

recipe=/recipe
out=/out
disk_mib=$1
boot_mib=64

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    syslinux syslinux-common mtools dosfstools fdisk e2fsprogs qemu-utils

work=$(mktemp -d)
tree=$work/root
mkdir "$tree"
tar -xpf "$out/root.tar" -C "$tree" --numeric-owner --xattrs --xattrs-include="*"
# What Docker leaves in a container's file system is not the guest's; the kernel's
# file systems were left out of the export and are mounted on these at boot.
rm -f "$tree/.dockerenv"
mkdir -m 0555 "$tree/proc" "$tree/sys"
mkdir -m 0755 "$tree/dev"
echo debian >"$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$tree/etc/hosts"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$tree/etc/resolv.conf"

kernel=$(ls "$tree"/boot/vmlinuz-* | sort -V | tail -1)
version=${kernel##*/vmlinuz-}
initrd=$tree/boot/initrd.img-$version
[ -s "$initrd" ] || { echo "no initramfs for kernel $version" >&2; exit 1; }

root_mib=$(( disk_mib - 1 - boot_mib ))
truncate -s "${disk_mib}M" "$work/disk.img"
printf 'label: dos\nstart=1MiB, size=%sMiB, type=c, bootable\nstart=%sMiB, type=83\n' \
    "$boot_mib" "$(( 1 + boot_mib ))" | sfdisk -q "$work/disk.img"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$work/disk.img" bs=440 count=1 conv=notrunc status=none
sector=512
boot_start=$(( 1048576 / sector ))
mkfs.fat -F 16 -n DS-BOOT --offset "$boot_start" -h "$boot_start" "$work/disk.img" \
    $(( boot_mib * 1024 )) >/dev/null
syslinux --offset $(( boot_start * sector )) --install "$work/disk.img"
fat="$work/disk.img@@$(( boot_start * sector ))"
mcopy -i "$fat" "$kernel" ::/vmlinuz
mcopy -i "$fat" "$initrd" ::/initrd.img
mcopy -i "$fat" "$recipe/syslinux.cfg" ::/syslinux.cfg
mkfs.ext4 -q -F -L debian-root -d "$tree" -E offset=$(( (1 + boot_mib) * 1048576 )) \
    "$work/disk.img" "$(( root_mib * 1024 ))k"
used_mib=$(( $(du -sk "$tree" | cut -f 1) / 1024 ))
qemu-img convert -c -f raw -O qcow2 "$work/disk.img" "$work/disk.qcow2"

owner=$(stat -c %u:%g "$out")
cp "$work/disk.qcow2" "$out/.disk.qcow2.new"
chown "$owner" "$out/.disk.qcow2.new"
chmod 0644 "$out/.disk.qcow2.new"
mv -f "$out/.disk.qcow2.new" "$out/disk.qcow2"
echo "guest disk built: kernel $version, disk $disk_mib MiB, root file system ${used_mib} MiB used," \
    "qcow2 $(( $(stat -c %s "$out/disk.qcow2") / 1048576 )) MiB"
