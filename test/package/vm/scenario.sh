#!/bin/bash
# The scenario of test/package/vm-systemd.sh, run by systemd in the VM as nsidmap-vmtest.service
# after nsidmapd.service (the package's unit, with all its sandboxing) has started.
#
#   systemd   the unit is active (READY=1 reached), sandboxed as written, reloads, the watchdog
#             is fed; systemd-analyze security of the running unit
#   clientid  the sandboxed daemon sets NFSv4 client identifiers (nsenter + unshare + sysfs mount)
#             in the host's and in another network namespace
#   nfs       knfsd + NFSv4.2 client on loopback: nfsd channels and id_resolver keys answered by
#             the daemon; then the failures admins meet — domain mismatch (nobody), chown: Invalid
#             argument, stale keys, root squash, the daemon down — with the real outputs
#             collected in transcript.txt for docs/troubleshooting.md
#
# Results: one `ok - …` / `not ok - …` line each in the 9p share's `results`.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
HERE=$(dirname "$(readlink -f "$0")")
OUT=/run/vmtest-out
mkdir -p "$OUT"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out "$OUT" || echo "scenario: no out share"
T=$OUT/transcript.txt
: >"$T"

result() { echo "$*" >>"$OUT/results"; echo ">>> $*"; }
ok() { result "ok - $1"; }
not_ok() { result "not ok - $1${2:+ # $2}"; }
expect() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi; }
# show CMD…: run it as an admin would, into the transcript (`$ cmd`, its output, its exit status)
show() {
  local out rc
  out=$(timeout -k 5 60 "$@" 2>&1); rc=$?
  { echo "\$ $*"; [ -n "$out" ] && echo "$out"; [ $rc -ne 0 ] && echo "[exit $rc]"; echo; } >>"$T"
  printf '%s\n' "$out"
  return $rc
}
note() { echo "### $*" >>"$T"; echo "### $*"; }
finish() {
  journalctl -b --no-pager >"$OUT/journal.txt" 2>&1
  journalctl -u nsidmapd -b --no-pager -o cat >"$OUT/nsidmapd.log" 2>&1
  echo "scenario-done" >"$OUT/done"
  sync
  echo o >/proc/sysrq-trigger
  sleep 30
}
trap finish EXIT
wait_for() { # wait_for SECONDS CMD…: until CMD succeeds (by the clock: commands are slow under TCG)
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.3; done
  return 1
}

# ---- systemd -----------------------------------------------------------------------------------
note "systemd"
expect "nsidmapd.service is active under systemd (Type=notify: READY=1 was sent)" "$(systemctl is-active nsidmapd)" active
show systemctl show nsidmapd -p Type -p NotifyAccess -p WatchdogUSec -p ActiveState -p SubState -p NRestarts
show systemctl status nsidmapd --no-pager -n 5 >/dev/null
PID=$(systemctl show -p MainPID --value nsidmapd)
status=$(grep -E '^(NoNewPrivs|Seccomp|CapBnd|CapEff)' "/proc/$PID/status")
{ echo "\$ grep -E '^(NoNewPrivs|Seccomp|CapBnd|CapEff)' /proc/\$(systemctl show -p MainPID --value nsidmapd)/status"; echo "$status"; echo; } >>"$T"
expect "the daemon runs with NoNewPrivs and a seccomp filter" "$(echo "$status" | awk '/NoNewPrivs|Seccomp:/ { printf "%s%s ", $1, $2 }')" "NoNewPrivs:1 Seccomp:2 "
expect "… and exactly the five capabilities of the unit (capsh --decode)" \
  "$(capsh --decode="$(echo "$status" | awk '/CapBnd/ { print $2 }')" 2>/dev/null | sed 's/.*=//')" \
  "cap_chown,cap_dac_override,cap_dac_read_search,cap_sys_ptrace,cap_sys_admin"
sec=$(systemd-analyze security nsidmapd.service 2>&1 | tail -n 1)
echo "$sec"; { echo "\$ systemd-analyze security nsidmapd.service | tail -n 1"; echo "$sec"; echo; } >>"$T"
case $sec in *"exposure level for nsidmapd.service: "[0-4].*) ok "systemd-analyze security of the running unit: $sec" ;; *) not_ok "systemd-analyze security below 5" "$sec" ;; esac
show idmapctl status >/dev/null && ok "idmapctl status answers through /run/nsidmap/admin.sock" || not_ok "idmapctl status"

wd1=$(systemctl show -p WatchdogTimestampMonotonic --value nsidmapd)
sleep 16
wd2=$(systemctl show -p WatchdogTimestampMonotonic --value nsidmapd)
if [ -n "$wd1" ] && [ "$wd2" != "$wd1" ] && [ "$wd2" != 0 ]; then ok "the watchdog is fed (WatchdogTimestamp moves: $wd1 → $wd2)"; else not_ok "the watchdog is fed" "$wd1 → $wd2"; fi

install -m 0644 "$HERE/policy-mismatch.yaml" /etc/nsidmap/policy.yaml
show systemctl reload nsidmapd >/dev/null
wait_for 20 sh -c 'journalctl -u nsidmapd -b -o cat | grep -q policy.reloaded'
expect "systemctl reload: the policy is reloaded (policy.reloaded), same process" \
  "$(journalctl -u nsidmapd -b -o cat | grep -c policy.reloaded) $(systemctl show -p MainPID --value nsidmapd) $(systemctl is-active nsidmapd)" "1 $PID active"

# ---- NFS: modules, knfsd, a loopback mount -------------------------------------------------------
note "nfs setup"
cat >>/etc/passwd <<'EOF'
alice:x:2001:3001::/nonexistent:/usr/sbin/nologin
bob:x:2002:3001::/nonexistent:/usr/sbin/nologin
EOF
echo 'devs:x:3001:' >>/etc/group
hostname vmtest
ip link set lo up
# the Debian kernel's modules (contrib/vmtest's initramfs binds them over /lib/modules; bind them
# again if that mount did not survive into systemd)
if [ ! -f "/lib/modules/$(uname -r)/modules.dep" ]; then
  for a in $(cat /proc/cmdline); do case $a in vmtest.moddir=*) mount --bind "${a#vmtest.moddir=}" /lib/modules ;; esac; done
fi
show sh -c 'findmnt /usr/lib/modules; ls /lib/modules' >/dev/null
modprobe sunrpc && modprobe nfsd nfs4_disable_idmapping=N && modprobe nfs nfs4_disable_idmapping=0 && modprobe nfsv4 \
  || not_ok "modprobe nfsd/nfs"
mkdir -p /run/rpc_pipefs /srv/export /mnt/nfs
mountpoint -q /run/rpc_pipefs || mount -t rpc_pipefs sunrpc /run/rpc_pipefs
mountpoint -q /proc/fs/nfsd || mount -t nfsd nfsd /proc/fs/nfsd
mount -t tmpfs tmpfs /srv/export
for f in f_alice:2001:3001 f_bob:2002:3001 f_root:0:0 f_unknown:4242:4242; do
  touch "/srv/export/${f%%:*}"; chown "${f#*:}" "/srv/export/${f%%:*}"
done

# ---- clientid: the sandboxed daemon writes sysfs through its nsenter/unshare helper --------------
note "clientid"
ip netns add c1
ip netns exec c1 sleep 600 &
if wait_for 30 sh -c 'v=$(cat /sys/fs/nfs/net/nfs_client/identifier); [ -n "$v" ] && [ "$v" != "(null)" ]'; then
  ok "the daemon set the host's NFSv4 client identifier from inside its sandbox ($(cat /sys/fs/nfs/net/nfs_client/identifier))"
else
  not_ok "the daemon set the host's NFSv4 client identifier" "$(cat /sys/fs/nfs/net/nfs_client/identifier 2>&1)"
fi
if wait_for 30 sh -c 'v=$(ip netns exec c1 cat /sys/fs/nfs/net/nfs_client/identifier); [ -n "$v" ] && [ "$v" != "(null)" ]'; then
  ok "… and in another network namespace (ip netns c1: $(ip netns exec c1 cat /sys/fs/nfs/net/nfs_client/identifier))"
else
  not_ok "… and in another network namespace" "$(ip netns exec c1 cat /sys/fs/nfs/net/nfs_client/identifier 2>&1)"
fi
show idmapctl clientid list >/dev/null

note "nfs server and mount"
echo "/srv/export 127.0.0.1(rw,fsid=0,no_root_squash,no_subtree_check,insecure,sec=sys)" >/etc/exports
exportfs -ra
rpc.mountd -N 2 -N 3 --no-udp
rpc.nfsd -N 3 -V 4 -V 4.1 -V 4.2 --no-udp --grace-time 10 --lease-time 10 4
echo Y >/proc/fs/nfsd/v4_end_grace 2>/dev/null
if wait_for 30 sh -c 'idmapctl status | grep -q /proc/net/rpc'; then ok "the sandboxed daemon serves the host's nfsd channels"; else not_ok "the daemon serves nfsd" "$(idmapctl status 2>&1 | tail -n 8)"; fi
show idmapctl status >/dev/null
if timeout 60 mount -t nfs4 -o vers=4.2,sec=sys,proto=tcp,addr=127.0.0.1,clientaddr=127.0.0.1,actimeo=0 127.0.0.1:/ /mnt/nfs; then
  ok "NFSv4.2 mount over loopback"
else
  not_ok "NFSv4.2 mount over loopback"; exit 0
fi

# ---- the failures, as an admin meets them --------------------------------------------------------
note "domain mismatch: server writes @server.example, client accepts client.example"
show ls -l /mnt/nfs >/dev/null
expect "domain mismatch: the server's alice shows as nobody on the client" "$(stat -c '%U:%G' /mnt/nfs/f_alice)" "nobody:nogroup"
show idmapctl keys list --type nfs >/dev/null
show idmapctl query uid alice@server.example --explain >/dev/null
show sh -c "journalctl -u nsidmapd -b -o cat | grep -m 3 'outcome=nobody'" >/dev/null

note "chown: Invalid argument (nfsd's name-to-id answer is negative)"
out=$(show chown bob /mnt/nfs/f_alice); rc=$?
case "$rc $out" in *"Invalid argument"*) ok "chown to a name the server's scope does not accept: $out" ;; *) not_ok "chown fails with Invalid argument" "rc=$rc $out" ;; esac
expect "… and the server's file keeps its owner" "$(stat -c %u:%g /srv/export/f_alice)" "2001:3001"
show idmapctl query uid bob@client.example --as nfsd --explain >/dev/null
show cat /proc/net/rpc/nfs4.nametoid/content >/dev/null
show sh -c "journalctl -u nsidmapd -b -o cat | grep -m 2 'iface=nfsd.*outcome=negative'" >/dev/null

note "fixed policy, stale keys"
install -m 0644 "$HERE/policy-fixed.yaml" /etc/nsidmap/policy.yaml
show systemctl reload nsidmapd >/dev/null
sleep 2
show ls -l /mnt/nfs/f_alice >/dev/null
expect "stale key: after the fix the client still shows nobody (the kernel's .id_resolver answer)" "$(stat -c '%U' /mnt/nfs/f_alice)" "nobody"
show idmapctl keys list --type nfs >/dev/null
show idmapctl keys clear --type nfs >/dev/null
show ls -l /mnt/nfs >/dev/null
expect "after idmapctl keys clear: alice" "$(stat -c '%U:%G' /mnt/nfs/f_alice)" "alice:devs"
show chown bob /mnt/nfs/f_alice >/dev/null
expect "chown now lands on the server as bob (2002)" "$(stat -c %u /srv/export/f_alice)" "2002"

note "root squash"
install -m 0644 "$HERE/policy-squash.yaml" /etc/nsidmap/policy.yaml
show systemctl reload nsidmapd >/dev/null
sleep 2
show idmapctl keys clear --type nfs >/dev/null
show ls -l /mnt/nfs >/dev/null
expect "root: squash on the client scope: the server's root-owned file shows as nobody" "$(stat -c '%U' /mnt/nfs/f_root)" "nobody"
show touch /mnt/nfs/made_by_root >/dev/null
show ls -ln /srv/export/made_by_root >/dev/null
show ls -l /mnt/nfs/made_by_root >/dev/null
show idmapctl query uid root@server.example --explain >/dev/null

note "the daemon down"
show systemctl stop nsidmapd >/dev/null
show idmapctl status >/dev/null
show idmapctl keys clear --type nfs >/dev/null
show ls -l /mnt/nfs/f_bob >/dev/null
expect "daemon down: the helper answers in-process (bob still shows as bob)" "$(stat -c '%U' /mnt/nfs/f_bob)" "bob"
show sh -c "journalctl -b -o cat -t nsidmap-upcall | tail -n 4" >/dev/null
show systemctl start nsidmapd >/dev/null
expect "started again" "$(systemctl is-active nsidmapd)" active

note "restart on failure"
PID=$(systemctl show -p MainPID --value nsidmapd)
kill -KILL "$PID"
wait_for 30 sh -c "[ \"\$(systemctl show -p MainPID --value nsidmapd)\" != $PID ] && systemctl is-active -q nsidmapd"
expect "Restart=on-failure: killed, it is back" "$(systemctl is-active nsidmapd) $(systemctl show -p NRestarts --value nsidmapd)" "active 1"
umount -l /mnt/nfs
