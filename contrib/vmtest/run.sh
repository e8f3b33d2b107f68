#!/usr/bin/env bash
# npm run test:vm — nsidmap end-to-end against the real Linux NFS client, nfsd and CIFS client.
#
# Boots Debian's own kernel under qemu (TCG: no KVM needed) with this machine's / shared read-only
# over 9p and a tmpfs overlay on top, so the guest runs node, the built project and nfs-utils/Samba
# as installed here, on a kernel that has NFS, nfsd and CIFS. The guest scripts (guest/) start
# nsidmapd with a policy of the test's (fixtures/), install our request-key rules in the guest's
# own /etc, and check through the mounts what a user sees. See contrib/vmtest/README.md.
#
# Host side: Debian packages (apt-get, only what is missing), the kernel .deb unpacked under the
# work dir without its postinst, the initramfs, `npm run build` when dist/ is missing; then one VM
# per suite under a hard `timeout`, and the guest's result lines. Nothing on the host changes but
# apt packages and the work dir: no mounts, no request-key rules, no services.
#
# Environment:
#   VMTEST_WORK          work dir (default ${TMPDIR:-/tmp}/nsidmap-vmtest): kernel + initramfs cache, outputs
#   VMTEST_SUITES        suites to boot, in order (default "nfs cifs")
#   VMTEST_VM_TIMEOUT    seconds before a VM is killed from outside (default 270)
#   VMTEST_WATCHDOG      seconds before the guest powers itself off (default 240)
#   VMTEST_KERNEL        Debian kernel version to boot (default: what linux-image-amd64 depends on)
#   VMTEST_SKIP_APT=1    do not install packages
set -uo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
work=${VMTEST_WORK:-${TMPDIR:-/tmp}/nsidmap-vmtest}
suites=${VMTEST_SUITES:-nfs cifs}
vm_timeout=${VMTEST_VM_TIMEOUT:-270}
watchdog=${VMTEST_WATCHDOG:-240}
packages=(qemu-system-x86 busybox-static cpio kmod xz-utils nfs-kernel-server nfs-common samba cifs-utils keyutils iproute2)

pass=0 fail=0 skipped=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $*"; }
summary() { echo "$pass passed, $fail failed, $skipped skipped"; }
# A setup step failed: nothing can be checked. Say why, count it, stop.
die() { not_ok "setup: $*"; summary; exit 1; }

now() { date +%s.%N; }
timings=()
stage_start=$(now)
stage_done() { # stage_done <name>: record how long the stage took
  local t; t=$(now)
  timings+=("$1=$(awk "BEGIN{printf \"%.1f\", $t - $stage_start}")s")
  stage_start=$t
}
t_all=$(now)

[ "$(id -u)" = 0 ] || die "needs root (apt-get, and qemu's 9p passthrough of /)"
# paths end up in the kernel command line (space-separated) and in qemu -virtfs options (comma-separated)
case "$root$work" in *[[:space:],]*) die "project or work dir path contains a space or comma: $root, $work" ;; esac
mkdir -p "$work" || die "cannot create $work"

# ---- 1. packages ----------------------------------------------------------------------------
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ -z "${VMTEST_SKIP_APT:-}" ]; then
  echo "# installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$work/apt.log" 2>&1 || die "apt-get update failed (see $work/apt.log)"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$work/apt.log" 2>&1 \
    || die "apt-get install ${missing[*]} failed (see $work/apt.log)"
elif [ ${#missing[@]} -gt 0 ]; then
  die "missing packages (VMTEST_SKIP_APT is set): ${missing[*]}"
fi
stage_done packages

# ---- 2. the kernel: Debian's .deb, unpacked under the work dir (its postinst would build an initrd for minutes) ----
kv=${VMTEST_KERNEL:-}
if [ -z "$kv" ]; then
  kv=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { sub("linux-image-", "", $2); print $2; exit }')
  if [ -z "$kv" ]; then
    apt-get update -qq >>"$work/apt.log" 2>&1
    kv=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { sub("linux-image-", "", $2); print $2; exit }')
  fi
  # no package lists (offline): the newest kernel already unpacked here
  [ -n "$kv" ] || kv=$(ls -d "$work"/kernel-*/ 2>/dev/null | sed 's|.*/kernel-||; s|/$||' | sort -V | tail -n 1)
  [ -n "$kv" ] || die "cannot tell which kernel to boot: no linux-image-amd64 in apt (set VMTEST_KERNEL)"
fi
kdir=$work/kernel-$kv
if [ ! -f "$kdir/boot/vmlinuz-$kv" ] || [ ! -f "$kdir/lib/modules/$kv/modules.dep" ]; then
  echo "# fetching linux-image-$kv"
  rm -rf "$kdir" "$kdir.tmp" "$work/deb"
  mkdir -p "$work/deb"
  (cd "$work/deb" && apt-get download -qq "linux-image-$kv") >>"$work/apt.log" 2>&1 || die "apt-get download linux-image-$kv failed (see $work/apt.log)"
  dpkg-deb -x "$work"/deb/linux-image-"$kv"_*.deb "$kdir.tmp" || die "cannot unpack linux-image-$kv"
  # the .deb ships no modules.dep: its postinst runs depmod
  depmod -b "$kdir.tmp" "$kv" || die "depmod for $kv failed"
  mv "$kdir.tmp" "$kdir" && rm -rf "$work/deb"
fi
stage_done kernel

# ---- 3. initramfs, cached per kernel and per version of its two files ----
key=$(cat "$here/initramfs.sh" "$here/initramfs-init" | sha256sum | cut -c1-12)
initrd=$kdir/initramfs-$key.cpio.gz
if [ ! -f "$initrd" ]; then
  rm -f "$kdir"/initramfs-*.cpio.gz
  bash "$here/initramfs.sh" "$kdir" "$kv" "$initrd" || die "initramfs build failed"
fi
stage_done initramfs

# ---- 4. the project ----
[ -d "$root/node_modules" ] || die "no node_modules in $root: run npm ci first"
if [ ! -f "$root/dist/src/daemon/main.js" ] || [ ! -x "$root/dist/keyring/nsidmap-upcall" ]; then
  echo "# building the project"
  (cd "$root" && npm run build) >"$work/build.log" 2>&1 || die "npm run build failed (see $work/build.log)"
fi
stage_done build

# ---- 5. one VM per suite ----
for suite in $suites; do
  [ -f "$here/guest/$suite.sh" ] || die "no suite guest/$suite.sh"
  out=$work/out-$suite
  console=$work/console-$suite.log
  rm -rf "$out" && mkdir -p "$out"
  echo "# booting the $suite suite (console: $console)"
  timeout -k 10 "$vm_timeout" qemu-system-x86_64 \
    -accel tcg,thread=multi -smp 2 -m 1536 -cpu "${VMTEST_QEMU_CPU:-max}" \
    -nodefaults -display none -no-reboot -monitor none -serial "file:$console" \
    -kernel "$kdir/boot/vmlinuz-$kv" -initrd "$initrd" \
    -virtfs local,path=/,mount_tag=root,security_model=passthrough,readonly=on,multidevs=remap \
    -virtfs "local,path=$out,mount_tag=out,security_model=passthrough" \
    -append "console=ttyS0 panic=-1 loglevel=4 mitigations=off vmtest.init=$here/guest/init.sh vmtest.moddir=$kdir/lib/modules vmtest.suite=$suite vmtest.root=$root vmtest.watchdog=$watchdog" \
    </dev/null >"$work/qemu-$suite.log" 2>&1
  rc=$?
  [ $rc = 124 ] || [ $rc = 137 ] && echo "# the $suite VM was killed after ${vm_timeout}s"
  before=$((pass + fail + skipped))
  while IFS= read -r line; do
    case $line in
      "ok - "*) pass=$((pass + 1)); echo "$line" ;;
      "not ok - "*) fail=$((fail + 1)); echo "$line" ;;
      "skip - "*) skipped=$((skipped + 1)); echo "$line" ;;
      *) echo "# $line" ;;
    esac
  done < <(cat "$out/results" 2>/dev/null)
  # a suite that checked nothing has failed, whatever it says: never a green run that ran nothing
  [ $((pass + fail + skipped)) -gt "$before" ] || not_ok "$suite: the guest ran at least one check (none reported; see $console)"
  if [ -f "$out/done" ]; then
    sed 's/^/# /' "$out/done"
  else
    not_ok "$suite: the guest finished its scenarios (qemu rc=$rc; last console lines below, all in $console)"
    tail -n 25 "$console" 2>/dev/null | sed 's/^/#   /'
    sed 's/^/#   /' "$work/qemu-$suite.log" 2>/dev/null
  fi
  stage_done "vm_$suite"
done

timings+=("total=$(awk "BEGIN{printf \"%.1f\", $(now) - $t_all}")s")
echo "# timing: ${timings[*]}"
summary
[ "$fail" -eq 0 ]
