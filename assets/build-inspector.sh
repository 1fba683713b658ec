#!/bin/bash
# make inspector: assets/inspector/{vmlinuz,initrd} from Debian packages only: the kernel package (modules for
# common NICs, disks and ext4), static busybox, kexec, zstd, wipefs and openssl (sha256) with their libraries, and the agent in
# assets/inspector-src.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/inspector}
. "$HERE/lib-kernel.sh"
need_packages busybox-static kexec-tools kmod cpio zstd util-linux openssl
kernel_unpack
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
rootfs_busybox "$R"
for b in kexec zstd wipefs openssl; do copy_binary "$R" "$(command -v $b)"; done
copy_modules "$R" "$HERE/inspector-src/modules"
install -m 0755 "$HERE/inspector-src/init" "$R/init"
install -m 0644 "$HERE/inspector-src/agent.sh" "$R/bin/agent.sh"
install -m 0755 "$HERE/inspector-src/udhcpc.script" "$R/etc/udhcpc.script"
mkdir -p "$OUT"
cp "$KERNEL_DIR/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
cpio_gz "$R" "$OUT/initrd"
# the contract's name for it (v4.2 §4.1), the same file
ln -f "$OUT/initrd" "$OUT/initrd.img"
ls -l "$OUT"
