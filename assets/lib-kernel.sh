# Sourced by the image builders. kernel_unpack: Debian's current amd64 kernel package (kernel and modules),
# unpacked once into $KERNEL_DIR (default .cache/kernel) without installing it; sets KVER.
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

# need_packages p...: installs the Debian packages that are missing
need_packages() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# rootfs_busybox ROOT: a root with static busybox and its applets in /bin
rootfs_busybox() {
  file -L /bin/busybox | grep -q 'statically linked' || { echo "need static busybox: apt-get install busybox-static" >&2; return 1; }
  mkdir -p "$1"/{bin,sbin,etc,proc,sys,dev,tmp,run}
  cp /bin/busybox "$1/bin/busybox"
  local a
  for a in $("$1/bin/busybox" --list); do [ -e "$1/bin/$a" ] || ln -s busybox "$1/bin/$a"; done
}

# copy_binary ROOT PATH: a dynamically linked program and the shared libraries it needs
copy_binary() {
  local lib
  mkdir -p "$1$(dirname "$2")" && cp "$2" "$1$2"
  for lib in $(ldd "$2" | awk '/=>/ {print $3} /^[ \t]*\/lib/ {print $1}'); do
    mkdir -p "$1$(dirname "$lib")" && cp -L "$lib" "$1$lib"
  done
}

# copy_modules ROOT LIST: the kernel modules named in LIST (one per line) and their dependencies; needs KVER
copy_modules() {
  local M=$KERNEL_DIR/lib/modules/$KVER R=$1 mod f dep
  [ -s "$M/modules.dep" ] || depmod -b "$KERNEL_DIR" "$KVER"
  mkdir -p "$R/lib/modules/$KVER"
  for mod in $(cat "$2"); do
    f=$(grep -E "(^|/)$mod\.ko(\.[a-z]+)?:" "$M/modules.dep") || continue
    for dep in $(echo "$f" | tr -d ':'); do
      mkdir -p "$R/lib/modules/$KVER/$(dirname "$dep")" && cp "$M/$dep" "$R/lib/modules/$KVER/$dep"
    done
  done
  cp "$M"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KVER/" 2>/dev/null || true
  depmod -b "$R" "$KVER"
  cp "$2" "$R/etc/modules"
}

# cpio_gz ROOT OUT: the root as a gzip'd newc initramfs
cpio_gz() {
  (cd "$1" && find . | cpio -o -H newc 2>/dev/null | gzip -9) > "$2.tmp" && mv "$2.tmp" "$2"
}
