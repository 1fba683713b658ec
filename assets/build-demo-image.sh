#!/bin/bash
# Builds assets/demo/{vmlinuz,initrd.gz} and assets/demo/target.tar.gz: Debian's kernel (from the package, not
# installed) and a 1 MB busybox initramfs whose /init prints BESKAR7-DEMO-MARKER with the kernel command line and
# the firmware's Secure Boot state as the target sees it (secureboot=1 and a locked-down kernel under Secure Boot;
# efivarfs is Debian's signed module, which a locked-down kernel loads), then powers off. target.tar.gz holds the same pair, as an OS image the inspector kexecs into.
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
  kernel_unpack
  R=$WORK/root; rootfs_busybox "$R"
  cp "$(find "$KERNEL_DIR/lib/modules/$KVER" -name 'efivarfs.ko*' | head -1)" "$R/efivarfs.ko"
  cat > "$R/init" <<'INIT'
#!/bin/busybox sh
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
sb=none
if [ -d /sys/firmware/efi ]; then
  insmod /efivarfs.ko 2>/dev/null; mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
  v=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
  [ -r $v ] && sb=$(od -An -tu1 $v | tr -s ' ' '\n' | grep . | tail -n1)
fi
lockdown=$(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/security/lockdown 2>/dev/null)
echo "BESKAR7-DEMO-MARKER uptime=$(cut -d' ' -f1 /proc/uptime) secureboot=$sb lockdown=${lockdown:-none} cmdline=$(cat /proc/cmdline)"
poweroff -f
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
