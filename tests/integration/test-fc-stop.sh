#!/usr/bin/env bash
# vm.stop's timing and paths against the Firecracker double (issue 12):
#  - a graceful stop of a paused VM resumes it first (a paused guest cannot
#    act on SendCtrlAltDel; the double holds the key press until a resume),
#    so it ends as soon as the guest shuts down, not after the timeout;
#  - a stop through the agent whose guest never powers off takes the one
#    timeout_s in all (then a kill), not the agent's timeout plus the
#    backend's plus its SIGTERM grace;
#  - a stop sent while a start is in flight is refused and the start
#    still completes (its answer is not lost).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

# elapsed_stop NAME TIMEOUT: vm.stop NAME, prints the seconds it took.
elapsed_stop() {
	local t0 t1
	t0=$(date +%s%N)
	ctl --timeout 120 --json vm stop "$1" --timeout "$2" >"$T/stop.out" || fail "vm stop $1: $(cat "$T/stop.out")"
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}

fc_start_emberd
make_image mini

note "a paused VM is resumed, then shut down gracefully"
call_ok vm.create '{"name":"p","image":"mini","start":true}' >/dev/null
call_ok vm.pause '{"name":"p"}' >/dev/null
assert_eq paused "$(status_of p)" "p is paused"
ms=$(elapsed_stop p 30)
assert_jq "$(cat "$T/stop.out")" '.status == "stopped"' "p stopped"
((ms < 10000)) || fail "stopping paused p took $ms ms (of its 30 s timeout: it was not resumed first)"
pass "stopping paused p took $ms ms"
order=$(jq -r 'select(.path == "/vm" or .path == "/actions") | (.body.state // .body.action_type)' \
	<"$(reqlog p)" 2>/dev/null | tr '\n' ' ')
[[ $order == *"Paused Resumed SendCtrlAltDel"* ]] ||
	fail "expected PATCH /vm Paused, Resumed, then SendCtrlAltDel; the double saw: $order"
pass "the double saw: $order"

note "stop through an agent whose guest never powers off: one timeout in all"
stop_emberd
fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024 FC_DOUBLE_CTRLALTDEL_DELAY_MS=never FC_DOUBLE_IGNORE_SIGTERM=1
timeout 60 "$EMBERCTL" --socket "$SOCK" vm create a --image mini --vsock --wait 30 >/dev/null ||
	fail "vm create a --wait"
mark=$(log_mark)
ms=$(elapsed_stop a 4)
assert_jq "$(cat "$T/stop.out")" '.status == "stopped"' "a stopped (killed)"
log_since "$mark" | grep -q "vm a: asked its agent to power off" || fail "the agent was not asked"
# Before: 4 s for the agent, 4 s for SendCtrlAltDel, 3 s after SIGTERM.
((ms >= 3500)) || fail "the graceful part was cut short: $ms ms of 4 s"
((ms < 8000)) || fail "stop with timeout_s 4 took $ms ms"
pass "stop with timeout_s 4 took $ms ms"

note "a stop during a start is refused; the start is answered"
# While $T/hold exists the "hypervisor" answers no API request (the
# backend waits 5 s, then fails the start).
stop_emberd
hold=$T/fc-hold
cat >"$hold" <<EOS
#!/bin/sh
[ -e $T/hold ] || exec $FC_DOUBLE "\$@"
exec socat "UNIX-LISTEN:\$2,fork" SYSTEM:"echo held >>$T/held-api; exec cat >/dev/null"
EOS
chmod +x "$hold"
printf 'firecracker:\n  binary: %s\n  require_kvm: false\n' "$hold" >"$CONFIG"
fc_start_emberd
call_ok vm.create '{"name":"s","image":"mini","start":false}' >/dev/null
touch "$T/hold"
call vm.start '{"name":"s"}' >"$T/start.out" &
start_pid=$!
_ember_pids+=("$start_pid")
wait_until 10 "s's start reaches its API" test -s "$T/held-api"
r=$(call vm.stop '{"name":"s","force":true}')
assert_jq "$r" '.error.data.kind == "busy" or .error.data.kind == "invalid_state"' \
	"a forced stop during the start is refused"
wait_exit "$start_pid" 30
assert_jq "$(cat "$T/start.out")" 'has("error") and (.error.message | test("machine-config|API"))' \
	"the start is answered with its own failure"
assert_eq failed "$(status_of s)" "s failed to start"
rm -f "$T/hold"
stop_emberd
