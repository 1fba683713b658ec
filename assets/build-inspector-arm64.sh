#!/bin/bash
# make inspector: assets/inspector/arm64/{vmlinuz,initrd,initrd.img}, the inspector for ARM64 servers, and
# assets/demo/arm64/target.tar.gz, an arm64 target to kexec (Debian's kernel and a busybox initramfs that prints
# BESKAR7-DEMO-MARKER). Debian has no arm64 iPXE: such a server boots Debian's signed arm64 network GRUB, which
# loads these over TFTP (its configuration picks arm64/ by $grub_cpu). From Debian's arm64 packages, downloaded
# and unpacked (this machine's architectures are left alone): the kernel and its modules, static busybox, kexec
# with the libraries it needs, and the same agent as the x86-64 inspector.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/inspector/arm64}
DEMO=${2:-$HERE/demo/arm64}
. "$HERE/lib-kernel.sh"
need_packages busybox-static kmod cpio file binutils
SYS=$HERE/../.cache/arm64-root
if [ ! -x "$SYS/sbin/kexec" ] || [ ! -d "$SYS/lib/modules" ]; then
  foreign_apt arm64
  kpkg=$(apt-cache "${FOREIGN_APT[@]}" depends linux-image-arm64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  # kexec's libraries, as the package lists name them (readelf picks those it needs)
  libs=$(apt-cache "${FOREIGN_APT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances --no-pre-depends kexec-tools | grep -E '^(lib|zlib)' | sort -u)
  rm -rf "$SYS.tmp"
  # shellcheck disable=SC2086
  foreign_unpack arm64 "$SYS.tmp" "${kpkg%:arm64}" busybox-static kexec-tools $libs
  # links into packages not unpacked (documentation) would dangle
  find "$SYS.tmp" -xtype l -delete
  rm -rf "$SYS" && mv "$SYS.tmp" "$SYS"
fi
KERNEL_DIR=$SYS
KVER=$(ls "$SYS/lib/modules" | head -1)
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT

R=$WORK/root
rootfs_busybox "$R" "$SYS/bin/busybox"
copy_foreign_binary "$R" "$SYS" /sbin/kexec
copy_modules "$R" "$HERE/inspector-src/modules"
install -m 0755 "$HERE/inspector-src/init" "$R/init"
install -m 0644 "$HERE/inspector-src/agent.sh" "$R/bin/agent.sh"
install -m 0755 "$HERE/inspector-src/udhcpc.script" "$R/etc/udhcpc.script"
mkdir -p "$OUT"
cp "$SYS/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
cpio_gz "$R" "$OUT/initrd"
ln -f "$OUT/initrd" "$OUT/initrd.img"

# the arm64 demo target: the same kernel, and an initramfs that says where it runs
T=$WORK/target
rootfs_busybox "$T" "$SYS/bin/busybox"
cat > "$T/init" <<'INIT'
#!/bin/busybox sh
export PATH=/bin
mount -t proc proc /proc
echo "BESKAR7-DEMO-MARKER uptime=$(cut -d' ' -f1 /proc/uptime) machine=$(uname -m) cmdline=$(cat /proc/cmdline)"
poweroff -f
INIT
chmod +x "$T/init"
mkdir -p "$DEMO" "$WORK/tar"
cp "$SYS/boot/vmlinuz-$KVER" "$WORK/tar/vmlinuz"
cpio_gz "$T" "$WORK/tar/initrd.gz"
tar -C "$WORK/tar" -czf "$DEMO/target.tar.gz.tmp" vmlinuz initrd.gz && mv "$DEMO/target.tar.gz.tmp" "$DEMO/target.tar.gz"
ls -l "$OUT" "$DEMO"
