#!/usr/bin/env bash
# Firecracker backend against fc-double when things go wrong: a guest that
# ignores CtrlAltDel and SIGTERM (stop escalates to SIGKILL in bounded time,
# --force kills at once), a Firecracker killed from outside or crashing by
# itself (failed with a reason, noticed without any API call, CID kept),
# and an API call that Firecracker refuses (backend_error with its
# fault_message, the create rolled back without leftovers). Each scenario
# runs its own emberd, since the double's knobs come from emberd's environment.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

# restart_with ENV=VAL...: a fresh emberd on the same state, with that environment.
restart_with() {
	[[ -n $EMBERD_PID ]] && stop_emberd
	fc_start_emberd "$@"
}

note "a guest that ignores CtrlAltDel and SIGTERM"
fc_start_emberd FC_DOUBLE_CTRLALTDEL_DELAY_MS=never FC_DOUBLE_IGNORE_SIGTERM=1
make_image mini
ctl vm create stubborn --image mini --vsock >/dev/null || fail "vm create stubborn"
pid=$(pid_of stubborn)
mark=$(log_mark)
t0=$SECONDS
assert_jq "$(ctl --json vm stop stubborn --timeout 1)" '.status == "stopped" and .pid == 0' "stop --timeout 1 ends stopped"
took=$((SECONDS - t0))
# 1 s for CtrlAltDel, then the backend's SIGTERM grace, then SIGKILL.
((took <= 8)) || fail "escalation took $took s"
pass "escalated to SIGKILL in $took s"
gone "$pid" || fail "pid $pid alive after the stop"
grep -q 'ignoring SIGTERM' "$(vmdir stubborn)/console.log" || fail "the double never got SIGTERM: $(cat "$(vmdir stubborn)/console.log")"
log_since "$mark" | grep 'killing it' >/dev/null || fail "emberd did not log the SIGKILL"
assert_jq "$(jq -c -s 'map(.body.action_type // empty)' "$(reqlog stubborn)")" '. == ["InstanceStart", "SendCtrlAltDel"]' \
	"CtrlAltDel was tried first"
assert_sockets_gone stubborn
assert_no_process_for stubborn
pass "ignored stop: CtrlAltDel, SIGTERM, SIGKILL; sockets removed"

note "--force kills at once, even a stubborn guest"
ctl vm start stubborn >/dev/null || fail "vm start stubborn"
pid=$(pid_of stubborn)
t0=$SECONDS
assert_jq "$(ctl --json vm stop stubborn --force)" '.status == "stopped"' "stop --force answers stopped"
((SECONDS - t0 < 3)) || fail "forced stop took $((SECONDS - t0)) s"
gone "$pid" || fail "pid $pid alive after stop --force"
assert_sockets_gone stubborn
pass "forced stop immediate"

note "Firecracker killed from outside"
ctl vm start stubborn >/dev/null || fail "vm start stubborn"
cid=$(inspect stubborn | jq .vsock.guest_cid)
pid=$(pid_of stubborn)
gone "$pid" && fail "stubborn's Firecracker (pid $pid) is not running"
kill_double -KILL "$pid"
# Poll the record on disk, not the API: the exit must be noticed on its own.
failed_on_disk() { [[ $(jq -r .status "$(vmdir "$1")/vm.json" 2>/dev/null) == failed ]]; }
wait_until 10 "stubborn's vm.json says failed" failed_on_disk stubborn
rec=$(inspect stubborn)
assert_jq "$rec" '.status == "failed" and .pid == 0 and (.reason | test("signal|killed|9"))' "failed, reason names the signal"
echo "  reason: $(jqr "$rec" .reason)"
assert_jq "$(call_ok vsock.allocations)" ".allocations[\"$cid\"] == \"stubborn\"" "the failed VM keeps CID $cid"
assert_sockets_gone stubborn
pass "killed from outside: failed with a reason, CID held"
assert_jq "$(ctl --json vm start stubborn)" ".status == \"running\" and .vsock.guest_cid == $cid" "a failed VM starts again"
ctl vm delete stubborn --force >/dev/null

note "Firecracker that crashes by itself after InstanceStart"
restart_with FC_DOUBLE_EXIT_AFTER_START_MS=300
cid=$(ctl --json vm create crashy --image mini --vsock | jq .vsock.guest_cid) || fail "vm create crashy"
wait_until 10 "crashy's vm.json says failed" failed_on_disk crashy
rec=$(inspect crashy)
assert_jq "$rec" '.status == "failed" and .pid == 0 and (.reason | test("status 1"))' "failed with the exit status"
echo "  reason: $(jqr "$rec" .reason)"
assert_jq "$(call_ok vsock.allocations)" ".allocations == {\"$cid\": \"crashy\"}" "crashy keeps its CID $cid"
assert_sockets_gone crashy
ctl vm delete crashy >/dev/null

note "Firecracker refuses a request: backend_error and a full rollback"
restart_with FC_DOUBLE_FAIL_PATH=/boot-source
r=$(call vm.create '{"name":"bad","image":"mini","vsock":true}')
assert_jq "$r" '.error.code == -32009 and .error.data.kind == "backend_error"' "create answers backend_error"
assert_jq "$r" '.error.message | test("fc-double: injected failure")' "the error carries Firecracker's fault_message"
echo "  error: $(jq -c .error <<<"$r")"
assert_jq "$(call vm.inspect '{"name":"bad"}')" '.error.data.kind == "not_found"' "no VM record"
assert_jq "$(call_ok vsock.allocations)" '.count == 0' "no CID held"
[[ ! -e $(vmdir bad) ]] || fail "directory left: $(ls -la "$(vmdir bad)")"
assert_no_process_for bad
assert_jq "$(call_ok daemon.info)" '.vms == 0 and .cids_in_use == 0' "daemon.info: no VMs, no CIDs"
pass "rolled back: no record, CID, directory or process"
# The same name works once Firecracker accepts the body.
restart_with
assert_jq "$(ctl --json vm create bad --image mini --vsock)" '.status == "running"' "the name is free again"
ctl vm delete bad --force >/dev/null

note "InstanceStart refused without machine-config is not what we send"
restart_with FC_DOUBLE_REQUIRE_MACHINE_CONFIG=1
assert_jq "$(ctl --json vm create mc --image mini)" '.status == "running"' "machine-config is sent before InstanceStart"
ctl vm delete mc --force >/dev/null

stop_emberd
echo "PASS: fc-failures"
