# Sourced by the image builders: unpacks Debian's current amd64 kernel package (kernel and modules) once
# into $KERNEL_DIR (default .cache/kernel), without installing it. Sets KVER.
kernel_unpack() {
  KERNEL_DIR=${KERNEL_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/kernel}
  if [ ! -d "$KERNEL_DIR/lib/modules" ]; then
    local pkg tmp
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    [ -n "$pkg" ] || { apt-get update -qq && pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) || { echo "cannot download $pkg" >&2; return 1; }
    mkdir -p "$KERNEL_DIR.tmp" && dpkg-deb -x "$tmp"/*.deb "$KERNEL_DIR.tmp" && rm -rf "$tmp"
    mv "$KERNEL_DIR.tmp" "$KERNEL_DIR"
  fi
  KVER=$(ls "$KERNEL_DIR/lib/modules" | head -1)
}
