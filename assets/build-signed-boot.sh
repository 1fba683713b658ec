#!/bin/bash
# make assets: the Secure Boot chain beside the iPXE binaries in the TFTP root (assets/ipxe), from Debian's signed
# packages, downloaded and unpacked (installing them would run grub-install on this machine):
#   shimx64.efi  shim-signed, signed by Microsoft: what firmware with Microsoft's keys (as servers ship) loads
#   grubx64.efi  grub-efi-amd64-signed's network GRUB, signed by Debian: shim loads it from shim's own directory;
#                it reads (tftp)/grub/grub.cfg, which the appliance renders per host
#   grubnetaa64.efi  grub-efi-arm64-signed's network GRUB, for ARM64 servers (Debian ships no arm64 iPXE), from
#                the arm64 package lists (this machine's architectures are left alone)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib-kernel.sh"
OUT=${1:-$HERE/ipxe}
CACHE=$HERE/../.cache/signed-boot
if [ ! -s "$CACHE/usr/lib/shim/shimx64.efi.signed" ] || [ ! -s "$CACHE/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && { apt-get download shim-signed grub-efi-amd64-signed >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get download shim-signed grub-efi-amd64-signed >/dev/null; }; }) ||
    { echo "cannot download shim-signed and grub-efi-amd64-signed" >&2; exit 1; }
  rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp"
  for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$CACHE.tmp"; done
  rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
fi
mkdir -p "$OUT"
install -m 0644 "$CACHE/usr/lib/shim/shimx64.efi.signed" "$OUT/shimx64.efi"
install -m 0644 "$CACHE/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed" "$OUT/grubx64.efi"
A64=$HERE/../.cache/signed-boot-arm64
if [ ! -s "$A64/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed" ]; then
  rm -rf "$A64.tmp" && foreign_unpack arm64 "$A64.tmp" grub-efi-arm64-signed && rm -rf "$A64" && mv "$A64.tmp" "$A64"
fi
install -m 0644 "$A64/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed" "$OUT/grubnetaa64.efi"
