#!/usr/bin/env bash
# Root disks under TCG: an image imported with --rootfs-dir from a directory
# holding a marker file boots with it as /dev/vda (emberd adds root=/dev/vda);
# its ember-rc lists the disk on the console, then writes the next file. The
# parent writes "second"; a fork of the stopped parent sees marker and second
# and writes "third" to its own disk; the parent booted again does not see
# the child's "third". Also: image delete of an image in use is refused,
# --force deletes it, and the image verbs' output.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"

ensure_image
start_emberd

mkdir -p "$T/rootdir"
echo "placed by the test" >"$T/rootdir/marker"
cat >"$T/rootdir/ember-rc" <<'EOF'
#!/bin/sh
# Lists the root disk, then adds the next file of second, third, fourth.
R=${EMBER_ROOT:-/mnt/root}
echo "ROOT-LS: $(ls "$R" | tr '\n' ' ')"
for f in second third fourth; do
	if [ ! -e "$R/$f" ]; then
		echo "written at boot" >"$R/$f"
		echo "ROOT-WROTE: $f"
		break
	fi
done
sync
EOF
# A relative --rootfs-dir: emberctl must resolve it against its own cwd.
(cd "$T" && ctl image import disk --kernel "$IMAGE_DIR/vmlinuz" --initrd "$IMAGE_DIR/initrd.gz" \
    --boot-args "$BOOT_ARGS" --rootfs-dir rootdir --rootfs-size 64M >/dev/null) ||
    fail "image import disk --rootfs-dir rootdir (relative)"
pass "image disk imported from a relative --rootfs-dir"
img=$(ctl --json image inspect disk) || fail "image inspect disk"
assert_jq "$img" ".rootfs == \"$STATE/images/disk/rootfs.ext4\"" "the image has an ext4 rootfs in the store"
assert_jq "$img" ".kernel == \"$STATE/images/disk/vmlinuz\"" "the kernel was copied into the store"
sz=$(stat -c %s "$STATE/images/disk/rootfs.ext4")
assert_eq $((64 * 1024 * 1024)) "$sz" "--rootfs-size 64M sizes the root filesystem"
list=$(ctl image list) || fail "image list"
grep -qE '^NAME +KERNEL +INITRD +ROOTFS$' <<<"$list" || fail "image list header: $list"
grep -qE '^disk +vmlinuz +initrd +rootfs.ext4$' <<<"$list" || fail "image list row: $list"
pass "image list shows NAME KERNEL INITRD ROOTFS"

note "parent boots from the image's disk and writes 'second'"
create_booted parent --image disk
rec=$(ctl --json vm inspect parent)
assert_jq "$rec" ".disk_path == \"$STATE/vms/parent/disk.qcow2\"" "parent's disk is its own overlay"
tr '\0' ' ' <"/proc/$(jqr "$rec" .pid)/cmdline" | grep -q -- "-append .*root=/dev/vda" ||
    fail "QEMU's command line has no root=/dev/vda"
pass "root=/dev/vda was added to the kernel command line"
c=$(console_of parent)
grep -q "ROOT-LS: .*marker" "$c" || fail "parent does not see the marker: $(grep ROOT- "$c")"
grep -q "ROOT-LS: .*second" "$c" && fail "parent saw 'second' before writing it"
grep -q "ROOT-WROTE: second" "$c" || fail "parent did not write 'second': $(grep ROOT- "$c")"
pass "parent sees the marker and writes 'second'"
ctl vm stop parent >/dev/null || fail "vm stop parent"
assert_eq stopped "$(field parent .status)" "parent is stopped"

note "image delete while a VM uses it"
out=$(ctl image delete disk 2>&1) && fail "image delete of an image in use succeeded: $out"
r=$(call image.delete '{"name":"disk"}')
assert_jq "$r" '.error.code == -32003 and .error.data.kind == "invalid_state"' \
    "image.delete of an image in use is invalid_state"
grep -q 'parent' <<<"$out" || fail "the refusal does not name the VM: $out"
pass "emberctl image delete is refused, naming the VM ($out)"

note "fork: the child sees marker and second, and writes third"
ctl vm fork parent child >/dev/null || fail "vm fork parent child"
await_booted child 0
assert_jq "$(ctl --json vm inspect child)" '.parent_vm == "parent"' "child records its parent"
c=$(console_of child)
grep -q "ROOT-LS: .*marker.*second" "$c" || fail "child does not see marker and second: $(grep ROOT- "$c")"
grep -q "ROOT-WROTE: third" "$c" || fail "child did not write 'third': $(grep ROOT- "$c")"
pass "child sees marker and second, writes third"
ctl vm stop child >/dev/null || fail "vm stop child"

note "the parent's disk is unchanged by the child"
start_booted parent
seen=$(console_since parent "$BOOT_OFFSET" | grep "ROOT-LS:")
[[ -n $seen ]] || fail "parent printed no listing on its second boot"
grep -q "second" <<<"$seen" || fail "parent lost its own 'second': $seen"
grep -q "third" <<<"$seen" && fail "parent sees the child's 'third': $seen"
pass "parent sees its 'second' but not the child's 'third' ($seen)"
ctl vm stop parent >/dev/null || fail "vm stop parent"

note "image delete --force"
ctl image delete --force disk >/dev/null || fail "image delete --force disk"
[[ -e $STATE/images/disk ]] && fail "$STATE/images/disk still exists"
out=$(ctl image inspect disk 2>&1) && fail "image inspect after delete succeeded: $out"
grep -q 'not found' <<<"$out" || fail "image inspect after delete: $out"
pass "image delete --force removed the image"
ctl vm delete parent >/dev/null && ctl vm delete child >/dev/null || fail "vm delete"
stop_emberd
echo "PASS"
