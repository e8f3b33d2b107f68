#!/bin/bash
# PID 1 of the VM (contrib/vmtest/run.sh boots it through initramfs-init). The root is the host's /
# read-only with a tmpfs overlay: whatever this writes (/etc, /run, /srv, …) stays in the guest.
# Reads vmtest.suite, vmtest.root and vmtest.watchdog from the kernel command line, runs
# guest/<suite>.sh, and leaves in the `out` 9p share: results (one ok/not ok/skip line per check,
# written as it happens, so a guest that dies still leaves what it checked), done (timings), and
# the logs of the daemons it ran.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C LC_ALL=C
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=0755 tmpfs /run
# No tmpfs over /tmp: the root is already writable (a tmpfs overlay), and the project under test
# may itself live in the host's /tmp (a CI clone does) — a fresh /tmp would hide it.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr

SUITE= ROOT= WATCHDOG=170
for a in $(cat /proc/cmdline); do
  case $a in
    vmtest.suite=*) SUITE=${a#vmtest.suite=} ;;
    vmtest.root=*) ROOT=${a#vmtest.root=} ;;
    vmtest.watchdog=*) WATCHDOG=${a#vmtest.watchdog=} ;;
  esac
done
GUEST=$(dirname "$(readlink -f "$0")")
OUT=/run/vmtest-out
LOGS=/run/vmtest
export SUITE ROOT GUEST OUT LOGS   # for scripts run in another namespace (container.sh)
mkdir -p "$OUT" "$LOGS"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out "$OUT" || { echo "guest: no out share"; echo o > /proc/sysrq-trigger; sleep 5; }
exec > >(tee "$OUT/guest.log") 2>&1

# shellcheck source=lib.sh
. "$GUEST/lib.sh"

poweroff_now() { sync; echo o > /proc/sysrq-trigger; sleep 10; }
finish() {
  collect_logs
  { echo "boot_to_script=${T_BOOT}s"; echo "suite_$SUITE=$(elapsed "$T_BOOT")s"; cat "$LOGS/timing" 2>/dev/null; } > "$OUT/done"
  echo "VMTEST-DONE t=$(uptime_s)"
  poweroff_now
}
# Every step has its own timeout; this is the last resort if something still hangs (an NFS mount in
# D state, say): record it, keep the logs, power off. run.sh has a hard timeout outside too.
( sleep "$WATCHDOG"; echo "not ok - $SUITE: finished within the guest watchdog (${WATCHDOG}s): it fired" >> "$OUT/results"
  collect_logs; poweroff_now ) &

T_BOOT=$(uptime_s)
echo "guest: $(uname -r), suite $SUITE, project $ROOT, up ${T_BOOT}s"
if [ -z "$SUITE" ] || [ ! -f "$GUEST/$SUITE.sh" ] || [ ! -d "$ROOT/dist" ]; then
  not_ok "guest setup (suite script or $ROOT/dist missing)"
else
  # shellcheck disable=SC1090
  . "$GUEST/$SUITE.sh"
fi
finish
