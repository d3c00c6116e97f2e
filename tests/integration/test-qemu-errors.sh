#!/usr/bin/env bash
# QEMU backend failures leave nothing behind: a missing QEMU binary gives
# backend_unavailable with no VM directory and no CID; a missing kernel file
# (given directly, or an image's that was removed) is a clear invalid_spec;
# 0 MiB of memory is refused. Also the image verbs' argument handling. No
# guest boots here, so this test is quick.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"

ensure_image

# assert_no_leftovers WHAT: no VM directory, no CID, nothing listed.
assert_no_leftovers() {
	local entries allocs list
	entries=$(rfind "$STATE/vms" -mindepth 1 -maxdepth 1 | wc -l)
	assert_eq 0 "$entries" "$1: nothing under vms/"
	allocs=$(ctl --json vsock allocations) || fail "vsock allocations"
	assert_jq "$allocs" '.count == 0' "$1: no CID held"
	list=$(ctl --json vm list) || fail "vm list"
	assert_jq "$list" '.vms == []' "$1: no VM listed"
}

note "missing QEMU"
printf 'qemu:\n  accel: tcg\n  binary: /nonexistent/qemu\ndefaults:\n  backend: qemu\n' >"$CONFIG"
start_emberd
info=$(ctl --json daemon info) || fail "daemon info"
assert_jq "$info" '.backends[] | select(.name == "qemu") | .available == false and (.reason | contains("/nonexistent/qemu"))' \
    "daemon.info says QEMU is unavailable and why"
import_image mini
r=$(call vm.create "{\"name\":\"nq\",\"image\":\"mini\",\"vsock\":true}")
assert_jq "$r" '.error.code == -32008 and .error.data.kind == "backend_unavailable"' \
    "vm.create without QEMU is backend_unavailable"
assert_jq "$r" '.error.message | contains("/nonexistent/qemu")' "the error names the missing binary"
assert_no_leftovers "create without QEMU"
out=$(ctl vm create nq --image mini --vsock 2>&1) && fail "emberctl vm create without QEMU succeeded"
pass "emberctl vm create without QEMU fails: $(head -n 1 <<<"$out")"
assert_no_leftovers "emberctl create without QEMU"
stop_emberd

note "missing kernel, 0 MiB"
printf 'qemu:\n  accel: tcg\ndefaults:\n  backend: qemu\n' >"$CONFIG"
start_emberd
r=$(call vm.create "{\"name\":\"nk\",\"kernel\":\"$T/no-such-vmlinuz\",\"vsock\":true}")
assert_jq "$r" '.error.data.kind == "invalid_spec"' "a missing kernel file is invalid_spec"
assert_jq "$r" ".error.message | contains(\"$T/no-such-vmlinuz\")" "the error names the missing file"
assert_no_leftovers "create with a missing kernel"

# An image whose kernel disappeared from the store.
cp "$IMAGE_DIR/vmlinuz" "$T/vmlinuz"
ctl image import gone --kernel "$T/vmlinuz" >/dev/null || fail "image import gone"
rm "$STATE/images/gone/vmlinuz"
out=$(ctl vm create ng --image gone --vsock 2>&1) && fail "create with an image's missing kernel succeeded"
grep -q "$STATE/images/gone/vmlinuz" <<<"$out" || fail "the error does not name the kernel: $out"
pass "an image's missing kernel is reported: $(head -n 1 <<<"$out")"
assert_no_leftovers "create with an image's missing kernel"

r=$(call vm.create "{\"name\":\"z\",\"image\":\"mini\",\"memory_mib\":0,\"vsock\":true}")
assert_jq "$r" '.error.code == -32602 and (.error.data.reason | contains("memory_mib"))' \
    "memory_mib 0 is refused as an invalid param"
out=$(ctl vm create z --image mini --memory 0M --vsock 2>&1) && fail "vm create --memory 0M succeeded"
grep -q memory <<<"$out" || fail "the --memory 0M error does not mention memory: $out"
pass "emberctl vm create --memory 0M fails: $(head -n 1 <<<"$out")"
assert_no_leftovers "create with 0 MiB"

note "image verbs"
(cd "$IMAGE_DIR" && ctl image import rel --kernel vmlinuz --initrd initrd.gz >/dev/null) ||
    fail "image import with relative paths"
assert_jq "$(ctl --json image inspect rel)" '.initrd | endswith("/images/rel/initrd")' \
    "relative --kernel/--initrd are resolved by emberctl"
out=$(cd "$T" && ctl image import rel2 --kernel nope 2>&1) && fail "import of a missing kernel succeeded"
grep -qF "$T/nope" <<<"$out" || fail "a missing relative kernel is not reported with its absolute path: $out"
pass "a missing kernel is named by its absolute path: $out"
[[ -e $STATE/images/rel2 ]] && fail "a failed import left $STATE/images/rel2"
ctl image import x >/dev/null 2>&1
assert_eq 2 $? "image import without --kernel is a usage error"
ctl image import x --kernel k --rootfs a --rootfs-dir b >/dev/null 2>&1
assert_eq 2 $? "--rootfs with --rootfs-dir is a usage error"
ctl image import x --kernel k --rootfs-dir b --rootfs-size 12 >/dev/null 2>&1
assert_eq 2 $? "--rootfs-size without a unit is a usage error"
ctl image import mini --kernel "$IMAGE_DIR/vmlinuz" >/dev/null 2>&1
assert_eq 1 $? "importing an existing name fails"
ctl image delete nosuch >/dev/null 2>&1
assert_eq 1 $? "deleting a missing image fails"

note "image in use"
ctl vm create u1 --image mini --no-start >/dev/null || fail "vm create u1 --no-start"
r=$(call image.delete '{"name":"mini"}')
assert_jq "$r" '.error.data.kind == "invalid_state" and (.error.message | contains("u1"))' \
    "image.delete of an image a VM uses is invalid_state, naming the VM"
[[ -f $STATE/images/mini/image.json ]] || fail "the refused delete removed files"
ctl image delete --force mini >/dev/null || fail "image delete --force mini"
[[ -e $STATE/images/mini ]] && fail "image delete --force left $STATE/images/mini"
pass "image delete --force deletes an image in use"
ctl vm delete u1 >/dev/null || fail "vm delete u1"

stop_emberd
echo "PASS"
