# The NFS suite (sourced by init.sh as PID 1): knfsd and the NFSv4.2 client on loopback, idmapping
# on at both ends, nsidmapd answering with fixtures/policy.yaml — the client plays a machine whose
# ids differ from the server's, so every check below can only pass through names.
#
#  keyring   ls -l and chown through the mount: id_resolver keys both ways (uid:/gid:, user:/group:)
#  nfsd      the server's nfs4.idtoname / nfs4.nametoid channels answered by nsidmapd   [gated]
#  clientid  the host's NFSv4 client identifier set by nsidmapd, seen by the server          [gated]
#  unknown   a server owner nobody knows → nobody; chown to a user the policy lacks fails cleanly
#  pipe      no id_resolver rule → the kernel's legacy rpc_pipefs upcall, nsidmapd's pipefs responder [gated]
#  container a second network namespace with its own nfsd, another domain, its own client id  [gated]
#  reload    a changed policy shows after idmapctl cache flush + keys clear
#
# Until nsidmapd serves the nfsd channels, the server's side is nfs-utils' rpc.idmapd, run with the
# server's passwd/group in a mount namespace of its own: the client's checks still go through names.

T_SUITE=$(uptime_s)
EXPORT=/srv/export
MNT=/mnt/nfs
MOUNT_OPTS=vers=4.2,sec=sys,proto=tcp,addr=127.0.0.1,clientaddr=127.0.0.1,actimeo=0

nfs_setup() {
  guest_setup || return 1
  printf '[General]\nDomain = vmtest.example\n[Mapping]\nNobody-User = nobody\nNobody-Group = nogroup\n' > /etc/idmapd.conf

  step "modules: idmapping on at both ends"
  run modprobe sunrpc
  run modprobe nfsd nfs4_disable_idmapping=N
  run modprobe nfs nfs4_disable_idmapping=0
  run modprobe nfsv4
  expect "nfs client idmapping on (nfs.nfs4_disable_idmapping=N)" "$(cat /sys/module/nfs/parameters/nfs4_disable_idmapping)" N
  expect "nfsd idmapping on (nfsd.nfs4_disable_idmapping=N)" "$(cat /sys/module/nfsd/parameters/nfs4_disable_idmapping)" N
  mkdir -p /run/rpc_pipefs /var/lib/nfs/v4recovery "$EXPORT" "$MNT"
  run mount -t rpc_pipefs sunrpc /run/rpc_pipefs
  run mount -t nfsd nfsd /proc/fs/nfsd
  mount -t tmpfs tmpfs "$EXPORT"
  return 0
}

# The nfsd channels must have a reader before the client mounts (else nfsd gives up on upcalls).
SERVER_IDMAP=
nfs_server_idmapper() {
  step "server-side idmapping"
  if wait_served '^nfsd init ' 20; then
    SERVER_IDMAP=nsidmapd
    echo "nsidmapd serves the host's nfsd channels: $(served | grep '^nfsd init ')"
  else
    SERVER_IDMAP=rpc.idmapd
    echo "nsidmapd does not serve the host's nfsd channels (idmapctl status lists no nfsd responder):"
    echo "the server's side is rpc.idmapd with fixtures/server.passwd as its /etc/passwd"
    unshare -m --propagation private sh -c '
      mount --bind /etc/nsidmap/server.passwd /etc/passwd && mount --bind /etc/nsidmap/server.group /etc/group &&
      exec rpc.idmapd -f -S -v -p /run/rpc_pipefs' >> "$LOGS/rpc.idmapd.log" 2>&1 &
    sleep 1
  fi
}

nfs_server_start() {
  step "knfsd: NFSv4 only, a tmpfs exported as the root"
  echo "$EXPORT 127.0.0.1(rw,fsid=0,no_root_squash,no_subtree_check,insecure,sec=sys)" > /etc/exports
  run exportfs -ra
  run rpc.mountd -N 2 -N 3 --no-udp
  run rpc.nfsd -N 3 -V 4 -V 4.1 -V 4.2 --no-udp --grace-time 10 --lease-time 10 4
  echo Y > /proc/fs/nfsd/v4_end_grace
  # server-side owners, in the server's ids (fixtures/server.passwd)
  local f
  for f in f_alice:2001:3001 f_bob:2002:3001 f_unknown:4242:4242 f_chown:0:0 f_unmappable:2002:3001 \
           f_pipe:2003:3001 f_pipe_chown:0:0 f_reload:2001:3001; do
    touch "$EXPORT/${f%%:*}"; chown "${f#*:}" "$EXPORT/${f%%:*}"
  done
  ls -ln "$EXPORT"
}

nfs_mount() {
  step "mount NFSv4.2 over loopback"
  local t0; t0=$(uptime_s)
  if run t 60 mount -t nfs4 -o "$MOUNT_OPTS" 127.0.0.1:/ "$MNT"; then
    ok "NFSv4.2 mount over loopback ($(elapsed "$t0")s)"
  else
    not_ok "NFSv4.2 mount over loopback" "mount failed"
    return 1
  fi
  grep " $MNT " /proc/mounts
}

scenario_keyring() {
  step "keyring: ls -l and chown through the mount (id_resolver upcalls → nsidmap-upcall → nsidmapd)"
  run t 60 ls -l "$MNT"
  run t 60 ls -ln "$MNT"
  expect "ls -l shows the policy's names for server owner 2001:3001 (uid:alice@…, gid:devs@… keys)" "$(owner $MNT/f_alice)" "alice:devs 7001:7100"
  expect "ls -l shows bob:devs for server owner 2002:3001" "$(owner $MNT/f_bob)" "bob:devs 7002:7100"
  run t 60 chown alice:devs "$MNT/f_chown"; echo "rc=$?"
  expect "chown alice:devs on the client lands as the server's 2001:3001 (user:7001, group:7100 keys)" "$(ids $EXPORT/f_chown)" "2001:3001"
  idmapctl keys list --type nfs | tee "$LOGS/keys-after-keyring.txt"
  local k missing=
  for k in uid:alice@vmtest.example gid:devs@vmtest.example user:7001 group:7100; do
    grep -qx "  $k" "$LOGS/keys-after-keyring.txt" || missing="$missing $k"
  done
  expect "the answers sit in .id_resolver (idmapctl keys list): uid:, gid:, user:, group: keys" "${missing:-none missing}" "none missing"
  missing=
  for k in "keyring-nfs alice@vmtest.example" "keyring-nfs devs@vmtest.example" "keyring-nfs 7001" "keyring-nfs 7100"; do
    daemon_mapped $k || missing="$missing ${k#* }"
  done
  expect "nsidmapd mapped the four id_resolver lookups (its log, iface=keyring-nfs)" "${missing:-all answered}" "all answered"
}

scenario_nfsd() {
  step "nfsd: the server's idmap channels"
  cat /proc/net/rpc/nfs4.idtoname/content /proc/net/rpc/nfs4.nametoid/content
  if [ "$SERVER_IDMAP" != nsidmapd ]; then
    local why="nsidmapd does not serve the host's nfsd channels yet (idmapctl status: no nfsd responder); rpc.idmapd answered them"
    skip "nfsd idtoname: server uid 2001 → alice@vmtest.example by nsidmapd" "$why"
    skip "nfsd nametoid: alice@vmtest.example → server uid 2001 by nsidmapd" "$why"
    return
  fi
  check "nfsd idtoname cache holds 2001 → alice@vmtest.example" grep -q ' user 2001 alice@vmtest.example$' /proc/net/rpc/nfs4.idtoname/content
  check "nfsd nametoid cache holds alice@vmtest.example → 2001" grep -q ' user alice@vmtest.example 2001$' /proc/net/rpc/nfs4.nametoid/content
  # rpc.idmapd is not running in this case: whatever filled those caches was nsidmapd
  check "nsidmapd mapped idtoname requests (its log: nfsd.answer cache=nfs4.idtoname outcome=mapped)" log_has nfsd.answer cache=nfs4.idtoname outcome=mapped
  check "nsidmapd mapped nametoid requests (its log: nfsd.answer cache=nfs4.nametoid outcome=mapped)" log_has nfsd.answer cache=nfs4.nametoid outcome=mapped
}

scenario_clientid() {
  step "clientid: the host's NFSv4 client identifier, as the server sees it"
  local claimed ident
  claimed=$(served | awk '$1 == "clientid" && $2 == "init" { print $3 }')
  ident=$(cat /sys/fs/nfs/net/nfs_client/identifier)
  echo "sysfs: '$ident', nsidmapd: '${claimed:-none}'"
  if [ -z "$claimed" ]; then
    skip "clientid: the server sees the host's NFSv4 client identifier that nsidmapd set" \
      "nsidmapd reports no client identifier for the host's namespace (idmapctl status)"
    return
  fi
  expect "clientid: nsidmapd set the host's identifier before the mount (/sys/fs/nfs/net/nfs_client/identifier)" "$ident" "$claimed"
  grep -h '^name:' /proc/fs/nfsd/clients/*/info
  check "clientid: the server sees it (/proc/fs/nfsd/clients/*/info)" grep -qF -- "$claimed" /proc/fs/nfsd/clients/*/info
}

scenario_unknown() {
  step "unknown owners and unmappable users"
  expect "a server owner no policy knows (4242:4242) shows as nobody:nogroup" "$(owner $MNT/f_unknown)" "nobody:nogroup 65534:65534"
  # mallory (7666) is a local user of the client that the policy does not know: user:7666 is
  # negative, the client sends "7666", and the server must refuse it (NFS4ERR_BADOWNER → EINVAL)
  local msg rc
  msg=$(t 60 chown mallory "$MNT/f_unmappable" 2>&1); rc=$?
  echo "chown mallory: rc=$rc $msg"
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
    ok "chown to a user the policy cannot map fails at once ($msg)"
  else
    local why="rc=$rc $msg"
    # the kernel takes the legacy pipe after any failed id_resolver request, a negative key too
    # (fs/nfs/nfs4idmap.c, nfs_idmap_request_key): a pipe that answers nobody makes the chown pass
    log_has audit.nobody iface=pipefs kind=uid-to-name query=7666 &&
      why="$why; after the negative user:7666 key the kernel asked the legacy pipe, and nsidmapd's pipefs responder answered nobody"
    not_ok "chown to a user the policy cannot map fails at once" "$why"
  fi
  expect "… and the server's owner is unchanged" "$(ids $EXPORT/f_unmappable)" "2002:3001"
}

scenario_pipe() {
  step "legacy pipe: no id_resolver rule → <rpc_pipefs>/nfs/clnt*/idmap"
  ls -d /run/rpc_pipefs/nfs/clnt*/idmap
  if ! served | grep -q '^pipefs init '; then
    local why="nsidmapd does not serve the host's rpc_pipefs yet (idmapctl status: no pipefs responder)"
    skip "pipe: ls -l shows carol:devs for server owner 2003:3001 through the legacy idmap pipe" "$why"
    skip "pipe: chown alice:devs lands as 2001:3001 through the legacy idmap pipe" "$why"
    return
  fi
  grep -v id_resolver "$RULES" > "$RULES.tmp" && mv "$RULES.tmp" "$RULES"
  idmapctl keys clear --type nfs
  log_mark
  expect "pipe: ls -l shows carol:devs for server owner 2003:3001" "$(owner $MNT/f_pipe)" "carol:devs 7003:7100"
  t 60 chown alice:devs "$MNT/f_pipe_chown"
  expect "pipe: chown alice:devs lands as the server's 2001:3001" "$(ids $EXPORT/f_pipe_chown)" "2001:3001"
  grep ' id_legacy ' /proc/keys
  check "pipe: the kernel cached those answers as id_legacy keys (the pipe path was taken)" grep -Eq ' id_legacy +uid:carol@vmtest\.example' /proc/keys
  check "pipe: nsidmapd answered them (its log: pipefs.answer outcome=mapped)" log_has pipefs.answer outcome=mapped
  LOG_FROM=1
  # the keyring again from here on (the id_legacy keys go with the next keys clear)
  install_rules >/dev/null
}

scenario_container() {
  step "container: network namespace c1 with its own nfsd, domain c1.example"
  if [ "$SERVER_IDMAP" != nsidmapd ]; then
    bash "$GUEST/container.sh" --skip "nsidmapd serves no nfsd channel yet, not even the host's (idmapctl status)"
    return
  fi
  run ip netns add c1 || { not_ok "container: ip netns add c1"; return; }
  t 150 ip netns exec c1 bash "$GUEST/container.sh"
  echo "container script rc=$?"
  ip netns del c1
}

scenario_reload() {
  step "reload: a changed policy shows after idmapctl cache flush + keys clear"
  expect "reload: before, f_reload shows alice (7001)" "$(ids $MNT/f_reload)" "7001:7100"
  sed -i 's/alice: 7001/alice: 7011/' /etc/nsidmap/policy.yaml
  grep -q 'alice: 7011' /etc/nsidmap/policy.yaml || { not_ok "reload: policy edited"; return; }
  check "reload: nsidmapd takes the changed policy on SIGHUP" nsidmapd_reload
  idmapctl cache flush
  idmapctl keys clear --type nfs
  expect "reload: after idmapctl cache flush and keys clear the new policy shows (alice → 7011)" "$(ids $MNT/f_reload)" "7011:7100"
}

if nfs_setup && nsidmapd_ready; then
  nfs_server_idmapper
  nfs_server_start
  if nfs_mount; then
    T0=$(uptime_s); scenario_keyring; timing keyring "$(elapsed "$T0")"
    T0=$(uptime_s); scenario_nfsd; timing nfsd "$(elapsed "$T0")"
    scenario_clientid
    T0=$(uptime_s); scenario_unknown; timing unknown "$(elapsed "$T0")"
    T0=$(uptime_s); scenario_pipe; timing pipe "$(elapsed "$T0")"
    T0=$(uptime_s); scenario_container; timing container "$(elapsed "$T0")"
    T0=$(uptime_s); scenario_reload; timing reload "$(elapsed "$T0")"
    check_no_fallback
    step "unmount"
    t 30 umount "$MNT" || t 10 umount -f -l "$MNT"
  fi
  echo "nsidmapd used $(nsidmapd_cpu)s of CPU"; timing nsidmapd_cpu "$(nsidmapd_cpu)"
  step "kernel log"
  dmesg | grep -iE 'nfs|idmap|rpc|cifs' | tail -n 20
fi
timing nfs_suite "$(elapsed "$T_SUITE")"
