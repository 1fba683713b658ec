# Beskar7 inspection agent (busybox sh), speaking the inspector contract v4.2. Kernel parameters:
#   beskar7.api=URL beskar7.namespace=NS beskar7.host=NAME beskar7.token=TOKEN beskar7.target=URL
#   beskar7.target-digest=sha256:HEX beskar7.provider-id=b7://NS/NAME [beskar7.disk=/dev/NAME|serial=S]
#   [beskar7.config=URL] [beskar7.timeout=SECONDS] [BOOTIF=01-aa-bb-..]; `--dry-run` (an argument to init): report only.
#   beskar7.mode=clean: erase every eligible disk's partition tables and signatures instead, and say so (cleaned).
# Two phases (contract §9): inspect and report; then, once GET /bootstrap answers 200 with the user-data, deploy
# the target: a tar.gz with a kernel is kexec'd, anything else is a whole-disk image (raw, gzip, xz or zstd)
# streamed onto the disk, its sha256 computed on the way, the user-data put into its COS_OEM partition, reboot.
# Units: DIMM capacities in MiB, disk sizes in GiB (2^30 bytes), cores counted per package as unique core ids.

param() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
jstr() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
rd() { [ -r "$1" ] && tr -d '\n' < "$1" 2>/dev/null | sed 's/[[:space:]]*$//'; }
log() { echo "beskar7-agent: $*"; }
# the firmware's SecureBoot variable (EFI global GUID), last byte: 1 enforced; empty where there is none (BIOS)
secure_boot() {
  v=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
  [ -d /sys/firmware/efi ] || return 0
  [ -e "$v" ] || mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
  [ -r "$v" ] && od -An -tu1 "$v" | tr -s ' ' '\n' | grep . | tail -n1
}
# under Secure Boot the kernel is locked down: kexec takes only kernels signed by a key it trusts
locked_down() {
  [ -e /sys/kernel/security/lockdown ] || mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
  grep -q '\[integrity\]\|\[confidentiality\]' /sys/kernel/security/lockdown 2>/dev/null
}

API=$(param beskar7.api); NS=$(param beskar7.namespace); HOST=$(param beskar7.host); TOKEN=$(param beskar7.token)
TARGET=$(param beskar7.target); DIGEST=$(param beskar7.target-digest); CONFIG=$(param beskar7.config)
BOOTIF=$(param BOOTIF); DISK=$(param beskar7.disk); PROVIDER_ID=$(param beskar7.provider-id)
TIMEOUT=$(param beskar7.timeout); TIMEOUT=${TIMEOUT:-1800}; MODE=$(param beskar7.mode)

call() { # endpoint [body]: the contract's endpoints with the bearer token; POST with a body, else GET
  # a 4xx is the appliance's word; a 5xx or no answer (its store away, a restart) is asked again, pauses growing
  # to 10 s, while beskar7.timeout lasts: an etcd outage outlasts a few tries, and a lost callback strands the host
  n=0; paused=0
  while :; do
    if [ $# -gt 1 ]; then
      wget -q -O /tmp/answer --header "Authorization: Bearer $TOKEN" --header "Content-Type: application/json" \
        --post-data "$2" "$API/api/v1/$1/$NS/$HOST" 2>/tmp/wget.err && return 0
    else
      wget -q -O /tmp/answer --header "Authorization: Bearer $TOKEN" "$API/api/v1/$1/$NS/$HOST" 2>/tmp/wget.err && return 0
    fi
    grep -q ' 4[0-9][0-9] ' /tmp/wget.err && { log "$1 refused: $(cat /tmp/wget.err)"; return 1; }
    [ $paused -ge "$TIMEOUT" ] && { log "$1: no answer in $TIMEOUT s: $(cat /tmp/wget.err)"; return 1; }
    n=$((n + 1)); [ $n -gt 10 ] && n=10
    sleep $n; paused=$((paused + n))
  done
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
    case "$API" in
      # an IPv6 appliance (http://[...]): the address comes by SLAAC from its router advertisements (busybox
      # has no DHCPv6 client)
      *://\[*) v6_up "$ifc" && { log "network on $ifc: $(cat /tmp/ip)"; return 0; } ;;
      *) udhcpc -i "$ifc" -n -q -t 10 -T 2 -s /etc/udhcpc.script >/dev/null 2>&1 && { log "network on $ifc: $(cat /tmp/ip)"; return 0; } ;;
    esac
  done
  return 1
}
v6_up() { # ifc: wait up to 20 s for a global address past duplicate address detection
  n=0
  while [ $n -lt 40 ]; do
    a=$(ip -6 addr show dev "$1" scope global | grep -v tentative | sed -n 's/.*inet6 \([^ ]*\).*/\1/p' | head -1)
    [ -n "$a" ] && { echo "$a" > /tmp/ip; return 0; }
    sleep 0.5; n=$((n + 1))
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
  case "$(secure_boot)" in 1) sb='"secureBoot":true,' ;; 0) sb='"secureBoot":false,' ;; *) sb="" ;; esac
  printf '%s"architecture":%s,"cpus":[%s],"memory":[%s],"disks":[%s],"nics":[%s]}' "$sb" "$(jstr "$(uname -m)")" "$cpus" "$mem" "$disks" "$nics"
}

bootstrap_wait() { # contract §9.2: 404 and 5xx mean not ready yet; any other refusal ends the run
  waited=0
  while :; do
    wget -q -O /tmp/user-data --header "Authorization: Bearer $TOKEN" "$API/api/v1/bootstrap/$NS/$HOST" 2>/tmp/wget.err && return 0
    if grep -q ' 4[0-9][0-9] ' /tmp/wget.err && ! grep -q ' 404 ' /tmp/wget.err; then
      log "bootstrap refused: $(cat /tmp/wget.err)"; return 1
    fi
    [ $waited -ge "$TIMEOUT" ] && { log "no bootstrap data after $TIMEOUT s"; return 1; }
    sleep 5; waited=$((waited + 5))
  done
}

eligible_disks() { # whole disks with a device behind them: never removable, read-only or empty
  for b in /sys/block/*; do
    n=${b##*/}
    case $n in loop*|ram*|sr*|fd*|zram*|dm-*|md*) continue ;; esac
    [ -e "$b/device" ] && [ "$(rd "$b/removable")" != 1 ] && [ "$(rd "$b/ro")" != 1 ] || continue
    [ "$(rd "$b/size")" -gt 0 ] 2>/dev/null && echo "$n"
  done
}

pick_disk() { # beskar7.disk (a device path, or serial=S), else the smallest eligible disk
  best=""; bestsize=0
  for n in $(eligible_disks); do
    b=/sys/block/$n; size=$(rd "$b/size")
    case $DISK in
      "") ;;
      serial=*) s=$(rd "$b/serial"); [ -n "$s" ] || s=$(rd "$b/device/serial"); [ "$s" = "${DISK#serial=}" ] || continue ;;
      *) [ "$n" = "$(basename "$(readlink -f "$DISK" 2>/dev/null || echo "$DISK")")" ] || continue ;;
    esac
    if [ -z "$best" ] || [ "$size" -lt "$bestsize" ]; then best=$n; bestsize=$size; fi
  done
  [ -n "$best" ] && echo "/dev/$best"
}

wipe_disk() { # metadata erase, as Ironic cleans: every signature on the disk and its partitions, then its first and last MiB
  n=${1##*/}
  for p in /sys/block/"$n"/"$n"*; do [ -e "$p/partition" ] && wipefs -a -q "/dev/${p##*/}" 2>/dev/null; done
  wipefs -a -q "$1" 2>/dev/null
  sectors=$(rd "/sys/block/$n/size")
  dd if=/dev/zero of="$1" bs=512 count=2048 conv=fsync 2>/dev/null || return 1
  [ "${sectors:-0}" -gt 4096 ] && dd if=/dev/zero of="$1" bs=512 seek=$((sectors - 2048)) count=2048 conv=fsync 2>/dev/null
  blockdev --rereadpt "$1" 2>/dev/null
  return 0
}

# A raw image goes from wget's pipe straight into dd: every extra copy through a pipe costs as much as the
# hash (measured in QEMU: 256 MiB through `cat | cat` 30 s, busybox sha256 22 s, openssl 12 s).
unpack() { # stdin: the target as served. Decompressed by its magic; a tar goes to /tmp/target, anything else onto disk $1
  dd bs=6 count=1 iflag=fullblock of=/tmp/magic 2>/dev/null
  case $(od -A n -t x1 /tmp/magic | tr -d ' \n') in
    1f8b*) dec="gunzip -c" fmt=gzip ;;
    fd377a585a00) dec="unxz -c" fmt=xz ;;
    28b52ffd*) dec="zstd -dcq" fmt=zstd ;;
    *) fmt=raw ;;
  esac
  if [ $fmt = raw ]; then
    dd bs=506 count=1 iflag=fullblock of=/tmp/rest 2>/dev/null
    cat /tmp/magic /tmp/rest > /tmp/head
    place "$1"
  else
    { cat /tmp/magic; dd bs=1M 2>/dev/null; } | $dec | {
      dd bs=512 count=1 iflag=fullblock of=/tmp/head 2>/dev/null
      place "$1"
    }
  fi
}

place() { # /tmp/head, then stdin: a tar unpacked to /tmp/target (kexec), anything else written to disk $1
  if [ "$(dd if=/tmp/head bs=1 skip=257 count=5 2>/dev/null)" = ustar ]; then
    echo kexec > /tmp/kind
    mkdir -p /tmp/target && cat /tmp/head - | tar -x -C /tmp/target
  else
    echo "disk $fmt" > /tmp/kind
    [ -n "$1" ] || { echo "no disk to write to" >&2; cat > /dev/null; return 1; }
    n=$(wc -c < /tmp/head)
    dd if=/tmp/head of="$1" bs=512 conv=notrunc 2>/tmp/dd.err &&
      dd of="$1" bs=1M seek="$n" iflag=fullblock oflag=seek_bytes conv=notrunc,fsync 2>>/tmp/dd.err
  fi
}

find_oem() { # the COS_OEM partition (an ext label) among disk $1's own partitions: never another disk's
  n=${1##*/}
  for p in /sys/block/"$n"/"$n"*; do
    [ -e "$p/partition" ] || continue
    dev=/dev/${p##*/}
    [ "$(dd if="$dev" bs=1 skip=1080 count=2 2>/dev/null | od -A n -t x1 | tr -d ' \n')" = 53ef ] || continue
    [ "$(dd if="$dev" bs=1 skip=1144 count=16 2>/dev/null | tr -d '\000')" = COS_OEM ] && { echo "$dev"; return 0; }
  done
  return 1
}

write_oem() { # $1: the COS_OEM partition. The user-data as 99_beskar7.yaml and the provider-id, root only
  mkdir -p /oem && mount -t ext4 -o nodev,nosuid,noexec "$1" /oem || return 1
  ok=0
  (umask 077 && mkdir -p /oem/beskar7 && cat /tmp/user-data > /oem/99_beskar7.yaml && echo "$PROVIDER_ID" > /oem/beskar7/provider-id) && ok=1
  [ $ok = 1 ] || rm -f /oem/99_beskar7.yaml /oem/beskar7/provider-id
  sync; umount /oem || umount -l /oem
  [ $ok = 1 ]
}

stream_target() { # URL DISK: fetched once, hashed on the way (sha256:... in $got), unpacked; the pipeline's status
  rm -f /tmp/hash.fifo /tmp/kind; mkfifo /tmp/hash.fifo
  # OpenSSL's sha256 (SHA-NI, AVX2) runs several times faster than busybox's: a raw image is not hash-bound
  if command -v openssl >/dev/null; then openssl dgst -sha256 -r; else sha256sum; fi < /tmp/hash.fifo > /tmp/hash.out &
  hasher=$!
  set -o pipefail
  wget -q -O - "$1" 2>/tmp/wget.err | tee /tmp/hash.fifo | unpack "$2" 2>/tmp/unpack.err
  rc=$?
  set +o pipefail
  wait $hasher
  got="sha256:$(cut -d' ' -f1 /tmp/hash.out)"
  return $rc
}

deploy() { # the target, streamed once: sha256 on the way, checked before anything else happens
  disk=$(pick_disk)
  stream_target "$TARGET" "$disk"
  rc=$?
  kind=$(cat /tmp/kind 2>/dev/null)
  if [ -n "$DIGEST" ] && [ "$got" != "$DIGEST" ]; then
    case $kind in disk*) wipe_disk "$disk" ;; esac
    deploy_failed "DigestMismatch: $TARGET is $got, want $DIGEST"; return 1
  fi
  [ $rc = 0 ] || { deploy_failed "target download or write failed: $(cat /tmp/wget.err /tmp/unpack.err /tmp/dd.err 2>/dev/null | tr '\n' ' ')"; return 1; }
  step target-verify true "${DIGEST:+verified }$got"
  case $kind in
    kexec) boot_kexec ;;
    disk*) boot_disk "$disk" "$kind" ;;
    *) deploy_failed "target unpack: an empty target"; return 1 ;;
  esac
}

boot_disk() {
  step target-write true "$1: ${2#disk } image written"
  blockdev --rereadpt "$1" 2>/dev/null; sleep 1; mdev -s
  if oem=$(find_oem "$1"); then
    write_oem "$oem" || { rm -f /tmp/user-data; deploy_failed "COS_OEM: could not write the user-data to $oem"; return 1; }
    step oem true "user-data written to $oem"
  else
    step oem true "no COS_OEM partition on $1: no user-data written"
  fi
  rm -f /tmp/user-data
  # contract §9.1: the signal goes before the reboot; without its 202 the host does not boot the target
  call provisioned '{"status":"provisioned"}' || { log "provisioned callback failed; not rebooting"; return 1; }
  log "rebooting into the installed system on $1"
  sync; reboot -f
}

boot_kexec() {
  kernel=$(ls /tmp/target/vmlinuz* /tmp/target/boot/vmlinuz* 2>/dev/null | head -1)
  initrd=$(ls /tmp/target/initrd* /tmp/target/boot/initrd* 2>/dev/null | head -1)
  [ -n "$kernel" ] || { deploy_failed "target unpack: no vmlinuz in the target image"; return 1; }
  # the OS fetches its own configuration: config_url is the Kairos convention, beskar7.config ours
  case $(uname -m) in aarch64) con=ttyAMA0 ;; *) con=ttyS0 ;; esac
  cmdline="console=$con beskar7.provisioned=$HOST${CONFIG:+ config_url=$CONFIG beskar7.config=$CONFIG}"
  if locked_down; then
    # the file-based load, whose signature check lockdown demands; the old kexec_load is refused outright
    kexec -s -l "$kernel" ${initrd:+--initrd="$initrd"} --command-line="$cmdline" 2>/tmp/kexec.err || {
      # the reason is capped at 256 characters (contract §4.5): the advice first, kexec's words after
      deploy_failed "Secure Boot: the locked-down kernel kexecs only kernels signed by a key it trusts, and refused the target's. Use a signed kernel, or a whole-disk image that boots under Secure Boot ($(head -c 60 /tmp/kexec.err | tr '\n' ' '))"
      return 1
    }
  else
    kexec -l "$kernel" ${initrd:+--initrd="$initrd"} --command-line="$cmdline" 2>/tmp/kexec.err || { deploy_failed "kexec load: $(cat /tmp/kexec.err)"; return 1; }
  fi
  call provisioned '{"status":"provisioned"}' || { log "provisioned callback failed; not booting the target"; return 1; }
  log "kexec $(basename "$kernel") $cmdline"
  kexec -e
  log "kexec -e returned"
  return 1
}

clean() { # every eligible disk erased; the appliance powers the host off once told
  wiped=""; failed=""
  for n in $(eligible_disks); do
    if wipe_disk "/dev/$n"; then wiped="$wiped /dev/$n"; else failed="$failed /dev/$n"; fi
  done
  if [ -n "$failed" ]; then
    call cleaned "{\"ok\":false,\"message\":$(jstr "could not erase$failed${wiped:+ (erased$wiped)}")}"
  else
    call cleaned "{\"ok\":true,\"message\":$(jstr "erased${wiped:- no disk}")}"
  fi
  log "cleaned:${wiped:- nothing}${failed:+; failed$failed}"
}

main() {
  dry=""; for a in "$@"; do [ "$a" = --dry-run ] && dry=1; done
  [ -n "$API" ] && [ -n "$NS" ] && [ -n "$HOST" ] && [ -n "$TOKEN" ] || { log "no beskar7.api/namespace/host/token on the command line"; return 1; }
  network_up || { log "no network on any interface (no DHCP answer, or no IPv6 address by SLAAC)"; return 1; }
  step network true "$(cat /tmp/ip)"
  [ "$MODE" = clean ] && { clean; return 1; }
  report=$(collect)
  log "report: $report"
  call inspection "$report" || { log "the appliance refused the report: $(cat /tmp/wget.err 2>/dev/null)"; return 1; }
  step report true "accepted"
  [ -n "$dry" ] && { log "--dry-run: stopping after the report"; return 0; }
  # the gate: only a validated host gets its user-data and goes on to the target (a refused one is powered off)
  bootstrap_wait || return 1
  [ -n "$TARGET" ] || { deploy_failed "no beskar7.target"; return 1; }
  deploy
}
