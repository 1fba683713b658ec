#!/bin/bash
# Installs what the tests and benchmarks need on a fresh Debian 12 machine (root), and builds the demo image.
# Idempotent: skips packages that are present.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(qemu-system-x86 radvd qemu-system-arm qemu-efi-aarch64 ipxe ipxe-qemu ovmf dnsmasq-base busybox-static atftp tftpd-hpa kea-admin cpio
      isc-dhcp-client file iproute2 curl kmod kexec-tools openssl chromium socat etcd-server etcd-client)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# a real kubectl for the resource API's tests: Debian's, unless one is installed already (the Google Cloud SDK's)
if ! command -v kubectl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi
# tftpd-hpa and atftpd conflict as packages; the benchmark runs atftpd from an unpacked copy
if [ ! -x .cache/atftpd/usr/sbin/atftpd ]; then
  mkdir -p .cache/atftpd && (cd .cache && apt-get download atftpd >/dev/null 2>&1 && dpkg-deb -x atftpd_*.deb atftpd && rm -f atftpd_*.deb)
fi
# the distro services must not hold the ports our tests use
for svc in tftpd-hpa etcd; do systemctl stop "$svc" 2>/dev/null || service "$svc" stop 2>/dev/null || true; done
pkill -x in.tftpd 2>/dev/null || true
make -s assets
bash assets/build-demo-image.sh >/dev/null 2>&1 || bash assets/build-demo-image.sh
bash assets/build-local-disk.sh >/dev/null
bash assets/build-disk-image.sh >/dev/null
make -s inspector >/dev/null
