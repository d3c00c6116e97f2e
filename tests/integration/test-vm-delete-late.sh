#!/usr/bin/env bash
# A forced delete of a running QEMU VM writes nothing into the VM's
# directory after moving it away: the writer's queue never holds a vm.json
# of the VM behind its directory's rename (daemon/vm.c vm_remove,
# daemon/durable.c). Rounds of: fork a stopped VM, start the fork, delete it
# with force while its guest is still booting (the agent not up yet), and
# also right after its start is answered; then emberd's log must hold no
# "cannot write" for any VM's vm.json, and no directory of a deleted VM
# may come back.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"

ROUNDS=${ROUNDS:-4}

ensure_image
start_emberd
import_image mini

ctl vm create base --image mini --vsock --no-start >/dev/null || fail "vm create base"
for ((i = 1; i <= ROUNDS; i++)); do
	ctl vm fork base "child$i" --no-start >/dev/null || fail "vm fork base child$i"
	ctl vm start "child$i" >/dev/null || fail "vm start child$i"
	pid=$(field "child$i" .pid)
	ctl vm delete --force "child$i" >/dev/null || fail "vm delete --force child$i"
	[[ ! -e $STATE/vms/child$i ]] || fail "vms/child$i is there after its delete was answered"
	wait_gone "$pid" 20
	# the same name again, at once: its new record must not meet the old one's
	ctl vm create "child$i" --image mini --vsock >/dev/null || fail "vm create child$i again"
	ctl vm delete --force "child$i" >/dev/null || fail "vm delete --force child$i (second)"
done
pass "$ROUNDS rounds of fork, start and forced delete"
wait_no_trash
ctl vm delete base >/dev/null || fail "vm delete base"
wait_no_trash
shopt -s nullglob
left=("$STATE"/vms/child*)
shopt -u nullglob
assert_eq 0 "${#left[@]}" "no deleted VM's directory came back (${left[*]:-})"
if grep -E "cannot write .*/vm\.json" "$LOG"; then
	fail "emberd wrote a deleted VM's vm.json after moving its directory away"
fi
pass "no vm.json write after its directory's move (no 'cannot write' in the log)"
stop_emberd
echo "PASS"
