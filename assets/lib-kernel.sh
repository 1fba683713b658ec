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

# rootfs_busybox ROOT [BUSYBOX]: a root with static busybox (this machine's, or BUSYBOX of another architecture
# and the same Debian version) and its applets in /bin (listed by this machine's, which runs here)
rootfs_busybox() {
  file -L /bin/busybox | grep -q 'statically linked' || { echo "need static busybox: apt-get install busybox-static" >&2; return 1; }
  mkdir -p "$1"/{bin,sbin,etc,proc,sys,dev,tmp,run}
  cp "${2:-/bin/busybox}" "$1/bin/busybox"
  local a
  for a in $(/bin/busybox --list); do [ -e "$1/bin/$a" ] || ln -s busybox "$1/bin/$a"; done
}

# foreign_apt ARCH: FOREIGN_APT, the apt-get and apt-cache options for ARCH's package lists (updated once)
foreign_apt() {
  local d
  d=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/apt-$1
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" && touch "$d/status"
  FOREIGN_APT=(-o "APT::Architecture=$1" -o "APT::Architectures::=$1" -o "Dir::State::Lists=$d/lists"
    -o "Dir::State::Status=$d/status" -o "Dir::Cache=$d/cache")
  ls "$d/lists" | grep -q Packages || apt-get "${FOREIGN_APT[@]}" update -qq
}

# foreign_unpack ARCH DIR PACKAGE...: Debian's packages of another architecture, downloaded with package lists of
# their own in .cache/apt-ARCH and unpacked into DIR; this machine's dpkg architectures and sources stay as they are
foreign_unpack() {
  local arch=$1 dir=$2 tmp deb
  shift 2
  foreign_apt "$arch"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get "${FOREIGN_APT[@]}" download "$@" >/dev/null 2>&1) || { rm -rf "$tmp"; echo "cannot download $* ($arch)" >&2; return 1; }
  mkdir -p "$dir"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  rm -rf "$tmp"
}

# copy_foreign_binary ROOT SYSROOT PATH: an arm64 program from SYSROOT, its loader and the shared libraries it
# needs (read from its ELF headers with readelf, as ldd cannot run it here)
copy_foreign_binary() {
  local R=$1 S=$2 f=$3 lib found dir interp
  mkdir -p "$R$(dirname "$f")" && cp -L "$S$f" "$R$f"
  interp=$(readelf -l "$S$f" 2>/dev/null | sed -n 's/.*interpreter: \(.*\)]/\1/p')
  [ -n "$interp" ] && [ ! -e "$R$interp" ] && mkdir -p "$R$(dirname "$interp")" && cp -L "$S$interp" "$R$interp"
  for lib in $(readelf -d "$S$f" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p'); do
    found=""
    for dir in /lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu /lib /usr/lib; do
      [ -e "$S$dir/$lib" ] && { found=$dir/$lib; break; }
    done
    [ -n "$found" ] || { echo "copy_foreign_binary: $lib (for $f) is in none of the packages" >&2; return 1; }
    [ -e "$R$found" ] || copy_foreign_binary "$R" "$S" "$found"
  done
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
