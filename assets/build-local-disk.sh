#!/bin/bash
# Builds assets/demo/local-disk.img: a small disk that boots in BIOS and UEFI alike (a GRUB hybrid image from
# Debian's GRUB packages) and prints BESKAR7-LOCAL-DISK-MARKER on the serial line. The end-to-end tests give it
# to machines whose network boot must hand over to the local disk.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/demo}
[ -s "$OUT/local-disk.img" ] && exit 0
for p in grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools; do
  dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q 'ok installed' || missing="${missing:-} $p"
done
[ -z "${missing:-}" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/root/boot/grub" "$OUT"
cat > "$WORK/root/boot/grub/grub.cfg" <<'CFG'
serial --unit=0 --speed=115200
terminal_output serial console
echo BESKAR7-LOCAL-DISK-MARKER booted from the local disk
sleep 600
CFG
grub-mkrescue -o "$OUT/local-disk.img.tmp" "$WORK/root" >/dev/null 2>&1
mv "$OUT/local-disk.img.tmp" "$OUT/local-disk.img"
ls -l "$OUT/local-disk.img"
