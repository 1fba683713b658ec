#!/bin/bash
# make inspector: assets/inspector/{vmlinuz,initrd} from Debian packages only: the kernel package (modules for
# common NICs and disks), static busybox, kexec-tools with its libraries, and the agent in assets/inspector-src.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/inspector}
. "$HERE/lib-kernel.sh"
for p in busybox-static kexec-tools kmod cpio; do dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q 'ok installed' || missing="${missing:-} $p"; done
[ -z "${missing:-}" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
kernel_unpack
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,tmp,lib/modules/$KVER}
cp /bin/busybox "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
# kexec and the shared libraries it links
cp "$(command -v kexec)" "$R/sbin/kexec"
for lib in $(ldd "$(command -v kexec)" | awk '/=>/ {print $3} /^[ \t]*\/lib/ {print $1}'); do
  mkdir -p "$R$(dirname "$lib")" && cp -L "$lib" "$R$lib"
done
# kernel modules for the listed drivers and their dependencies
M=$KERNEL_DIR/lib/modules/$KVER
[ -s "$M/modules.dep" ] || depmod -b "$KERNEL_DIR" "$KVER"
for mod in $(cat "$HERE/inspector-src/modules"); do
  f=$(grep -E "(^|/)$mod\.ko:" "$M/modules.dep" | cut -d: -f1) || continue
  for dep in $f $(grep -E "(^|/)$mod\.ko:" "$M/modules.dep" | cut -d: -f2); do
    mkdir -p "$R/lib/modules/$KVER/$(dirname "$dep")" && cp "$M/$dep" "$R/lib/modules/$KVER/$dep"
  done
done
cp "$M"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KVER/" 2>/dev/null || true
depmod -b "$R" "$KVER"
install -m 0755 "$HERE/inspector-src/init" "$R/init"
install -m 0644 "$HERE/inspector-src/agent.sh" "$R/bin/agent.sh"
install -m 0755 "$HERE/inspector-src/udhcpc.script" "$R/etc/udhcpc.script"
cp "$HERE/inspector-src/modules" "$R/etc/modules"
mkdir -p "$OUT"
cp "$KERNEL_DIR/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
(cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -9) > "$OUT/initrd.tmp" && mv "$OUT/initrd.tmp" "$OUT/initrd"
# the contract's name for it (v4.2 §4.1), the same file
ln -f "$OUT/initrd" "$OUT/initrd.img"
ls -l "$OUT"
