#!/usr/bin/env bash
# Build the VM's initramfs: busybox-static, initramfs-init as /init, and the modules it needs to
# reach the root (virtio PCI, 9p over virtio, overlayfs) from the unpacked Debian kernel, in the
# order modprobe gives (it reads the modules.dep that run.sh made with depmod).
#
#   initramfs.sh <kernel-root> <kernel-version> <out.cpio.gz>
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
kroot=$1 kv=$2 out=$3

busybox=$(command -v busybox || true)
# ldd fails on a static executable ("not a dynamic executable")
[ -n "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 \
  || { echo "initramfs.sh: needs a static busybox (Debian package busybox-static)" >&2; exit 1; }

w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w"/{bin,dev,proc,sys,modules}
cp "$busybox" "$w/bin/busybox"
install -m 0755 "$here/initramfs-init" "$w/init"

: > "$w/modules/order"
# `insmod <path>` lines, dependencies first; built-in modules print `builtin …` and are skipped
modprobe -d "$kroot" -S "$kv" --show-depends -a virtio_pci 9pnet_virtio 9p overlay | awk '$1 == "insmod" { print $2 }' |
while read -r f; do
  m=$(basename "$f"); m=${m%%.ko*}
  grep -qx "$m" "$w/modules/order" && continue
  case $f in
    *.ko) cp "$f" "$w/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" > "$w/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" > "$w/modules/$m.ko" ;;
    *) echo "initramfs.sh: unexpected module file $f" >&2; exit 1 ;;
  esac
  echo "$m" >> "$w/modules/order"
done
(cd "$w" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
mv -f "$out.tmp" "$out"
echo "initramfs: $(tr '\n' ' ' < "$w/modules/order")→ $out ($(du -k "$out" | cut -f1) KiB)"
