#!/bin/sh
# Makes DietStack's tiny test guest inside a throw-away Debian container.
#
#   sh build.sh BOOT_MODULE... -- CONFIG_DRIVE_MODULE...
#
# The dietstack package is mounted read-only at /recipe/dietstack and the
# output directory at /out; this script writes disk.img, vmlinuz and
# initramfs.gz there. Nothing here needs a loop device or privileges beyond
# Docker's defaults (mknod makes /dev/console): the filesystems are written
# straight into the disk image at their partitions' offsets.
set -eu

recipe=/recipe/dietstack/images/files/tiny
out=/out
work=$(mktemp -d)
cd "$work"

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# busybox is the guest's userland and dropbear its SSH server; the rest makes
# the disk without loop devices. zstd only in case Debian switches the module
# compression.
apt-get install -y -q --no-install-recommends \
    busybox-static dropbear-bin syslinux syslinux-common mtools dosfstools cpio zstd \
    e2fsprogs fdisk

# linux-image-cloud-amd64 is a metapackage: download the versioned image it
# names and unpack it, which is far lighter than installing it.
kernel_package=$(apt-cache depends linux-image-cloud-amd64 \
    | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kernel_package" ] || { echo "no kernel package behind linux-image-cloud-amd64" >&2; exit 1; }
# The sandbox user cannot write to this root-owned directory; that is fine.
apt-get download -q -o APT::Sandbox::User=root "$kernel_package"
dpkg-deb -x ./"$kernel_package"_*.deb kernel
version=$(ls kernel/usr/lib/modules)
modules=kernel/usr/lib/modules/$version
# The package ships no modules.dep (its postinst makes one). busybox depmod
# reads BASE/lib/modules and copes with compressed modules.
ln -s usr/lib kernel/lib
busybox depmod -b "$work/kernel" "$version"
boot_modules=
config_drive_modules=
group=boot
for module in "$@"; do
    case "$group:$module" in
        boot:--) group=config-drive ;;
        boot:*) boot_modules="$boot_modules $module" ;;
        *) config_drive_modules="$config_drive_modules $module" ;;
    esac
done
load_order() {
    # shellcheck disable=SC2086 # a list of module names
    PYTHONPATH=/recipe PYTHONDONTWRITEBYTECODE=1 \
        python3 -m dietstack.images.tinyimage load-order "$modules" $1
}
load_order "$boot_modules" >boot.order
# What the boot modules brought in already is not loaded twice.
load_order "$config_drive_modules" | grep -vxF -f boot.order >config-drive.order || true

# busybox with a link per applet, in the tree of the current directory.
install_busybox() {
    mkdir -p bin sbin usr/bin usr/sbin
    cp "$(command -v busybox)" bin/busybox
    for applet in $(busybox --list-full); do
        [ -e "$applet" ] || ln -s /bin/busybox "$applet"
    done
}

# The root filesystem: busybox, dropbear, the scripts and the guest's own files.
root=$work/root
mkdir -p "$root"
cd "$root"
mkdir -p dev proc sys run tmp var/log etc/acpi/PWRF etc/dropbear root
chmod 1777 tmp
ln -s /run var/run
install_busybox
# dropbear and every library it loads, at the paths the loader looks in.
for binary in /usr/sbin/dropbear /usr/bin/dropbearkey; do
    cp "$binary" ".$binary"
    for library in $(ldd "$binary" | grep -o '/[^ ]*'); do
        mkdir -p ".${library%/*}"
        cp -L "$library" ".$library"
    done
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >etc/passwd
printf 'root:x:0:\n' >etc/group
printf '/bin/sh\n' >etc/shells
# What tests run over SSH expect of a small guest.
for tool in sudo curl lsblk; do
    install -m 0755 "$recipe/$tool" "usr/bin/$tool"
done
install -m 0755 "$recipe/init" sbin/init
install -m 0755 "$recipe/udhcpc.script" etc/udhcpc.script
# busybox acpid runs /etc/acpi/PWRF/00000080 for the ACPI power button.
install -m 0755 "$recipe/power-button" etc/acpi/PWRF/00000080
echo tiny >etc/hostname
mkdir -p lib/modules
install_modules() {
    : >"lib/modules/$2"
    while read -r path; do
        name=$(basename "$path")
        case "$name" in
            *.ko.xz) busybox xz -dc "$work/$modules/$path" ;;
            *.ko.zst) zstd -dcq "$work/$modules/$path" ;;
            *.ko.gz) gzip -dc "$work/$modules/$path" ;;
            *.ko) cat "$work/$modules/$path" ;;
            *) echo "unexpected module file $path" >&2; exit 1 ;;
        esac >"lib/modules/${name%.ko*}.ko"
        echo "${name%.ko*}.ko" >>"lib/modules/$2"
    done <"$1"
}
install_modules "$work/config-drive.order" config-drive.order

# The initramfs: busybox, the modules decompressed (busybox insmod is not sure
# to read compressed ones) and the init that mounts the root filesystem.
initramfs=$work/initramfs
mkdir -p "$initramfs"
cd "$initramfs"
mkdir -p dev proc sys newroot lib/modules
install_busybox
install_modules "$work/boot.order" load-order
install -m 0755 "$recipe/initramfs-init" init
# The kernel opens /dev/console for init before anything is mounted.
mknod -m 0600 dev/console c 5 1
mknod -m 0600 "$root/dev/console" c 5 1
find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9 -n >"$work/initramfs.gz"
cd "$work"
cp "kernel/boot/vmlinuz-$version" vmlinuz

# The disk, in whole MiB: an MBR with SYSLINUX's boot code; partition 1 (active)
# a FAT filesystem with SYSLINUX, the kernel and the initramfs; partition 2 the
# ext4 root filesystem: its files, ext4's own blocks, and about 6 MiB for what
# the guest writes.
mib() { echo $(( ($1 + 1048575) / 1048576 )); }
boot_mib=$(mib $(( $(stat -c %s vmlinuz) + $(stat -c %s initramfs.gz) + 524288 )))
root_mib=$(( $(mib $(( $(du -sk --apparent-size "$root" | cut -f 1) * 1024 * 9 / 8 ))) + 7 ))
disk_mib=$(( 1 + boot_mib + root_mib ))
truncate -s "${disk_mib}M" disk.img
printf 'label: dos\nstart=1MiB, size=%sMiB, type=c, bootable\nstart=%sMiB, type=83\n' \
    "$boot_mib" "$(( 1 + boot_mib ))" | sfdisk -q disk.img
dd if=/usr/lib/syslinux/mbr/mbr.bin of=disk.img bs=440 count=1 conv=notrunc status=none
sector=512
boot_start=$(( 1048576 / sector ))
mkfs.fat -n TINY --offset "$boot_start" -h "$boot_start" disk.img $(( boot_mib * 1024 )) >/dev/null
syslinux --offset $(( boot_start * sector )) --install disk.img
fat="disk.img@@$(( boot_start * sector ))"
mcopy -i "$fat" vmlinuz ::/vmlinuz
mcopy -i "$fat" initramfs.gz ::/initrd.gz
mcopy -i "$fat" "$recipe/syslinux.cfg" ::/syslinux.cfg
mkfs.ext4 -q -F -L tiny-root -d "$root" -E root_owner=0:0,offset=$(( (1 + boot_mib) * 1048576 )) \
    -J size=1 -m 0 disk.img "$(( root_mib * 1024 ))k"
kib=$(( disk_mib * 1024 ))

# Replace the outputs whole, owned like the directory they land in.
owner=$(stat -c %u:%g "$out")
for file in disk.img vmlinuz initramfs.gz; do
    cp "$file" "$out/.$file.new"
    chown "$owner" "$out/.$file.new"
    chmod 0644 "$out/.$file.new"
    mv -f "$out/.$file.new" "$out/$file"
done
echo "tiny image built: kernel $version, disk $((kib / 1024)) MiB," \
    "initramfs $(($(stat -c %s initramfs.gz) / 1024)) KiB, root filesystem $root_mib MiB," \
    "modules $(tr '\n' ' ' <"$initramfs/lib/modules/load-order")," \
    "config drive modules $(tr '\n' ' ' <"$root/lib/modules/config-drive.order")"
