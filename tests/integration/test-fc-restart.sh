#!/usr/bin/env bash
# emberd killed with SIGKILL while Firecracker VMs run: the VMs keep
# running, the restarted emberd re-adopts them (same pids, still running,
# vsock still answering), notices an adopted process's exit, and stops
# them cleanly through the API socket it reuses (SendCtrlAltDel).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

fc_start_emberd
make_image mini
for n in a1 a2 a3; do
	ctl vm create "$n" --image mini --vsock >/dev/null || fail "vm create $n"
done
ctl vm pause a3 >/dev/null || fail "vm pause a3"
declare -A pid cid
for n in a1 a2 a3; do
	pid[$n]=$(pid_of "$n")
	cid[$n]=$(inspect "$n" | jq .vsock.guest_cid)
done

note "kill -9 emberd with VMs running"
crash_emberd
for n in a1 a2 a3; do
	gone "${pid[$n]}" && fail "$n's Firecracker (pid ${pid[$n]}) died with emberd"
done
pass "the VMs outlive emberd"
mark=$(log_mark)
fc_start_emberd
for n in a1 a2; do
	rec=$(inspect "$n")
	assert_jq "$rec" ".status == \"running\" and .pid == ${pid[$n]} and .vsock.guest_cid == ${cid[$n]}" \
		"$n re-adopted: running, same pid ${pid[$n]}, same CID"
	assert_vsock_answers "$n"
done
assert_jq "$(inspect a3)" ".status == \"paused\" and .pid == ${pid[a3]}" "a3 re-adopted as paused"
log_since "$mark" | grep 're-adopted' >/dev/null || fail "no re-adoption in the log"

note "the re-adopted VMs are still driven through their API sockets"
assert_jq "$(ctl --json vm resume a3)" '.status == "running"' "a3 resumes after the restart"
assert_jq "$(jq -c -s '.[-1]' "$(reqlog a3)")" '.path == "/vm" and .body == {state: "Resumed"} and .status == 204' \
	"PATCH /vm Resumed reached a3's Firecracker"
for n in a1 a3; do
	assert_jq "$(ctl --json vm stop "$n")" '.status == "stopped" and .pid == 0' "$n stops after the restart"
	gone "${pid[$n]}" || fail "$n's pid ${pid[$n]} still alive"
	assert_jq "$(jq -c -s '.[-1]' "$(reqlog "$n")")" \
		'. == {method: "PUT", path: "/actions", body: {action_type: "SendCtrlAltDel"}, status: 204}' \
		"$n stopped with SendCtrlAltDel"
	assert_sockets_gone "$n"
done

note "an adopted VM whose Firecracker dies is noticed"
kill_double -KILL "${pid[a2]}"
# emberd is not its parent any more, so the wait status cannot be known:
# API.md reports such an exit as stopped with a reason that says so.
not_running() { [[ $(status_of a2) == stopped || $(status_of a2) == failed ]]; }
wait_until 10 "a2's exit noticed" not_running
assert_jq "$(inspect a2)" '.pid == 0 and (.reason | test("exited"))' "a2's exit noticed, with a reason"
echo "  a2: $(inspect a2 | jq -c '[.status, .reason]')"
assert_sockets_gone a2
assert_jq "$(call_ok vsock.allocations)" ".allocations == {\"${cid[a1]}\":\"a1\",\"${cid[a2]}\":\"a2\",\"${cid[a3]}\":\"a3\"}" \
	"all three keep their CIDs"

note "a VM that stopped while emberd was down"
ctl vm start a1 >/dev/null || fail "vm start a1"
p=$(pid_of a1)
crash_emberd
kill_double -KILL "$p"
wait_until 10 "a1's pid $p gone" gone "$p"
fc_start_emberd
rec=$(inspect a1)
assert_jq "$rec" '(.status == "failed" or .status == "stopped") and .pid == 0 and (.reason | length > 0)' \
	"a1 is $(jqr "$rec" .status) after a restart without its process"
echo "  reason: $(jqr "$rec" .reason)"
assert_sockets_gone a1
assert_jq "$(ctl --json vm start a1)" '.status == "running"' "a1 starts again (stale sockets removed first)"
assert_vsock_answers a1

for n in a1 a2 a3; do ctl vm delete "$n" --force >/dev/null; done
assert_jq "$(call_ok vsock.allocations)" '.count == 0' "no CIDs left"
[[ -z $(procs_under "$STATE/vms/") ]] || fail "processes left: $(procs_under "$STATE/vms/")"
stop_emberd
echo "PASS: fc-restart"
