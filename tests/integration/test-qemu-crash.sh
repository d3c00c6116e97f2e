#!/usr/bin/env bash
# A QEMU that dies while starting, after hanging up on QMP (as real QEMU does
# on a host whose KVM cannot run it): the create fails with QEMU's reason,
# leaves nothing behind, and emberd keeps serving. Before the fix, emberd
# reported the failure while its watch on the process was still armed, and
# the exit then wrote to the freed VM (caught by the ASan build).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CRASHER=$EMBER_BUILD_DIR/tests/fakes/qemu-crasher
[[ -x $CRASHER ]] || fail "no $CRASHER"
command -v qemu-img >/dev/null || { echo "SKIP: qemu-img not installed"; exit 77; }
printf 'qemu:\n  binary: %s\n  accel: tcg\n' "$CRASHER" >"$T/emberd.yaml"
EMBERD_EXTRA=(--config "$T/emberd.yaml")
printf 'not a kernel' >"$T/vmlinuz"
start_emberd

for mode in hangup exit; do
	note "QEMU that fails while starting ($mode)"
	reply=$(rpc "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vm.create\",\"params\":{\"name\":\"c-$mode\",\"kernel\":\"$T/vmlinuz\",\"vsock\":true}}")
	assert_jq "$reply" '.error.data.kind == "backend_error"' "create fails with backend_error"
	assert_jq "$reply" '.error.message | test("qemu-crasher: failing as asked")' \
	    "the error carries QEMU's own last words"
	assert_jq "$(call_ok vm.list)" '.vms | length == 0' "the failed create left no VM"
	assert_jq "$(call_ok vsock.allocations)" '.count == 0' "nor a CID"
	[[ ! -e $STATE/vms/c-$mode ]] || fail "the VM directory is left"
	pass "nothing left after a $mode"
done

# A VM created first and started later fails, and stays, with the reason.
call_ok vm.create "{\"name\":\"later\",\"kernel\":\"$T/vmlinuz\",\"start\":false}" >/dev/null
reply=$(rpc '{"jsonrpc":"2.0","id":2,"method":"vm.start","params":{"name":"later"}}')
assert_jq "$reply" '.error.data.kind == "backend_error"' "start fails"
assert_jq "$(call_ok vm.inspect '{"name":"later"}')" '.status == "failed" and .pid == 0' \
    "the VM is failed with no pid"
assert_jq "$(call_ok daemon.info)" '.vms == 1' "emberd still serves"
pass "a QEMU dying while starting is reported and cleaned up"
