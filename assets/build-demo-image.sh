#!/bin/bash
# Builds assets/demo/{vmlinuz,initrd.gz}: Debian's kernel (extracted from the package, not installed) and a
# 1 MB busybox initramfs whose /init prints BESKAR7-DEMO-MARKER with the kernel command line, then powers off.
# Everything comes from Debian packages; run as root (apt-get).
set -euo pipefail
OUT=${1:-$(dirname "$0")/demo}
mkdir -p "$OUT"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
if [ ! -s "$OUT/vmlinuz" ]; then
  PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$PKG" ] || { apt-get update -qq && PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
  (cd "$WORK" && apt-get download "$PKG" >/dev/null && dpkg-deb --fsys-tarfile "$PKG"_*.deb | tar -x -C "$WORK" ./boot)
  cp "$WORK"/boot/vmlinuz-* "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
fi
if [ ! -s "$OUT/initrd.gz" ]; then
  BB=/bin/busybox
  file -L "$BB" 2>/dev/null | grep -q 'statically linked' || { echo "need static busybox: apt-get install busybox-static" >&2; exit 1; }
  R=$WORK/root; mkdir -p "$R/bin" "$R/proc" "$R/dev"; cp "$BB" "$R/bin/busybox"
  cat > "$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "BESKAR7-DEMO-MARKER uptime=$(/bin/busybox cut -d' ' -f1 /proc/uptime) cmdline=$(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
INIT
  chmod +x "$R/init"
  (cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -9) > "$OUT/initrd.gz.tmp" && mv "$OUT/initrd.gz.tmp" "$OUT/initrd.gz"
fi
ls -l "$OUT"
