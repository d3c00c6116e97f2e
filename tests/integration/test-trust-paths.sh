#!/usr/bin/env bash
# Host paths a client names are opened with the client's rights, and images
# have owners. emberd runs as root with socket_group set to a group this
# test creates; uid 65534 (nobody) in that group is the unprivileged client.
#  - /etc/shadow as a VM's rootfs or kernel, or as an image's kernel, is
#    refused with EACCES, the error nobody's own open gets; so is a 0700
#    root directory as rootfs_dir; device nodes and FIFOs are refused;
#    a file under a directory nobody cannot search fails the same way
#    whether it exists or not. None of it leaves a VM directory, a CID, a
#    staging directory or an image behind.
#  - What nobody may read is copied into the VM's own directory; a
#    rootfs_dir is read by mkfs.ext4 as nobody (a root-only file inside
#    makes the import fail).
#  - The default_image name is root's; a user's image is invisible to other
#    users; root's images are shared but only root deletes them.
#  - image delete --force never breaks a VM: the VM keeps links to what it
#    boots from; a VM from a deleted image still boots, and so does a fork
#    of it after its parent is deleted too.
# Needs root (setpriv, groupadd) and QEMU (one TCG boot, two with the fork).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"

socket_group_setup embt debugfs

GID=$(getent group "$GROUP" | cut -d: -f3)

ensure_image
# nobody reaches the socket (not the 0700-by-default state directory) and
# the public files; $T itself can be passed through, not listed.
mkdir -m 0755 "$T/pub"
cp "$IMAGE_DIR/vmlinuz" "$T/pub/vmlinuz"
cp "$IMAGE_DIR/initrd.gz" "$T/pub/initrd.gz"
chmod 0644 "$T/pub/"*
mkdir -m 0700 "$T/rootonly"
echo secret >"$T/rootonly/present"
printf 'qemu:\n  accel: tcg\ndefaults:\n  backend: qemu\n  memory: 256M\ndefault_image: shared\nsocket_group: %s\n' \
    "$GROUP" >"$CONFIG"
start_emberd
assert_eq "$GROUP" "$(stat -c %G "$SOCK")" "the socket belongs to the test's group"

# as_user UID CMD...: CMD as UID (its own group), in the socket's group.
as_user() {
	local uid=$1
	shift
	setpriv --reuid="$uid" --regid="$uid" --groups="$GID" -- "$@"
}
# nreq METHOD PARAMS: one request as nobody; prints the reply.
nreq() {
	printf '{"jsonrpc":"2.0","id":1,"method":"%s","params":%s}\n' "$1" "$2" |
	    as_user 65534 timeout 60 socat -t 50 - "UNIX-CONNECT:$SOCK"
}
nctl() { as_user 65534 "$EMBERCTL" --socket "$SOCK" "$@"; }

# nothing_left WHAT: no VM directory, CID, staging directory or import (once
# the writer has removed what deletes moved to .trash-*).
nothing_left() {
	local entries
	wait_no_trash	# a delete's tree goes in the writer thread, after the answer
	entries=$(rfind "$STATE/vms" "$STATE/images" -mindepth 1 -maxdepth 1 \
	    \( -name '.*' -o -type d \) ! -name shared ! -name mine ! -name pubimg \
	    ! -name keep -print | wc -l)
	assert_eq 0 "$entries" "$1: nothing left under vms/ or images/"
	assert_jq "$(call_ok vsock.allocations)" '.count == 0' "$1: no CID held"
}

# The error nobody's own open of a path gets.
own_error() { as_user 65534 head -c 1 "$1" 2>&1 >/dev/null | sed 's/.*: //'; }
assert_eq "Permission denied" "$(own_error /etc/shadow)" "nobody's own open of /etc/shadow"

note "files nobody cannot read"
r=$(nreq vm.create '{"name":"steal","rootfs":"/etc/shadow","vsock":true,"start":false}')
assert_jq "$r" '.error.data.kind == "permission_denied"' "rootfs /etc/shadow is permission_denied"
assert_jq "$r" '.error.message == "rootfs /etc/shadow: Permission denied"' \
    "the message is nobody's own open error ($(jqr "$r" .error.message))"
r=$(nreq vm.create "{\"name\":\"steal\",\"kernel\":\"/etc/shadow\",\"initrd\":\"$T/pub/initrd.gz\",\"vsock\":true,\"start\":false}")
assert_jq "$r" '.error.message == "kernel /etc/shadow: Permission denied"' "kernel /etc/shadow is refused"
nothing_left "creates with /etc/shadow"
r=$(nreq image.import '{"name":"g","kernel":"/etc/shadow"}')
assert_jq "$r" '.error.message == "kernel /etc/shadow: Permission denied"' "image kernel /etc/shadow is refused"
r=$(nreq image.import "{\"name\":\"g\",\"kernel\":\"$T/pub/vmlinuz\",\"rootfs_dir\":\"$T/rootonly\"}")
assert_jq "$r" ".error.message == \"rootfs_dir $T/rootonly: Permission denied\"" \
    "a 0700 root directory as rootfs_dir is refused"
r=$(nreq image.import "{\"name\":\"g\",\"kernel\":\"$T/pub/vmlinuz\",\"rootfs\":\"$T/rootonly/present\"}")
assert_jq "$r" '.error.data.kind == "permission_denied"' "a file in a 0700 root directory is refused"
nothing_left "imports of root's files"

note "devices and FIFOs"
r=$(nreq vm.create '{"name":"dev","rootfs":"/dev/null","start":false}')
assert_jq "$r" '.error.data.kind == "invalid_spec" and (.error.message | contains("character device"))' \
    "a character device is refused ($(jqr "$r" .error.message))"
if [[ -b /dev/loop0 ]]; then
	r=$(nreq vm.create '{"name":"dev","rootfs":"/dev/loop0","start":false}')
	assert_jq "$r" '.error.data.kind != null and (.error.message | test("block device|Permission denied"))' \
	    "/dev/loop0 is refused ($(jqr "$r" .error.message))"
fi
mkfifo -m 0666 "$T/pub/fifo"
r=$(nreq vm.create "{\"name\":\"dev\",\"rootfs\":\"$T/pub/fifo\",\"start\":false}")
assert_jq "$r" '.error.message | contains("FIFO")' "a FIFO is refused without hanging"
nothing_left "device nodes"

note "existence under a closed directory is not revealed"
r1=$(nreq vm.create "{\"name\":\"probe\",\"kernel\":\"$T/rootonly/present\",\"start\":false}")
r2=$(nreq vm.create "{\"name\":\"probe\",\"kernel\":\"$T/rootonly/absent\",\"start\":false}")
assert_eq "$(jqr "$r1" .error.message | sed 's/present/X/')" \
    "$(jqr "$r2" .error.message | sed 's/absent/X/')" "present and absent files fail alike"
assert_jq "$r2" '.error.message | contains("Permission denied")' "both are Permission denied"

note "what nobody may read is copied into its VM's directory"
r=$(nreq vm.create "{\"name\":\"own\",\"kernel\":\"$T/pub/vmlinuz\",\"initrd\":\"$T/pub/initrd.gz\",\"vsock\":true,\"start\":false}")
assert_jq "$r" ".result.kernel_path == \"$STATE/vms/own/kernel\" and .result.owner_uid == 65534" \
    "nobody's VM boots from its own copy of the kernel"
cmp -s "$T/pub/vmlinuz" "$STATE/vms/own/kernel" || fail "the kernel copy differs"
cmp -s "$T/pub/initrd.gz" "$STATE/vms/own/initrd" || fail "the initrd copy differs"
[[ $(stat -c %i "$T/pub/vmlinuz") != $(stat -c %i "$STATE/vms/own/kernel") ]] ||
    fail "the kernel is the caller's own inode"
pass "kernel and initrd are copies in $STATE/vms/own"
nreq vm.delete '{"name":"own"}' >/dev/null

note "rootfs_dir is read as nobody"
mkdir -m 0755 "$T/tree" "$T/tree/etc"
echo hello-from-nobody >"$T/tree/etc/motd"
chown -R 65534:65534 "$T/tree"
r=$(nreq image.import "{\"name\":\"mine\",\"kernel\":\"$T/pub/vmlinuz\",\"rootfs_dir\":\"$T/tree\"}")
assert_jq "$r" '.result.owner_uid == 65534' "nobody imports an image from its own directory"
img=$STATE/images/mine/rootfs.ext4
assert_eq "0:0" "$(stat -c %u:%g "$img")" "the built root filesystem is root's file"
assert_eq "hello-from-nobody" "$(debugfs -R 'cat /etc/motd' "$img" 2>/dev/null)" \
    "the root filesystem holds the directory's files"
[[ ! -e $STATE/images/mine/rootfs.build ]] || fail "the caller's build file was left in the image"
mkdir -m 0700 "$T/tree/private"
echo root-only >"$T/tree/private/key"	# root's, inside nobody's tree
r=$(nreq image.import "{\"name\":\"mine2\",\"kernel\":\"$T/pub/vmlinuz\",\"rootfs_dir\":\"$T/tree\"}")
assert_jq "$r" '.error.data.kind != null and (.error.message | contains("Permission denied"))' \
    "a root-only directory inside the tree fails the build ($(jqr "$r" .error.message | head -c 120))"
nothing_left "a failed build"

note "image names and owners"
r=$(nreq image.import "{\"name\":\"shared\",\"kernel\":\"$T/pub/vmlinuz\"}")
assert_jq "$r" '.error.data.kind == "permission_denied" and (.error.message | contains("default_image"))' \
    "nobody cannot take the default_image name"
# root's default image has a root disk whose ember-rc lists it and writes
# "second" on the first boot, "third" on the next (as in test-qemu-disk).
mkdir -p "$T/sharedroot"
echo "placed by the test" >"$T/sharedroot/marker"
cat >"$T/sharedroot/ember-rc" <<'EOF'
#!/bin/sh
R=${EMBER_ROOT:-/mnt/root}
echo "ROOT-LS: $(ls "$R" | tr '\n' ' ')"
for f in second third; do
	if [ ! -e "$R/$f" ]; then
		echo "written at boot" >"$R/$f"
		echo "ROOT-WROTE: $f"
		break
	fi
done
sync
EOF
ctl image import shared --kernel "$IMAGE_DIR/vmlinuz" --initrd "$IMAGE_DIR/initrd.gz" \
    --boot-args "$BOOT_ARGS" --rootfs-dir "$T/sharedroot" --rootfs-size 64M >/dev/null ||
    fail "root imports shared"
ctl image import keep --kernel "$IMAGE_DIR/vmlinuz" >/dev/null || fail "root imports keep"
r=$(nreq image.import "{\"name\":\"keep\",\"kernel\":\"$T/pub/vmlinuz\"}")
assert_jq "$r" '.error.data.kind == "already_exists"' "nobody cannot shadow root's image"
r=$(nreq image.list null)
assert_jq "$r" '[.result.images[].name] == ["keep", "mine", "shared"]' "nobody lists root's images and its own"
r=$(printf '{"jsonrpc":"2.0","id":1,"method":"image.inspect","params":{"name":"mine"}}\n' |
    as_user 65533 timeout 20 socat -t 15 - "UNIX-CONNECT:$SOCK")
assert_jq "$r" '.error.data.kind == "not_found"' "another user does not see nobody's image"
r=$(printf '{"jsonrpc":"2.0","id":1,"method":"image.list"}\n' |
    as_user 65533 timeout 20 socat -t 15 - "UNIX-CONNECT:$SOCK")
assert_jq "$r" '[.result.images[].name] == ["keep", "shared"]' "another user lists root's images only"
r=$(nreq image.delete '{"name":"keep","force":true}')
assert_jq "$r" '.error.data.kind == "permission_denied"' "nobody cannot delete root's image"
[[ -f $STATE/images/keep/image.json ]] || fail "root's image was removed"

note "a user's image delete --force leaves its VM whole"
r=$(nreq vm.create '{"name":"fromimg","image":"mine","start":false}')
assert_jq "$r" ".result.kernel_path == \"$STATE/vms/fromimg/kernel\"" "the VM links the image's kernel"
nreq image.delete '{"name":"mine","force":true}' | jq -e .result >/dev/null ||
    fail "nobody deletes its image with force"
[[ ! -e $STATE/images/mine ]] || fail "the image is still there"
cmp -s "$T/pub/vmlinuz" "$STATE/vms/fromimg/kernel" || fail "the VM's kernel is gone or changed"
assert_eq "hello-from-nobody" "$(debugfs -R 'cat /etc/motd' "$STATE/vms/fromimg/rootfs.base" 2>/dev/null)" \
    "the VM's root filesystem base is intact"
nreq vm.delete '{"name":"fromimg"}' >/dev/null

note "root's VM boots after its image is deleted, and so does its fork after the parent goes"
ctl vm create boot --vsock --no-start >/dev/null || fail "vm create boot (default image)"
assert_eq shared "$(field boot .image)" "the VM uses the default image"
ctl image delete --force shared >/dev/null || fail "image delete --force shared"
[[ ! -e $STATE/images/shared ]] || fail "shared is still there"
start_booted boot
grep -q "ROOT-WROTE: second" "$(console_of boot)" || fail "boot did not write 'second' to its disk"
pass "the VM of a deleted image boots from its own links and writes its disk"
ctl vm stop boot >/dev/null || fail "vm stop boot"
ctl vm fork boot child --no-start >/dev/null || fail "vm fork boot child"
backing=$(qemu-img info -U --output=json "$STATE/vms/child/disk.qcow2" | jq -r '.["backing-filename"]')
assert_eq "$STATE/vms/child/rootfs.base" "$backing" "the fork's disk stands on its own base"
ctl vm delete boot >/dev/null || fail "vm delete boot"
start_booted child
c=$(console_of child)
grep -q "ROOT-LS: .*marker.*second" "$c" || fail "child does not see marker and second: $(grep ROOT- "$c")"
pass "the fork boots after its parent and the image are gone, with the parent's writes"
ctl vm delete --force child >/dev/null || fail "vm delete child"
nothing_left "the end"

note "a copy that completes into a failing create leaves nothing"
stop_emberd
printf 'cid_min: 3\ncid_max: 3\n' >>"$CONFIG"
start_emberd
ctl vm create hold --vsock --no-start >/dev/null || fail "vm create hold"
r=$(nreq vm.create "{\"name\":\"late\",\"kernel\":\"$T/pub/vmlinuz\",\"vsock\":true,\"start\":false}")
assert_jq "$r" '.error.data.kind == "cids_exhausted"' "with every CID taken the create fails after its copy"
ctl vm delete hold >/dev/null || fail "vm delete hold"
nothing_left "cids_exhausted after a copy"

stop_emberd
echo "PASS"
