#!/bin/bash
# make deb: a Debian package of the appliance, built with dpkg-deb from the staged tree (systemd/stage.sh).
# Files under /opt/beskar7, the unit in /lib/systemd/system, sysctls in /usr/lib/sysctl.d (applied by postinst),
# /etc/beskar7/beskar7.yaml as a conffile, the beskar7 user created by postinst. Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(node -p 'require("./package.json").version')
ARCH=$(dpkg --print-architecture)
OUT=${DEB_DIR:-.cache/deb}
STAGE=$(mktemp -d); chmod 0755 "$STAGE"; trap 'rm -rf "$STAGE"' EXIT
bash systemd/stage.sh "$STAGE" /opt/beskar7 /lib/systemd/system /usr/bin
install -d "$STAGE/DEBIAN"
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: beskar7
Version: $VERSION
Architecture: $ARCH
Maintainer: Beskar7 developers <beskar7@localhost>
Depends: nodejs (>= 20), adduser, openssl
Suggests: radvd
Section: net
Priority: optional
Description: all-in-one iPXE boot server appliance
 DHCP (proxy or full), TFTP, HTTP boot scripts and images, hardware inspection and
 Redfish power control for bare-metal servers, with its state in LevelDB.
CONTROL
echo /etc/beskar7/beskar7.yaml > "$STAGE/DEBIAN/conffiles"
cat > "$STAGE/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  getent passwd beskar7 >/dev/null || adduser --system --group --home /var/lib/beskar7 --no-create-home beskar7 >/dev/null
  chgrp beskar7 /etc/beskar7/beskar7.yaml && chmod 0640 /etc/beskar7/beskar7.yaml
  # the neighbour table for a rack booting at once, now rather than at the next boot (not in a container)
  sysctl -q -p /usr/lib/sysctl.d/60-beskar7.conf 2>/dev/null || true
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
POSTINST
cat > "$STAGE/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
if [ "$1" = purge ]; then
  rm -rf /var/lib/beskar7
  getent passwd beskar7 >/dev/null && deluser --system beskar7 >/dev/null || true
fi
POSTRM
chmod 0755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/postrm"
mkdir -p "$OUT"
DEB="$OUT/beskar7_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
