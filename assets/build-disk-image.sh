#!/bin/bash
# Builds assets/demo/disk.img (and .gz, .zst of it): a whole-disk image as the inspector deploys it, from Debian
# packages only. GPT with a BIOS boot partition (GRUB's core image), an EFI system partition labelled COS_GRUB
# (the kernel, a busybox initramfs, and for UEFI the chain the distributions sign: shim, then Debian's signed GRUB,
# which boots under Secure Boot as without it) and an empty ext4 COS_OEM partition. The initramfs prints
# BESKAR7-DISK-MARKER with the provider-id and the configuration the inspector wrote into COS_OEM, then
# BESKAR7-DISK-BOOTED with the firmware's Secure Boot state.
# No loop devices and no mounts: partitions are built as files (mtools, mkfs.ext4 -d) and written into place,
# and the BIOS boot code is patched in the way grub-bios-setup does it.
# usage: build-disk-image.sh [OUT_DIR] [SIZE_MIB]   (SIZE_MIB: the image's size, default 96; past 128 the rest is
# an empty ext4 COS_PERSISTENT partition, as a real image with a data filesystem: the deploy bench uses 1024)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/demo}
SIZE_MIB=${2:-96}
NAME=disk.img; [ "$SIZE_MIB" = 96 ] || NAME=disk-${SIZE_MIB}m.img
# up to date: built after this script and its sources last changed
[ -s "$OUT/$NAME.zst" ] && [ -z "$(find "$0" "$HERE/disk-src" "$HERE/lib-kernel.sh" -newer "$OUT/$NAME.zst")" ] && exit 0
SIGNED=$HERE/../.cache/signed-boot
[ -s "$SIGNED/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ] || bash "$HERE/build-signed-boot.sh"
. "$HERE/lib-kernel.sh"
need_packages busybox-static cpio kmod grub-common grub-pc-bin grub-efi-amd64-bin mtools e2fsprogs fdisk zstd
kernel_unpack
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
GRUB=/usr/lib/grub

# the OS: Debian's kernel and a busybox initramfs
R=$WORK/root
rootfs_busybox "$R"
copy_modules "$R" "$HERE/disk-src/modules"
install -m 0755 "$HERE/disk-src/init" "$R/init"
cpio_gz "$R" "$WORK/initrd.gz"

# GRUB for BIOS: its embedded configuration finds the ESP by its label and reads the configuration there
cat > "$WORK/early.cfg" <<'CFG'
search --no-floppy --label COS_GRUB --set root
set prefix=($root)/boot/grub
configfile $prefix/grub.cfg
CFG
MODS="part_gpt fat search search_label configfile normal linux echo serial terminal gzio test"
grub-mkimage -O i386-pc -o "$WORK/core.img" -c "$WORK/early.cfg" -p /boot/grub biosdisk $MODS
cat > "$WORK/grub.cfg" <<'CFG'
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
echo BESKAR7-DISK-GRUB booting the installed system
linux /boot/vmlinuz console=tty0 console=ttyS0,115200 panic=10
initrd /boot/initrd.gz
boot
CFG

# partitions in sectors of 512 bytes: BIOS boot 1 MiB, ESP, COS_OEM 16 MiB; the rest of the image left empty
BIOS_START=2048 BIOS_SECTORS=2048
ESP_START=4096 ESP_MIB=40
OEM_START=$((ESP_START + ESP_MIB * 2048)) OEM_MIB=16
[ $((OEM_START / 2048 + OEM_MIB + 1)) -le "$SIZE_MIB" ] || { echo "SIZE_MIB must be at least $((OEM_START / 2048 + OEM_MIB + 1))" >&2; exit 1; }
PERSIST_START=$((OEM_START + OEM_MIB * 2048)) PERSIST_MIB=$((SIZE_MIB - OEM_START / 2048 - OEM_MIB - 1))
IMG=$WORK/disk.img
truncate -s "${SIZE_MIB}M" "$IMG"
{
  echo "label: gpt"
  echo "start=$BIOS_START, size=$BIOS_SECTORS, type=21686148-6449-6E6F-744E-656564454649, name=BIOS"
  echo "start=$ESP_START, size=$((ESP_MIB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=COS_GRUB"
  echo "start=$OEM_START, size=$((OEM_MIB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=COS_OEM"
  [ "$SIZE_MIB" -le 128 ] || echo "start=$PERSIST_START, size=$((PERSIST_MIB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=COS_PERSISTENT"
} | sfdisk -q "$IMG"
if [ "$SIZE_MIB" -gt 128 ]; then
  mkfs.ext4 -q -F -L COS_PERSISTENT "$WORK/persist.img" "${PERSIST_MIB}M"
  dd if="$WORK/persist.img" of="$IMG" bs=512 seek=$PERSIST_START conv=notrunc,sparse status=none
  rm -f "$WORK/persist.img"
fi

truncate -s "${ESP_MIB}M" "$WORK/esp.img"
mformat -i "$WORK/esp.img" -v COS_GRUB -N 0xb7b7b7b7 ::
mmd -i "$WORK/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/debian ::/boot ::/boot/grub
# UEFI: shim on the removable media path loads grubx64.efi beside it; that GRUB (Debian's, prefix /EFI/debian on
# the partition it was loaded from) reads its grub.cfg there, and boots only the signed kernel under Secure Boot
mcopy -i "$WORK/esp.img" "$SIGNED/usr/lib/shim/shimx64.efi.signed" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$WORK/esp.img" "$SIGNED/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ::/EFI/BOOT/grubx64.efi
mcopy -i "$WORK/esp.img" "$WORK/grub.cfg" ::/EFI/debian/grub.cfg
mcopy -i "$WORK/esp.img" "$KERNEL_DIR/boot/vmlinuz-$KVER" ::/boot/vmlinuz
mcopy -i "$WORK/esp.img" "$WORK/initrd.gz" ::/boot/initrd.gz
mcopy -i "$WORK/esp.img" "$WORK/grub.cfg" ::/boot/grub/grub.cfg
mkdir -p "$WORK/oem"
mkfs.ext4 -q -F -L COS_OEM -U clear -E root_owner=0:0 -d "$WORK/oem" "$WORK/oem.img" "${OEM_MIB}M"
dd if="$WORK/esp.img" of="$IMG" bs=512 seek=$ESP_START conv=notrunc status=none
dd if="$WORK/oem.img" of="$IMG" bs=512 seek=$OEM_START conv=notrunc status=none

# BIOS: boot.img's code in the protective MBR (its partition table kept), pointing at core.img in the BIOS boot
# partition; core.img's first sector lists where the rest of it is (GRUB's boot.h and diskboot.S offsets)
le() { # value bytes: little-endian bytes as printf escapes
  local v=$1 i s=''
  for ((i = 0; i < $2; i++)); do s+=$(printf '\\x%02x' $((v & 255))); v=$((v >> 8)); done
  printf '%s' "$s"
}
patch() { printf "$3" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc status=none; }
CORE_SECTORS=$((($(stat -c %s "$WORK/core.img") + 511) / 512))
[ "$CORE_SECTORS" -le "$BIOS_SECTORS" ] || { echo "core.img does not fit the BIOS boot partition" >&2; exit 1; }
cp "$GRUB/i386-pc/boot.img" "$WORK/boot.img"
patch "$WORK/boot.img" 0x5c "$(le $BIOS_START 8)" # kernel sector
patch "$WORK/boot.img" 0x64 '\xff'                 # boot drive: the one the BIOS booted
patch "$WORK/boot.img" 0x66 '\x90\x90'             # no check that the drive is a hard disk
dd if="$WORK/boot.img" of="$IMG" bs=440 count=1 conv=notrunc status=none
patch "$WORK/core.img" $((0x200 - 12)) "$(le $((BIOS_START + 1)) 8)$(le $((CORE_SECTORS - 1)) 2)$(le 0x820 2)"
dd if="$WORK/core.img" of="$IMG" bs=512 seek=$BIOS_START conv=notrunc status=none

mkdir -p "$OUT"
gzip -1 -c "$IMG" > "$OUT/$NAME.gz.tmp" && mv "$OUT/$NAME.gz.tmp" "$OUT/$NAME.gz"
cp --sparse=always "$IMG" "$OUT/$NAME.tmp" && mv "$OUT/$NAME.tmp" "$OUT/$NAME"
zstd -q -19 -f "$IMG" -o "$OUT/$NAME.zst.tmp" && mv "$OUT/$NAME.zst.tmp" "$OUT/$NAME.zst"
ls -l "$OUT/$NAME"*
