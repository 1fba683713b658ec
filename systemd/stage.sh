#!/bin/bash
# Lays out everything the service runs under ROOT: the compiled service with its dashboard (dist/), boot
# scripts, production node_modules, the iPXE binaries, the signed shim and GRUBs, the inspector (x86-64 and
# arm64), the unit, the example config, the neighbour-table sysctls and the beskar7 CLI. Used by `make install` (ROOT=/) and `make deb` (a staging directory).
# usage: stage.sh ROOT PREFIX UNITDIR BINDIR
set -euo pipefail
ROOT=$1 PREFIX=$2 UNITDIR=$3 BINDIR=$4
cd "$(dirname "$0")/.."
for f in dist/src/main.js dist/src/admin/ui/dashboard.html assets/ipxe/undionly.kpxe assets/ipxe/snponly.efi \
         assets/ipxe/shimx64.efi assets/ipxe/grubx64.efi assets/ipxe/grubnetaa64.efi \
         assets/inspector/vmlinuz assets/inspector/initrd assets/inspector/initrd.img \
         assets/inspector/arm64/vmlinuz assets/inspector/arm64/initrd.img; do
  [ -s "$f" ] || { echo "stage: $f is missing (make build assets inspector)" >&2; exit 1; }
done
P=$ROOT$PREFIX
rm -rf "$P" && install -d "$P/assets" "$ROOT/etc/beskar7" "$ROOT$UNITDIR" "$ROOT$BINDIR"
cp -r dist boot-scripts package.json package-lock.json README.md docs "$P/"
cp -r assets/ipxe assets/inspector "$P/assets/"
(cd "$P" && npm ci --omit=dev --ignore-scripts=false --no-audit --no-fund --loglevel=error)
install -m 0644 systemd/beskar7.example.yaml "$ROOT/etc/beskar7/beskar7.yaml"
sed "s|/opt/beskar7|$PREFIX|g" systemd/beskar7.service > "$ROOT$UNITDIR/beskar7.service"
install -D -m 0644 systemd/60-beskar7.conf "$ROOT/usr/lib/sysctl.d/60-beskar7.conf"
printf '#!/bin/sh\nexec /usr/bin/node %s/dist/src/admin/cli/main.js "$@"\n' "$PREFIX" > "$ROOT$BINDIR/beskar7"
chmod 0755 "$ROOT$BINDIR/beskar7"
