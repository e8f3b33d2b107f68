#!/bin/bash
# PID 1 of the VM before systemd (test/package/vm-systemd.sh boots it through contrib/vmtest's
# initramfs): the root is this machine's / read-only with a tmpfs overlay, so everything below
# changes the guest only. Installs the .deb named on the kernel command line, keeps the host's
# services from starting, adds the scenario as a service after nsidmapd, and hands PID 1 to systemd.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
mount -t proc proc /proc
mount -t sysfs sys /sys
fail() { echo "vm-init: $*"; echo o >/proc/sysrq-trigger; sleep 10; }

DEB= SCENARIO=$(dirname "$(readlink -f "$0")")/scenario.sh
for a in $(cat /proc/cmdline); do
  case $a in vmtest.deb=*) DEB=${a#vmtest.deb=} ;; esac
done
[ -f "$DEB" ] || fail "no package (vmtest.deb=$DEB)"

# the host's own services and timers: not part of this test
for u in postgresql.service smbd.service nmbd.service samba-ad-dc.service nfs-server.service \
  rpcbind.service rpcbind.socket nfs-blkmap.service nfs-client.target e2scrub_reap.service \
  systemd-timesyncd.service systemd-pstore.service getty@tty1.service serial-getty@ttyS0.service \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer man-db.timer \
  nfs-idmapd.service rpc-statd.service rpc-gssd.service rpc-svcgssd.service slapd.service \
  console-getty.service systemd-tmpfiles-setup.service systemd-tmpfiles-clean.timer; do
  ln -sf /dev/null "/etc/systemd/system/$u"
done
rm -f /etc/request-key.d/*.conf   # nfs-common's and cifs-utils' rules: nsidmap answers alone here

echo "vm-init: dpkg -i $DEB"
# --no-triggers: man-db's index rebuild would read every man page over 9p for a minute
dpkg -i --no-triggers "$DEB" || fail "dpkg -i failed"
echo "vm-init: modules: $(findmnt -n -o SOURCE,TARGET /usr/lib/modules 2>&1 | tr '\n' ' ') $(ls /lib/modules 2>&1 | tr '\n' ' ')"

cat >/etc/systemd/system/nsidmap-vmtest.service <<UNIT
[Unit]
Description=nsidmap package test scenario
After=nsidmapd.service
Wants=nsidmapd.service
[Service]
Type=oneshot
ExecStart=/bin/bash $SCENARIO
StandardOutput=journal+console
StandardError=journal+console
UNIT
ln -sf /etc/systemd/system/nsidmap-vmtest.service /etc/systemd/system/multi-user.target.wants/nsidmap-vmtest.service
echo "vm-init: handing over to systemd at $(cut -d' ' -f1 /proc/uptime)s"
umount /sys /proc
exec /lib/systemd/systemd
