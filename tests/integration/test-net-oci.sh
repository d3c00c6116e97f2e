#!/usr/bin/env bash
# An OCI image's workload with --network nat (issue 14, guest side): the
# workload, chrooted into the image's root, sees the guest's resolv.conf
# (emberd's DNS servers), bind-mounted over the image's own, and reaches
# the outside namespace through NAT; the VM's root disk still holds the
# image's resolv.conf afterwards (the guest never wrote it). Runs in network
# namespaces of its own (net-lib.sh). Skips like it_net-guest, and without
# umoci, skopeo, busybox-static or debugfs.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/net-lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/oci-lib.sh"
DEBUGFS=$(command -v debugfs || echo /sbin/debugfs)
[[ -x $DEBUGFS ]] || { echo "SKIP: debugfs not installed (e2fsprogs)"; exit 77; }

HTTP_PORT=8000
IMAGE_RESOLV='nameserver 203.0.113.99'
printf 'default_image: mini\nqemu:\n  accel: tcg\ndefaults:\n  backend: qemu\n  memory: 256M\nnetwork:\n  resolv_conf: %s\n' \
    "$T/resolv.conf" >"$CONFIG"
printf 'nameserver 198.51.100.53\n' >"$T/resolv.conf"

# An image with its own /etc/resolv.conf whose entrypoint prints the one
# it sees and fetches the outside page with busybox wget.
build_net_image() {
	local layout=$T/layout bundle=$T/bundle root
	umoci init --layout "$layout" && umoci new --image "$layout:net" &&
	    umoci unpack --rootless --image "$layout:net" "$bundle" >/dev/null || fail "umoci unpack"
	root=$bundle/rootfs
	mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
	chmod 1777 "$root/tmp"
	cp "$BUSYBOX" "$root/bin/busybox"
	for a in sh cat wget; do ln -s busybox "$root/bin/$a"; done
	echo "$IMAGE_RESOLV" >"$root/etc/resolv.conf"
	cat >"$root/entry.sh" <<EOF
#!/bin/sh
echo "resolv: \$(cat /etc/resolv.conf)"
wget -q -O /tmp/page http://$NET_OUTSIDE_ADDR:$HTTP_PORT/ && echo "page: \$(cat /tmp/page)"
EOF
	chmod 0755 "$root/entry.sh"
	umoci repack --image "$layout:net" "$bundle" >/dev/null || fail "umoci repack"
	umoci config --image "$layout:net" --config.entrypoint /entry.sh \
	    --config.env PATH=/bin || fail "umoci config"
	rm -rf "$bundle"
	ctl image import netimg --oci "oci:$layout:net" >/dev/null || fail "image import netimg"
	pass "OCI image with its own /etc/resolv.conf imported"
}

net_setup
net_http_server "$HTTP_PORT"
ensure_image
start_emberd
import_image mini
if ! out=$(ctl vm create probe --image mini --network nat --no-start 2>&1); then
	echo "SKIP: this emberd/emberctl has no working --network nat yet: $out"
	exit 77
fi
ctl vm delete probe >/dev/null || fail "vm delete probe"
build_net_image

# vm run prints the workload's output; one retry for a TCG boot that hangs.
for try in 1 2; do
	out=$(timeout 300 "$EMBERCTL" --socket "$SOCK" vm run w --image netimg --network nat 2>&1) && break
	[[ $try == 2 ]] && fail "vm run w: $out"
	echo "RETRY: vm run w: $(tail -n 1 <<<"$out")"
	ctl vm delete --force w >/dev/null 2>&1 || true
done
grep -qx 'resolv: nameserver 198.51.100.53' <<<"$out" ||
    fail "the workload does not see emberd's DNS servers: $out"
pass "the workload's /etc/resolv.conf lists emberd's DNS server"
grep -qx "page: $NET_PAGE" <<<"$out" || fail "the workload did not fetch the outside page: $out"
pass "the workload fetches the outside page through NAT"

disk=$(field w .disk_path)
[[ -f $disk ]] || fail "w has no disk at '$disk'"
# The disk may be a qcow2 overlay on the image: read the merged view.
qemu-img convert -O raw "$disk" "$T/disk.raw" || fail "qemu-img convert $disk"
on_disk=$("$DEBUGFS" -R 'cat /etc/resolv.conf' "$T/disk.raw" 2>/dev/null)
assert_eq "$IMAGE_RESOLV" "$on_disk" "the VM's disk still holds the image's own resolv.conf"
ctl vm delete --force w >/dev/null || fail "vm delete w"
stop_emberd
echo "PASS: OCI workload networking"
