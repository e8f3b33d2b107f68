#!/usr/bin/env bash
# test/package/vm-systemd.sh — the Debian package under a real systemd (manual / CI; minutes).
#
# This machine has no systemd as PID 1, so the unit cannot be started here. This boots Debian's
# kernel under qemu with contrib/vmtest's initramfs (this machine's / read-only, a tmpfs overlay on
# top), installs dist/nsidmap_*.deb in the guest, and hands PID 1 to the guest's systemd, which
# starts nsidmapd.service as packaged — Type=notify, watchdog, every sandboxing option — and then
# test/package/vm/scenario.sh: systemd's view of the unit, client identifiers written from inside
# the sandbox, and knfsd + an NFSv4.2 mount on loopback answered by the sandboxed daemon,
# including the failures docs/troubleshooting.md shows (its outputs come from the transcript).
#
# Environment: NSIDMAP_DEB (a package, default: build one), VMTEST_WORK (contrib/vmtest's work dir:
# kernel and initramfs cache), NSIDMAP_VM_TIMEOUT (seconds, default 600).
# Output: `N passed, N failed`; transcript.txt, journal.txt, nsidmapd.log under $VMTEST_WORK/out-package.
set -uo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
work=${VMTEST_WORK:-${TMPDIR:-/tmp}/nsidmap-vmtest}
t0=$(date +%s)
pass=0 fail=0
summary() { echo "# took $(($(date +%s) - t0)) s"; echo "$pass passed, $fail failed"; }
die() { echo "not ok - setup: $*"; fail=$((fail + 1)); summary; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"

if [ -n "${NSIDMAP_DEB:-}" ]; then
  deb=$(readlink -f "$NSIDMAP_DEB")
else
  (cd "$repo" && npm run --silent package:deb) >"$work.package.log" 2>&1 || die "npm run package:deb failed (see $work.package.log)"
  deb=$(ls -t "$repo"/dist/nsidmap_*.deb | head -n 1)
fi
[ -f "$deb" ] || die "no package"
case $deb in *[[:space:],]*) die "package path with a space or comma: $deb" ;; esac

# kernel, modules and initramfs: contrib/vmtest/run.sh makes and caches them (no suite booted)
VMTEST_SUITES=' ' bash "$repo/contrib/vmtest/run.sh" >"$work.prepare.log" 2>&1 || die "contrib/vmtest/run.sh could not prepare the kernel (see $work.prepare.log)"
initrd=$(ls -t "$work"/kernel-*/initramfs-*.cpio.gz 2>/dev/null | head -n 1)
[ -n "$initrd" ] || die "no initramfs under $work"
kdir=$(dirname "$initrd")
kv=${kdir##*/kernel-}
out=$work/out-package
rm -rf "$out" && mkdir -p "$out"
echo "# booting $kv with systemd as PID 1 (console: $work/console-package.log)"
timeout -k 10 "${NSIDMAP_VM_TIMEOUT:-600}" qemu-system-x86_64 \
  -accel tcg,thread=multi -smp 2 -m 2048 -cpu max \
  -nodefaults -display none -no-reboot -monitor none -serial "file:$work/console-package.log" \
  -kernel "$kdir/boot/vmlinuz-$kv" -initrd "$initrd" \
  -virtfs local,path=/,mount_tag=root,security_model=passthrough,readonly=on,multidevs=remap \
  -virtfs "local,path=$out,mount_tag=out,security_model=passthrough" \
  -append "console=ttyS0 panic=-1 loglevel=4 mitigations=off vmtest.init=$here/vm/init.sh vmtest.moddir=$kdir/lib/modules vmtest.deb=$deb systemd.show_status=0" \
  </dev/null >"$work/qemu-package.log" 2>&1
rc=$?
while IFS= read -r line; do
  case $line in
    "ok - "*) pass=$((pass + 1)); echo "$line" ;;
    "not ok - "*) fail=$((fail + 1)); echo "$line" ;;
  esac
done < <(cat "$out/results" 2>/dev/null)
if [ ! -f "$out/done" ]; then
  fail=$((fail + 1))
  echo "not ok - the scenario finished (qemu rc=$rc; last console lines:)"
  tail -n 30 "$work/console-package.log" | sed 's/^/#   /'
fi
echo "# transcript: $out/transcript.txt"
summary
[ "$fail" -eq 0 ]
