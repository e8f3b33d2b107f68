# The container scenario of the NFS suite, run as `ip netns exec c1 bash container.sh`: in network
# namespace c1 (and the private mount namespace ip-netns-exec gives it) its own knfsd exports its
# own tmpfs, and a client in c1 mounts it over c1's loopback. nsidmapd, running in the host's
# namespaces, must find c1, serve its nfsd channels with the c1-server scope (domain c1.example:
# server uid 2001 is ann@c1.example there, alice@vmtest.example on the host), and set c1's NFSv4
# client identifier, which c1's server then sees in /proc/fs/nfsd/clients/*/info.
# Needs from init.sh: SUITE ROOT GUEST OUT LOGS.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=lib.sh
. "$GUEST/lib.sh"

skip_all() {
  skip "container: ls -l in c1 shows ann:crew for c1's server owner 2001:3001 (domain c1.example)" "$1"
  skip "container: chown ann:crew in c1 lands as 2001:3001 on c1's server" "$1"
  skip "container: c1's nfsd names uid 2001 ann@c1.example, the host's alice@vmtest.example" "$1"
  skip "container: c1's server sees the NFSv4 client identifier nsidmapd set in c1" "$1"
}
# `container.sh --skip REASON`: the suite knows already that nothing here can run
if [ "${1:-}" = --skip ]; then skip_all "$2"; exit 0; fi

NETNS=$(stat -L -c %i /proc/self/ns/net)
SRV=/srv/c1
MNT=/mnt/c1
MOUNTD=
teardown() {
  mountpoint -q "$MNT" && { t 30 umount "$MNT" || t 10 umount -f -l "$MNT"; }
  t 20 rpc.nfsd 0
  [ -n "$MOUNTD" ] && kill "$MOUNTD" 2>/dev/null
}
trap teardown EXIT

step "c1 (netns $NETNS): knfsd of its own"
ip link set lo up
mkdir -p "$SRV" "$MNT" /run/vmtest-c1
mount -t nfsd nfsd /proc/fs/nfsd
mount -t tmpfs tmpfs /var/lib/nfs && mkdir -p /var/lib/nfs/v4recovery
mount -t tmpfs tmpfs "$SRV"
echo "$SRV 127.0.0.1(rw,fsid=0,no_root_squash,no_subtree_check,insecure,sec=sys)" > /run/vmtest-c1/exports
mount --bind /run/vmtest-c1/exports /etc/exports
run exportfs -ra
rpc.mountd -F -N 2 -N 3 --no-udp >> "$LOGS/c1-mountd.log" 2>&1 &
MOUNTD=$!
run rpc.nfsd -N 3 -V 4 -V 4.1 -V 4.2 --no-udp --grace-time 10 --lease-time 10 4
echo Y > /proc/fs/nfsd/v4_end_grace
touch "$SRV/f_ann" "$SRV/f_chown"
chown 2001:3001 "$SRV/f_ann"
ls -ln "$SRV"

step "c1: does nsidmapd serve c1's nfsd channels?"
if ! wait_served "^nfsd $NETNS " 25; then
  skip_all "nsidmapd does not serve the nfsd channels of another network namespace yet (idmapctl status: no nfsd for netns $NETNS)"
  exit 0
fi
served | grep " $NETNS "

step "c1: the NFSv4 client identifier (/sys/fs/nfs/net/nfs_client/identifier)"
# It must be in place before the first mount (EXCHANGE_ID). Waited for only when the daemon sets
# identifiers at all (its status shows one for some namespace).
ident= claimed=
if served | grep -q '^clientid '; then
  for _ in $(seq 15); do
    claimed=$(served | awk -v ns="$NETNS" '$1 == "clientid" && $2 == ns { print $3 }')
    ident=$(cat /sys/fs/nfs/net/nfs_client/identifier 2>/dev/null)
    [ -n "$claimed" ] && [ -n "$ident" ] && [ "$ident" != "(null)" ] && break
    sleep 1
  done
fi
[ "$ident" = "(null)" ] && ident=
echo "sysfs: '${ident:-(null)}', nsidmapd: '${claimed:-none}'"

step "c1: mount c1's export over c1's loopback"
if ! run t 60 mount -t nfs4 -o vers=4.2,sec=sys,proto=tcp,addr=127.0.0.1,clientaddr=127.0.0.1,actimeo=0 127.0.0.1:/ "$MNT"; then
  not_ok "container: NFSv4.2 mount inside c1"
  exit 1
fi
run t 60 ls -l "$MNT"
expect "container: ls -l in c1 shows ann:crew for c1's server owner 2001:3001 (domain c1.example)" "$(owner $MNT/f_ann)" "ann:crew 8001:8100"
t 60 chown ann:crew "$MNT/f_chown"
expect "container: chown ann:crew in c1 lands as 2001:3001 on c1's server" "$(ids $SRV/f_chown)" "2001:3001"
c1_name=$(awk '$2 == "user" && $3 == "2001" { print $4 }' /proc/net/rpc/nfs4.idtoname/content)
host_name=$(awk '$2 == "user" && $3 == "2001" { print $4 }' /proc/1/net/rpc/nfs4.idtoname/content)
expect "container: c1's nfsd names uid 2001 ann@c1.example, the host's alice@vmtest.example" "$c1_name / $host_name" "ann@c1.example / alice@vmtest.example"

if [ -z "$ident" ] || [ -z "$claimed" ]; then
  skip "container: c1's server sees the NFSv4 client identifier nsidmapd set in c1" \
    "nsidmapd set no client identifier in c1 (sysfs '${ident:-(null)}', idmapctl status '${claimed:-none}')"
else
  expect "container: the identifier in c1 is the one nsidmapd reports" "$ident" "$claimed"
  grep -H . /proc/fs/nfsd/clients/*/info
  check "container: c1's server sees that identifier (/proc/fs/nfsd/clients/*/info)" grep -qF -- "$ident" /proc/fs/nfsd/clients/*/info
fi
