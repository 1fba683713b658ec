# Beskar7 inspection agent (busybox sh). Parameters come from the kernel command line:
#   beskar7.api=URL beskar7.host=NAME beskar7.token=TOKEN beskar7.target=URL [beskar7.config=URL] [BOOTIF=01-aa-bb-..]
# Units: memory and disk sizes in GB of 2^30 bytes (what firmware, QEMU and the kernel count), CPU cores are
# physical cores (unique package/core pairs), never one per logical CPU.

param() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
jstr() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
rd() { [ -r "$1" ] && tr -d '\n' < "$1" 2>/dev/null | sed 's/[[:space:]]*$//'; }
log() { echo "beskar7-agent: $*"; }

API=$(param beskar7.api); HOST=$(param beskar7.host); TOKEN=$(param beskar7.token)
TARGET=$(param beskar7.target); CONFIG=$(param beskar7.config); BOOTIF=$(param BOOTIF)

post() { # path body: POST JSON with the host token, 5 tries with growing pauses
  n=0
  while [ $n -lt 5 ]; do
    if wget -q -O /tmp/answer --header "Authorization: Bearer $TOKEN" --header "Content-Type: application/json" \
         --post-data "$2" "$API/api/v1/hosts/$HOST/$1" 2>/tmp/wget.err; then return 0; fi
    grep -q ' 40[0-9] ' /tmp/wget.err && { log "refused: $(cat /tmp/wget.err)"; return 1; }
    n=$((n + 1)); sleep $((n * 2))
  done
  return 1
}
step() { # name ok message
  post inspection/progress "{\"step\":$(jstr "$1"),\"ok\":$2,\"message\":$(jstr "$3")}" || log "could not report step $1"
  log "step $1 ok=$2 $3"
}
fail() { step "$1" false "$2"; log "FAILED at $1: $2"; return 1; }

network_up() {
  want=$(echo "$BOOTIF" | sed 's/^01-//; s/-/:/g' | tr 'A-F' 'a-f')
  for dev in /sys/class/net/*; do
    ifc=${dev##*/}; [ "$ifc" = lo ] && continue
    [ -n "$want" ] && [ "$(rd "$dev/address")" != "$want" ] && continue
    ip link set "$ifc" up
    udhcpc -i "$ifc" -n -q -t 10 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1 && { log "network on $ifc: $(cat /tmp/ip)"; return 0; }
  done
  return 1
}

collect() {
  d=/sys/class/dmi/id
  boot=Legacy; [ -d /sys/firmware/efi ] && boot=UEFI
  threads=0; pairs=""; pkgs=""
  for c in /sys/devices/system/cpu/cpu[0-9]*; do
    [ -r "$c/topology/core_id" ] || continue
    threads=$((threads + 1))
    p=$(rd "$c/topology/physical_package_id"); k=$(rd "$c/topology/core_id")
    pairs="$pairs $p:$k"; pkgs="$pkgs $p"
  done
  cores=$(echo $pairs | tr ' ' '\n' | sort -u | grep -c .)
  sockets=$(echo $pkgs | tr ' ' '\n' | sort -u | grep -c .)
  cpumodel=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  # installed memory from SMBIOS type 17 (MemTotal is what is left after the kernel took its share)
  mem_mb=0
  for e in /sys/firmware/dmi/entries/17-*; do
    [ -r "$e/raw" ] || continue
    set -- $(od -A n -t u1 -j 12 -N 2 "$e/raw"); sz=$(( $1 + $2 * 256 ))
    if [ $sz -eq 32767 ]; then set -- $(od -A n -t u1 -j 28 -N 4 "$e/raw"); sz=$(( $1 + $2 * 256 + $3 * 65536 + $4 * 16777216 ));
    elif [ $sz -ne 65535 ] && [ $((sz & 32768)) -ne 0 ]; then sz=$(( (sz & 32767) / 1024 )); fi
    [ $sz -ne 65535 ] && mem_mb=$((mem_mb + sz))
  done
  [ $mem_mb -eq 0 ] && mem_mb=$(( $(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo) / 1024 ))
  disks=""
  for b in /sys/block/*; do
    n=${b##*/}
    case $n in loop*|ram*|sr*|fd*|zram*|dm-*|md*) continue ;; esac
    sectors=$(rd "$b/size"); [ "${sectors:-0}" -gt 0 ] || continue
    case $n in nvme*) type=NVMe ;; *) [ "$(rd "$b/queue/rotational")" = 1 ] && type=HDD || type=SSD ;; esac
    model=$(rd "$b/device/model"); serial=$(rd "$b/serial"); [ -n "$serial" ] || serial=$(rd "$b/device/serial")
    gb=$(awk -v s="$sectors" 'BEGIN { printf "%.2f", s * 512 / 1073741824 }' | sed 's/\.00$//; s/0$//')
    disks="$disks${disks:+,}{\"device\":$(jstr "/dev/$n"),\"sizeGB\":$gb,\"type\":\"$type\",\"model\":$(jstr "$model"),\"serial\":$(jstr "$serial")}"
  done
  nics=""
  for dev in /sys/class/net/*; do
    n=${dev##*/}; [ "$n" = lo ] && continue; [ -e "$dev/device" ] || continue
    speed=$(rd "$dev/speed" 2>/dev/null); drv=$(basename "$(readlink "$dev/device/driver")")
    sp=""; [ -n "$speed" ] && [ "$speed" -ge 0 ] 2>/dev/null && sp=",\"speedMbps\":$speed"
    nics="$nics${nics:+,}{\"interface\":$(jstr "$n"),\"macAddress\":$(jstr "$(rd "$dev/address")")$sp,\"driver\":$(jstr "$drv")}"
  done
  memgb=$(awk -v m="$mem_mb" 'BEGIN { printf "%.2f", m / 1024 }' | sed 's/\.00$//; s/0$//')
  printf '{"manufacturer":%s,"model":%s,"serialNumber":%s,"bootMode":"%s","firmwareVersion":%s,' \
    "$(jstr "$(rd $d/sys_vendor)")" "$(jstr "$(rd $d/product_name)")" "$(jstr "$(rd $d/product_serial)")" "$boot" "$(jstr "$(rd $d/bios_version)")"
  printf '"cpus":{"count":%s,"cores":%s,"threads":%s,"model":%s},"memory":{"totalGB":%s},"disks":[%s],"nics":[%s]}' \
    "$sockets" "$cores" "$threads" "$(jstr "$cpumodel")" "$memgb" "$disks" "$nics"
}

main() {
  [ -n "$API" ] && [ -n "$HOST" ] && [ -n "$TOKEN" ] || { log "no beskar7.api/host/token on the command line"; return 1; }
  network_up || { log "no DHCP answer on any interface"; return 1; }
  step network true "$(cat /tmp/ip)"
  report=$(collect)
  log "report: $report"
  post inspection "$report" || { fail report "the appliance refused the report: $(cat /tmp/wget.err 2>/dev/null)"; return 1; }
  step report true "accepted"
  [ -n "$TARGET" ] || { step done true "no target image"; return 0; }
  mkdir -p /tmp/target
  wget -q -O /tmp/target.tgz "$TARGET" 2>/tmp/wget.err || { fail target-download "$(cat /tmp/wget.err)"; return 1; }
  tar -xzf /tmp/target.tgz -C /tmp/target || { fail target-unpack "not a tar.gz"; return 1; }
  kernel=$(ls /tmp/target/vmlinuz* /tmp/target/boot/vmlinuz* 2>/dev/null | head -1)
  initrd=$(ls /tmp/target/initrd* /tmp/target/boot/initrd* 2>/dev/null | head -1)
  [ -n "$kernel" ] || { fail target-unpack "no vmlinuz in the target image"; return 1; }
  step target-download true "$(wc -c < /tmp/target.tgz) bytes"
  extra=""
  if [ -n "$CONFIG" ]; then
    wget -q -O /tmp/config "$CONFIG" 2>/tmp/wget.err || { fail config "$(cat /tmp/wget.err)"; return 1; }
    extra=$(tr '\n' ' ' < /tmp/config)
    step config true "$(wc -c < /tmp/config) bytes"
  fi
  kexec -l "$kernel" ${initrd:+--initrd="$initrd"} --command-line="console=ttyS0 beskar7.provisioned=$HOST $extra" 2>/tmp/kexec.err || { fail kexec "$(cat /tmp/kexec.err)"; return 1; }
  step kexec true "$(basename "$kernel")"
  kexec -e
  fail kexec "kexec -e returned"
}
