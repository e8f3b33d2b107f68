# The CIFS suite (sourced by init.sh as PID 1): Samba on loopback, the kernel's SMB3 client with
# cifsacl, nsidmapd answering its cifs.idmap keys with fixtures/policy.yaml.
#
# Samba's domain SID is set to S-1-5-21-1111-2222-3333; alice and bob are in its passdb with RIDs
# 1001 and 1002, so their files carry domain SIDs, which the policy's sid range maps to 7001/7002.
# dave (7200) is not in the passdb: Samba shows him as the Unix SID S-1-22-1-7200, and groups as
# S-1-22-2-<gid>. chown through the mount sends the SIDs the policy produces back to Samba.

T_SUITE=$(uptime_s)
SHARE=/srv/smb
MNT=/mnt/cifs
DOMAIN_SID=S-1-5-21-1111-2222-3333

cifs_setup() {
  guest_setup || return 1
  mkdir -p "$SHARE" "$MNT" /var/lib/samba/private /var/cache/samba /run/samba
  mount -t tmpfs tmpfs "$SHARE"
  return 0
}

samba_start() {
  step "Samba: standalone server on loopback, domain SID $DOMAIN_SID"
  cat > /etc/samba/smb.conf <<CONF
[global]
  workgroup = VMTEST
  netbios name = VMTEST
  server role = standalone server
  interfaces = lo
  bind interfaces only = yes
  disable netbios = yes
  smb ports = 445
  passdb backend = tdbsam
  log file = $LOGS/smbd.log
  log level = 1
[share]
  path = $SHARE
  read only = no
CONF
  run net setlocalsid "$DOMAIN_SID" || return 1
  local u
  for u in root:500 alice:1001 bob:1002; do
    printf 'secret\nsecret\n' | pdbedit -t -a -u "${u%%:*}" -U "${u#*:}" >/dev/null || { echo "pdbedit ${u%%:*} failed"; return 1; }
  done
  pdbedit -L -v | grep -E '^(Unix username|User SID):'
  touch "$SHARE"/f_alice "$SHARE"/f_bob "$SHARE"/f_dave "$SHARE"/f_chown_bob "$SHARE"/f_chown_dave
  chown alice:devs "$SHARE/f_alice"; chown bob:devs "$SHARE/f_bob"; chown dave:devs "$SHARE/f_dave"
  ls -ln "$SHARE"
  smbd --foreground --no-process-group >> "$LOGS/smbd.log" 2>&1 &
  local _
  for _ in $(seq 100); do ss -ltn | grep -q '127.0.0.1:445 ' && return 0; sleep 0.2; done
  return 1
}

cifs_mount() {
  step "mount //127.0.0.1/share with cifsacl"
  run modprobe cifs
  local t0; t0=$(uptime_s)
  if run t 60 mount -t cifs //127.0.0.1/share "$MNT" -o username=root,password=secret,vers=3.1.1,cifsacl; then
    ok "SMB3 mount with cifsacl over loopback ($(elapsed "$t0")s)"
  else
    not_ok "SMB3 mount with cifsacl over loopback" "mount failed"
    return 1
  fi
}

scenario_owners() {
  step "owners through SIDs (cifs.idmap os:/gs: upcalls → nsidmap-upcall → nsidmapd)"
  run t 60 ls -l "$MNT"
  expect "owner SID $DOMAIN_SID-1001 (the policy's sid range) shows as alice, group S-1-22-2-7100 as devs" "$(owner $MNT/f_alice)" "alice:devs 7001:7100"
  expect "owner SID $DOMAIN_SID-1002 shows as bob" "$(owner $MNT/f_bob)" "bob:devs 7002:7100"
  expect "Unix SID S-1-22-1-7200 shows as dave" "$(owner $MNT/f_dave)" "dave:devs 7200:7100"
}

scenario_chown() {
  step "chown through the mount (cifs.idmap oi:/gi: upcalls → SIDs to Samba)"
  run t 60 chown bob "$MNT/f_chown_bob"; echo "rc=$?"
  expect "chown bob sends $DOMAIN_SID-1002 (oi:7002 by the sid range): Samba's file is bob's (7002)" "$(ids $SHARE/f_chown_bob | cut -d: -f1)" 7002
  run t 60 chown dave:devs "$MNT/f_chown_dave"; echo "rc=$?"
  expect "chown dave:devs sends S-1-22-1-7200 and S-1-22-2-7100 (the Unix SIDs the policy produces): Samba's file is 7200:7100" "$(ids $SHARE/f_chown_dave)" "7200:7100"
  ls -ln "$SHARE"
}

scenario_keys() {
  step "what the kernel asked and cached (.cifs_idmap)"
  idmapctl keys list --type cifs | tee "$LOGS/keys-cifs.txt"
  local k missing=
  for k in "os:$DOMAIN_SID-1001" "os:S-1-22-1-7200" "gs:S-1-22-2-7100" oi:7002 oi:7200 gi:7100; do
    grep -qx "  $k" "$LOGS/keys-cifs.txt" || missing="$missing $k"
  done
  expect "the kernel asked for exactly those SIDs and ids (idmapctl keys list --type cifs)" "${missing:-none missing}" "none missing"
  missing=
  for k in "$DOMAIN_SID-1001" S-1-22-1-7200 S-1-22-2-7100 7002 7200 7100; do
    daemon_mapped keyring-cifs "$k" || missing="$missing $k"
  done
  expect "nsidmapd mapped those cifs.idmap lookups (its log, iface=keyring-cifs)" "${missing:-all answered}" "all answered"
}

if cifs_setup; then
  if ! samba_start; then
    not_ok "Samba starts on loopback" "$(tail -n 3 "$LOGS/smbd.log" | tr '\n' ' ')"
  elif nsidmapd_ready && cifs_mount; then
    T0=$(uptime_s); scenario_owners; timing owners "$(elapsed "$T0")"
    T0=$(uptime_s); scenario_chown; timing chown "$(elapsed "$T0")"
    scenario_keys
    check_no_fallback
    t 30 umount "$MNT" || t 10 umount -f -l "$MNT"
  fi
fi
timing nsidmapd_cpu "$(nsidmapd_cpu)"
timing cifs_suite "$(elapsed "$T_SUITE")"
