#!/usr/bin/env bash
# The event loop's thread makes no directory and syncs nothing: strace
# attached to every thread of emberd while VMs are created (one by one, in
# a batch, one with its own root disk) and deleted finds each VM directory
# made by another thread (the group-commit writer, durable_make_dir) and
# no fsync, fdatasync, syncfs or VM directory mkdir on the loop's thread
# (tid = pid). (The QEMU backend still makes its overlay's private temp
# directory inside the VM's directory on the loop: one mkdir per VM with a
# root disk.)
# A VM of a batch is still listed at once: a vm.inspect after its create in
# the same batch answers it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

head -c $((4 << 20)) /dev/zero >"$T/rootfs"
start_emberd

strace_emberd "$T/strace.out" -e trace=mkdir,mkdirat,fsync,fdatasync,syncfs

for i in 1 2 3; do
	call_ok vm.create "{\"name\":\"one$i\",\"vsock\":true,\"start\":false}" >/dev/null
done
batch=$(jq -nc '[range(20) | {jsonrpc: "2.0", id: ., method: "vm.create",
    params: {name: "b\(.)", vsock: true, start: false}}] +
    [{jsonrpc: "2.0", id: 100, method: "vm.inspect", params: {name: "b0"}}]')
r=$(rpc "$batch")
assert_jq "$r" '[.[] | select(.result.status == "created")] | length == 21' \
	"a batch of 20 creates and an inspect of the first: all answered with the VM"
call_ok vm.create "{\"name\":\"disk1\",\"rootfs\":\"$T/rootfs\",\"start\":false}" >/dev/null
[[ -d $STATE/vms/disk1 ]] || fail "no directory for disk1"
for n in one1 one2 one3 disk1 $(seq -f 'b%g' 0 19); do
	call_ok vm.delete "{\"name\":\"$n\"}" >/dev/null
done
wait_no_trash
kill "$STRACE_PID"
wait "$STRACE_PID" 2>/dev/null || true

made=$(grep -c 'mkdir("[^"]*/vms/[a-z0-9]*", ' "$T/strace.out" || true)
((made >= 24)) || fail "strace saw $made VM directories made, expected 24: $(head -c 600 "$T/strace.out")"
on_loop=$(awk -v pid="$EMBERD_PID" '$1 == pid && $2 !~ /^---/' "$T/strace.out" | grep -v 'mkdir("[^"]*/vms/[^/"]*/\.disk-' || true)
[[ -z $on_loop ]] || fail "the loop's thread made directories or synced: $(head -c 600 <<<"$on_loop")"
pass "$made VM directories made and every sync done off the loop's thread (none on tid $EMBERD_PID)"
stop_emberd
