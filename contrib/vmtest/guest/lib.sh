# Shared by the guest suites (sourced by init.sh, and by scripts run inside a network namespace).
# Needs: SUITE, ROOT (the project), GUEST (this directory), OUT (the results share), LOGS.

FIX=$GUEST/../fixtures
NODE=$(command -v node)
SOCKET=/run/nsidmap/admin.sock
HELPER=$ROOT/dist/keyring/nsidmap-upcall

uptime_s() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk "BEGIN { printf \"%.1f\", $(uptime_s) - $1 }"; }
step() { echo; echo "=== [$(uptime_s)s] $*"; }
run() { echo "+ $*"; "$@"; }
# Every command that can block on a mount, a server or the daemon runs under a timeout.
t() { local secs=$1; shift; timeout -k 5 "$secs" "$@"; }
timing() { echo "$1=$2s" >> "$LOGS/timing"; }

# ---- results: one line each, appended to the share at once ----
result() { echo "$*" >> "$OUT/results"; echo ">>> [$(uptime_s)s] $*"; }
ok() { result "ok - $SUITE: $1"; }
not_ok() { result "not ok - $SUITE: $1${2:+ # $2}"; }
skip() { result "skip - $SUITE: $1 # $2"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
# expect DESCRIPTION ACTUAL WANTED
expect() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi; }

# CPU seconds nsidmapd used so far (user+system, from /proc/PID/stat; USER_HZ is 100 on x86)
nsidmapd_cpu() { [ -n "$NSIDMAPD_PID" ] && awk '{ printf "%.1f", ($14 + $15) / 100 }' "/proc/$NSIDMAPD_PID/stat" 2>/dev/null; }

collect_logs() { cp "$LOGS"/* "$OUT/" 2>/dev/null; sync; }

# ---- the guest's identities: the client's users (ls -l shows their names), see fixtures/policy.yaml ----
add_client_users() {
  local line name
  for f in passwd group; do
    while IFS= read -r line; do
      name=${line%%:*}
      if getent "$f" "$name" >/dev/null; then not_ok "setup: $f entry $name is free in the guest" "the host has one"; return 1; fi
    done < "$FIX/client.$f"
    cat "$FIX/client.$f" >> "/etc/$f"
  done
}

install_policy() {
  mkdir -p /etc/nsidmap
  cp "$FIX/policy.yaml" "$FIX/server.passwd" "$FIX/server.group" /etc/nsidmap/
}

# Our request-key rules, from the shipped template, in the guest's /etc only. The host's packages
# bring rules of their own (nfs-common's id_resolver.conf, cifs-utils' cifs.idmap.conf): ours
# replace them, as contrib/install.sh --disable-conflicting does.
RULES=/etc/request-key.d/nsidmap.conf
install_rules() {
  rm -f /etc/request-key.d/*.conf
  sed "s|@HELPER@|$HELPER|g" "$ROOT/keyring/request-key.d/nsidmap.conf" > "$RULES"
  grep -v '^#' "$RULES"
}

# The helper logs to syslog (its fallback to the in-process path among others): keep those lines.
start_syslog() {
  busybox syslogd -n -O "$LOGS/syslog.log" &
  for _ in $(seq 50); do [ -S /dev/log ] && return 0; sleep 0.1; done
  echo "warning: no /dev/log"
}

# ---- nsidmapd and idmapctl ----
# Launched early, waited for later: node takes seconds to start under TCG, the suites set up
# meanwhile (as at boot, the daemon is there before nfsd and Samba).
NSIDMAPD_PID= NSIDMAPD_T0=
nsidmapd_launch() {
  NSIDMAPD_T0=$(uptime_s)
  "$NODE" --optimize-for-size "$ROOT/dist/src/daemon/main.js" --policy /etc/nsidmap/policy.yaml \
    --log-level debug >> "$LOGS/nsidmapd.log" 2>&1 &
  NSIDMAPD_PID=$!
}
nsidmapd_ready() {
  local t0=$NSIDMAPD_T0
  for _ in $(seq 900); do
    grep -q 'daemon.ready' "$LOGS/nsidmapd.log" 2>/dev/null && break
    kill -0 "$NSIDMAPD_PID" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q 'daemon.ready' "$LOGS/nsidmapd.log"; then
    ok "nsidmapd starts with the test's policy (ready in $(elapsed "$t0")s)"
    timing nsidmapd_start "$(elapsed "$t0")"
  else
    not_ok "nsidmapd starts with the test's policy" "$(tail -n 3 "$LOGS/nsidmapd.log" | tr '\n' ' ')"
    return 1
  fi
}
idmapctl() { t 60 "$NODE" "$ROOT/dist/src/cli/main.js" "$@"; }

# The first steps of every suite's setup: the guest's name and loopback, the client's users, the
# test's policy and our request-key rules, syslog for the helper, and nsidmapd launched (the suite
# waits for it later with nsidmapd_ready). Fails when the client's users cannot be added.
guest_setup() {
  step "setup: identities, policy, request-key rules, syslog"
  hostname vmtest
  ip link set lo up
  add_client_users || return 1
  install_policy
  install_rules
  start_syslog
  nsidmapd_launch
}

# What nsidmapd serves now (its status): lines `nfsd|pipefs <netns> <path>` and
# `clientid <netns> <identifier> <state>`, netns being `init` or an inode number (served.mjs).
served() { t 20 "$NODE" "$GUEST/served.mjs" "$SOCKET" "$LOGS/status.json" 2>>"$LOGS/served.log"; }
# wait_served PATTERN SECONDS: until a `served` line matches (an extended regexp); at once when
# the daemon runs no responder at all
wait_served() {
  local end=$(( $(date +%s) + $2 )) lines
  while :; do
    lines=$(served)
    grep -Eq "$1" <<<"$lines" && return 0
    grep -q '^responders none' <<<"$lines" && return 1
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 1
  done
}

# A lookup the daemon itself answered with a mapping, as its log shows it (mapped: at debug).
daemon_mapped() { # daemon_mapped IFACE QUERY
  local q; q=$(printf '%s' "$2" | sed 's/[.[*^$\\]/\\&/g')
  grep -F " iface=$1 " "$LOGS/nsidmapd.log" | grep -F ' outcome=mapped ' | grep -Eq -- " query=$q( |\$)"
}

# log_has WORD...: a line of the daemon's log holds every word (` word ` or at the end of line);
# only lines after the last log_mark (clear it with LOG_FROM=1)
LOG_FROM=1
log_mark() { LOG_FROM=$(( $(wc -l < "$LOGS/nsidmapd.log") + 1 )); }
log_has() {
  local lines; lines=$(tail -n +"$LOG_FROM" "$LOGS/nsidmapd.log")
  for w in "$@"; do lines=$(grep -F -- " $w" <<<"$lines" | grep -E -- " $(printf '%s' "$w" | sed 's/[.[*^$\\]/\\&/g')( |\$)"); done
  [ -n "$lines" ]
}

# Reload the policy the way systemd does (SIGHUP), and wait for the daemon to say it took it.
nsidmapd_reload() {
  local before; before=$(grep -c 'policy.reloaded' "$LOGS/nsidmapd.log")
  kill -HUP "$NSIDMAPD_PID" || return 1
  for _ in $(seq 300); do
    [ "$(grep -c 'policy.reloaded' "$LOGS/nsidmapd.log")" -gt "$before" ] && return 0
    grep -q 'policy.refused' "$LOGS/nsidmapd.log" && return 1
    sleep 0.1
  done
  return 1
}
# The helper fell back to answering in-process (the daemon could not be asked): never expected here.
check_no_fallback() {
  if grep -q 'answering in-process' "$LOGS/syslog.log" 2>/dev/null; then
    not_ok "every upcall was answered by nsidmapd, none by the helper's in-process fallback" "$(grep -m1 'in-process' "$LOGS/syslog.log")"
  else
    ok "every upcall was answered by nsidmapd, none by the helper's in-process fallback"
  fi
}

# owner FILE: "user:group uid:gid" as ls -l shows it
owner() { t 60 stat -c '%U:%G %u:%g' "$1" 2>&1; }
ids() { t 60 stat -c '%u:%g' "$1" 2>&1; }
