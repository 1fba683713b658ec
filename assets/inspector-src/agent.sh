# Beskar7 inspection agent (busybox sh), speaking the inspector contract v4.2. Kernel parameters:
#   beskar7.api=URL beskar7.namespace=NS beskar7.host=NAME beskar7.token=TOKEN beskar7.target=URL
#   [beskar7.target-digest=sha256:HEX] [beskar7.provider-id=b7://NS/NAME] [beskar7.config=URL] [BOOTIF=01-aa-bb-..]
# Units: DIMM capacities in MiB, disk sizes in GiB (2^30 bytes), cores counted per package as unique core ids.

param() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
jstr() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
rd() { [ -r "$1" ] && tr -d '\n' < "$1" 2>/dev/null | sed 's/[[:space:]]*$//'; }
log() { echo "beskar7-agent: $*"; }

API=$(param beskar7.api); NS=$(param beskar7.namespace); HOST=$(param beskar7.host); TOKEN=$(param beskar7.token)
TARGET=$(param beskar7.target); DIGEST=$(param beskar7.target-digest); CONFIG=$(param beskar7.config)
BOOTIF=$(param BOOTIF)

call() { # endpoint [body]: the contract's endpoints with the bearer token; POST with a body, else GET; 5 tries
  n=0
  while [ $n -lt 5 ]; do
    if [ $# -gt 1 ]; then
      wget -q -O /tmp/answer --header "Authorization: Bearer $TOKEN" --header "Content-Type: application/json" \
        --post-data "$2" "$API/api/v1/$1/$NS/$HOST" 2>/tmp/wget.err && return 0
    else
      wget -q -O /tmp/answer --header "Authorization: Bearer $TOKEN" "$API/api/v1/$1/$NS/$HOST" 2>/tmp/wget.err && return 0
    fi
    # an answer of 4xx is the appliance's word, not a network hiccup
    grep -q ' 4[0-9][0-9] ' /tmp/wget.err && { log "$1 refused: $(cat /tmp/wget.err)"; return 1; }
    n=$((n + 1)); sleep $((n * 2))
  done
  return 1
}
step() { # name ok message: the progress extension, for the operator's timeline
  call progress "{\"step\":$(jstr "$1"),\"ok\":$2,\"message\":$(jstr "$3")}" || log "could not report step $1"
  log "step $1 ok=$2 $3"
}
deploy_failed() { # reason: contract 4.5, then stop (no provisioned, no kexec)
  log "FAILED: $1"
  call provision-failed "{\"reason\":$(jstr "$1")}" || log "could not report the failure"
  return 1
}

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

collect() { # the contract's report (v4.2 section 6): one cpus[] entry per package, one memory[] entry per DIMM
  d=/sys/class/dmi/id
  boot=Legacy; [ -d /sys/firmware/efi ] && boot=UEFI
  cpumodel=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  for c in /sys/devices/system/cpu/cpu[0-9]*; do
    [ -r "$c/topology/core_id" ] && echo "$(rd "$c/topology/physical_package_id") $(rd "$c/topology/core_id")"
  done > /tmp/topology
  cpus=""
  for p in $(cut -d' ' -f1 /tmp/topology | sort -u); do
    threads=$(grep -c "^$p " /tmp/topology); cores=$(grep "^$p " /tmp/topology | sort -u | grep -c .)
    cpus="$cpus${cpus:+,}{\"id\":\"$p\",\"model\":$(jstr "$cpumodel"),\"cores\":$cores,\"threads\":$threads}"
  done
  # installed memory from SMBIOS type 17 (MemTotal is what is left after the kernel took its share)
  mem=""; n=0
  for e in /sys/firmware/dmi/entries/17-*; do
    [ -r "$e/raw" ] || continue
    set -- $(od -A n -t u1 -j 12 -N 2 "$e/raw"); sz=$(( $1 + $2 * 256 ))
    if [ $sz -eq 32767 ]; then set -- $(od -A n -t u1 -j 28 -N 4 "$e/raw"); sz=$(( $1 + $2 * 256 + $3 * 65536 + $4 * 16777216 ));
    elif [ $sz -ne 65535 ] && [ $((sz & 32768)) -ne 0 ]; then sz=$(( (sz & 32767) / 1024 )); fi
    [ $sz -eq 65535 ] || [ $sz -eq 0 ] && continue
    mem="$mem${mem:+,}{\"id\":\"DIMM$n\",\"capacity\":\"${sz}MiB\"}"; n=$((n + 1))
  done
  [ -n "$mem" ] || mem="{\"id\":\"MemTotal\",\"capacity\":\"$(( $(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo) / 1024 ))MiB\"}"
  disks=""
  for b in /sys/block/*; do
    n=${b##*/}
    case $n in loop*|ram*|sr*|fd*|zram*|dm-*|md*) continue ;; esac
    sectors=$(rd "$b/size"); [ "${sectors:-0}" -gt 0 ] || continue
    case $n in nvme*) type=NVMe ;; *) [ "$(rd "$b/queue/rotational")" = 1 ] && type=HDD || type=SSD ;; esac
    model=$(rd "$b/device/model"); serial=$(rd "$b/serial"); [ -n "$serial" ] || serial=$(rd "$b/device/serial")
    # GiB (2^30 bytes), two decimals: a small disk is not 0
    gb=$(awk -v s="$sectors" 'BEGIN { printf "%.2f", s * 512 / 1073741824 }' | sed 's/\.00$//; s/0$//')
    disks="$disks${disks:+,}{\"name\":$(jstr "/dev/$n"),\"sizeGB\":$gb,\"type\":\"$type\",\"model\":$(jstr "$model"),\"serialNumber\":$(jstr "$serial")}"
  done
  nics=""
  for dev in /sys/class/net/*; do
    n=${dev##*/}; [ "$n" = lo ] && continue; [ -e "$dev/device" ] || continue
    speed=$(rd "$dev/speed" 2>/dev/null); drv=$(basename "$(readlink "$dev/device/driver")")
    sp=""; [ -n "$speed" ] && [ "$speed" -ge 0 ] 2>/dev/null && sp="${speed}Mb/s"
    ips=$(ip -o -4 addr show dev "$n" 2>/dev/null | awk '{ split($4, a, "/"); printf "%s\"%s\"", (i++ ? "," : ""), a[1] }')
    nics="$nics${nics:+,}{\"name\":$(jstr "$n"),\"macAddress\":$(jstr "$(rd "$dev/address")"),\"driver\":$(jstr "$drv"),\"speed\":\"$sp\",\"ipAddresses\":[$ips]}"
  done
  printf '{"manufacturer":%s,"model":%s,"serialNumber":%s,"bootModeDetected":"%s","firmwareVersion":%s,' \
    "$(jstr "$(rd $d/sys_vendor)")" "$(jstr "$(rd $d/product_name)")" "$(jstr "$(rd $d/product_serial)")" "$boot" "$(jstr "$(rd $d/bios_version)")"
  printf '"cpus":[%s],"memory":[%s],"disks":[%s],"nics":[%s]}' "$cpus" "$mem" "$disks" "$nics"
}

main() {
  [ -n "$API" ] && [ -n "$NS" ] && [ -n "$HOST" ] && [ -n "$TOKEN" ] || { log "no beskar7.api/namespace/host/token on the command line"; return 1; }
  network_up || { log "no DHCP answer on any interface"; return 1; }
  step network true "$(cat /tmp/ip)"
  report=$(collect)
  log "report: $report"
  call inspection "$report" || { log "the appliance refused the report: $(cat /tmp/wget.err 2>/dev/null)"; return 1; }
  step report true "accepted"
  # the gate: only a host that passed validation goes on to the target (a refused one is powered off)
  call bootstrap || { log "not approved for deployment: $(cat /tmp/wget.err 2>/dev/null)"; return 1; }
  [ -n "$TARGET" ] || { deploy_failed "no beskar7.target"; return 1; }
  wget -q -O /tmp/target.tgz "$TARGET" 2>/tmp/wget.err || { deploy_failed "target download: $(cat /tmp/wget.err)"; return 1; }
  got="sha256:$(sha256sum /tmp/target.tgz | cut -d' ' -f1)"
  if [ -n "$DIGEST" ]; then
    [ "$got" = "$DIGEST" ] || { deploy_failed "DigestMismatch: $TARGET is $got, want $DIGEST"; return 1; }
    step target-verify true "$got"
  else
    step target-verify true "no digest pinned; $got"
  fi
  mkdir -p /tmp/target
  tar -xzf /tmp/target.tgz -C /tmp/target || { deploy_failed "target unpack: not a tar.gz"; return 1; }
  kernel=$(ls /tmp/target/vmlinuz* /tmp/target/boot/vmlinuz* 2>/dev/null | head -1)
  initrd=$(ls /tmp/target/initrd* /tmp/target/boot/initrd* 2>/dev/null | head -1)
  [ -n "$kernel" ] || { deploy_failed "target unpack: no vmlinuz in the target image"; return 1; }
  step target-download true "$(wc -c < /tmp/target.tgz) bytes"
  # the OS fetches its own configuration: config_url is the Kairos convention, beskar7.config ours
  cmdline="console=ttyS0 beskar7.provisioned=$HOST${CONFIG:+ config_url=$CONFIG beskar7.config=$CONFIG}"
  kexec -l "$kernel" ${initrd:+--initrd="$initrd"} --command-line="$cmdline" 2>/tmp/kexec.err || { deploy_failed "kexec load: $(cat /tmp/kexec.err)"; return 1; }
  # contract 4.4: the signal goes before the jump; without its 202 the target does not boot
  call provisioned '{"status":"provisioned"}' || { log "provisioned callback failed; not booting the target"; return 1; }
  log "kexec $(basename "$kernel") $cmdline"
  kexec -e
  log "kexec -e returned"
  return 1
}
