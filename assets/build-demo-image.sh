#!/bin/bash
# Builds assets/demo/{vmlinuz,initrd.gz} and assets/demo/target.tar.gz: Debian's kernel (from the package, not
# installed) and a 1 MB busybox initramfs whose /init prints BESKAR7-DEMO-MARKER with the kernel command line,
# then powers off. target.tar.gz holds the same pair, as an OS image the inspector kexecs into.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/demo}
. "$HERE/lib-kernel.sh"
mkdir -p "$OUT"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
if [ ! -s "$OUT/vmlinuz" ]; then
  kernel_unpack
  cp "$KERNEL_DIR/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
fi
if [ ! -s "$OUT/initrd.gz" ]; then
  R=$WORK/root; rootfs_busybox "$R"
  cat > "$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "BESKAR7-DEMO-MARKER uptime=$(/bin/busybox cut -d' ' -f1 /proc/uptime) cmdline=$(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
INIT
  chmod +x "$R/init"
  cpio_gz "$R" "$OUT/initrd.gz"
fi
if [ ! -s "$OUT/target.tar.gz" ]; then
  tar -C "$OUT" -czf "$OUT/target.tar.gz.tmp" vmlinuz initrd.gz && mv "$OUT/target.tar.gz.tmp" "$OUT/target.tar.gz"
fi
# a configuration for the target: text appended to its kernel command line by the inspector
[ -s "$OUT/target.cmdline" ] || echo "beskar7.demo=configured" > "$OUT/target.cmdline"
ls -l "$OUT"
