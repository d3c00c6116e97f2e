#!/usr/bin/env bash
# Several QEMU VMs under TCG: three boot at once, each with its own CID,
# vsock and QMP sockets, console and process; then emberd is killed with
# kill -9 while two run, and a new emberd on the same state directory
# re-adopts both (running, same pids, processes untouched) and can still
# stop them.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"

ensure_image
start_emberd
import_image mini

note "three VMs boot at once"
for v in m1 m2 m3; do
	ctl vm create "$v" --image mini --vsock >/dev/null || fail "vm create $v"
done
for v in m1 m2 m3; do
	await_booted "$v" 0
done
list=$(ctl --json vm list) || fail "vm list"
assert_jq "$list" '[.vms[] | select(.status == "running")] | length == 3' "all three are running"
assert_jq "$list" '[.vms[].vsock.guest_cid] | unique | length == 3' "three distinct CIDs"
assert_jq "$list" '[.vms[].pid] | unique | length == 3 and all(. > 0)' "three distinct processes"
assert_jq "$list" '[.vms[].vsock.uds_path] | unique | length == 3' "three distinct vsock paths"
allocs=$(ctl --json vsock allocations) || fail "vsock allocations"
for v in m1 m2 m3; do
	cid=$(field "$v" .vsock.guest_cid)
	assert_jq "$allocs" ".allocations[\"$cid\"] == \"$v\"" "CID $cid is allocated to $v"
	[[ -S $STATE/vms/$v/qmp.sock ]] || fail "$v has no QMP socket"
	[[ $(grep -c "$READY" "$(console_of "$v")") == 1 ]] ||
	    fail "$v's console does not hold exactly its own boot"
	grep -q "starting $v ---" "$(console_of "$v")" || fail "$v's console is not its own"
	pid=$(field "$v" .pid)
	# QEMU gets its console as an fd emberd opened (path=/dev/fd/N).
	confd=$(tr '\0' '\n' <"/proc/$pid/cmdline" | grep -oE 'path=/dev/fd/[0-9]+' | head -n 1)
	[[ -n $confd ]] || fail "$v's QEMU (pid $pid) has no console fd on its command line"
	[[ $(readlink "/proc/$pid/fd/${confd##*/}") == "$STATE/vms/$v/console.log" ]] ||
	    fail "$v's QEMU (pid $pid) does not write $v's console"
done
pass "each VM has its own QMP socket, console and process"
ctl vm delete --force m3 >/dev/null || fail "vm delete --force m3"

note "emberd kill -9 with two VMs running; a new emberd re-adopts them"
p1=$(field m1 .pid)
p2=$(field m2 .pid)
crash_emberd
kill -0 "$p1" && kill -0 "$p2" || fail "a QEMU died with emberd"
pass "both QEMU processes outlive emberd"
start_emberd
for v in m1 m2; do
	assert_eq running "$(field "$v" .status)" "$v is running after the restart"
done
assert_eq "$p1" "$(field m1 .pid)" "m1 keeps pid $p1"
assert_eq "$p2" "$(field m2 .pid)" "m2 keeps pid $p2"
grep -q "vm m1: re-adopted (pid $p1)" "$LOG" && grep -q "vm m2: re-adopted (pid $p2)" "$LOG" ||
    fail "emberd did not log the re-adoptions"
pass "emberd logged both re-adoptions"
ctl vm pause m2 >/dev/null || fail "vm pause m2 after the restart (QMP reconnected?)"
assert_eq paused "$(field m2 .status)" "m2 pauses through the reconnected QMP"
ctl vm resume m2 >/dev/null || fail "vm resume m2"
for v in m1 m2; do
	pid=$(field "$v" .pid)
	ctl vm stop "$v" >/dev/null || fail "vm stop $v after the restart"
	assert_eq stopped "$(field "$v" .status)" "$v stops after the restart"
	wait_gone "$pid"
	pass "$v's QEMU (pid $pid) is gone"
done
start_booted m1
ctl vm stop m1 >/dev/null || fail "vm stop m1"
pass "a re-adopted VM boots again after its stop"

stop_emberd
echo "PASS"
