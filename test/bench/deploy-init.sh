#!/bin/sh
# PID 1 of the deploy bench, laid over the inspector's initramfs: the inspector's own pipeline (stream_target:
# wget, sha256 on the way, decompression by magic, dd) against `wget | dd` of the raw image, timed in the guest.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev; mkdir -p /tmp /run
for m in $(cat /etc/modules); do modprobe -q "$m" 2>/dev/null; done
mdev -s
. /bin/agent.sh
BASE=$(param bench.base); RUNS=$(param bench.runs); IMG=$(param bench.image)
now() { cut -d' ' -f1 /proc/uptime; }
network_up || { echo "BENCH-ERROR no network"; poweroff -f; }
for r in $(seq 1 "$RUNS"); do
  for c in wget-dd raw gz zst; do
    got=""; t0=$(now)
    case $c in
      wget-dd) wget -q -O - "$BASE/$IMG" | dd of=/dev/vda bs=1M conv=fsync 2>/dev/null ;;
      raw) stream_target "$BASE/$IMG" /dev/vda ;;
      gz) stream_target "$BASE/$IMG.gz" /dev/vda ;;
      zst) stream_target "$BASE/$IMG.zst" /dev/vda ;;
    esac
    rc=$?
    echo "BENCH case=$c run=$r rc=$rc seconds=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }') digest=$got"
  done
done
# what the last write left on the disk, to be compared with the raw image
echo "BENCH-DISK $(head -c "$(param bench.bytes)" /dev/vda | sha256sum | cut -d' ' -f1)"
echo BENCH-DONE
poweroff -f
