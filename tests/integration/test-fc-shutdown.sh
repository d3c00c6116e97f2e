#!/usr/bin/env bash
# emberd's SIGTERM while clients wait on VMs (Firecracker double, so no
# guest is needed): a `vm create --vsock --wait` on a VM paused meanwhile
# (issue 12's heap-use-after-free), `vm exec` and `vm cp` whose agent never
# answers, a start whose hypervisor is held before it serves its API, a
# stop whose guest ignores every request, and a delete sent with the
# signal. Each client gets an answer (an error saying emberd is shutting
# down), emberd exits 0 well inside its 30 s grace period, and under the
# ASan build nothing is reported; a new emberd finds the VMs as they were.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

GRACE_BOUND=20	# seconds; the daemon's own grace period is 30 s

# sigterm_and_check WHAT NAME...: SIGTERM emberd; each client started by
# bg NAME exits with a "shutting down" error; emberd exits 0 within
# GRACE_BOUND, with no sanitizer report in its log.
sigterm_and_check() {
	local what=$1 start=$SECONDS name
	shift
	kill -TERM "$EMBERD_PID"
	for name in "$@"; do
		wait_exit "${BG[$name]}" "$GRACE_BOUND"
		[[ $EXIT_STATUS -ne 0 ]] ||
			fail "$what: $name succeeded across the SIGTERM: $(cat "$T/out.$name")"
		grep -q "shutting down" "$T/out.$name" ||
			fail "$what: $name's answer does not say why: $(cat "$T/out.$name")"
	done
	wait_exit "$EMBERD_PID" "$GRACE_BOUND"
	[[ $EXIT_STATUS -eq 0 ]] || fail "$what: emberd exited $EXIT_STATUS after SIGTERM"
	! grep -q "Sanitizer" "$LOG" || fail "$what: sanitizer report: $(grep -A20 Sanitizer "$LOG" | head -40)"
	pass "$what: every client answered, emberd exited 0 in $((SECONDS - start)) s"
	EMBERD_PID=
}

# bg NAME CMD...: a client in the background, its output in $T/out.NAME.
declare -A BG
bg() {
	local name=$1
	shift
	"$@" >"$T/out.$name" 2>&1 &
	BG[$name]=$!
	_ember_pids+=("$!")
}

fc_start_emberd
make_image mini

note "SIGTERM with vm create --vsock --wait pending on a paused VM"
bg create "$EMBERCTL" --socket "$SOCK" vm create v1 --image mini --vsock --wait 600
wait_until 30 "v1 exists" test -f "$STATE/vms/v1/vm.json"
wait_status v1 running 30
ctl vm pause v1 >/dev/null || fail "vm pause v1"
sigterm_and_check "create --wait" create

note "SIGTERM with vm exec and vm cp waiting on an agent that never answers"
fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024
ctl vm resume v1 >/dev/null || fail "vm resume v1"
timeout 60 "$EMBERCTL" --socket "$SOCK" vm create x --image mini --vsock --wait 30 >/dev/null ||
	fail "vm create x --wait"
# Put a listener that accepts CONNECT and then holds every request in the
# place of x's vsock socket (emberd dials it for each request).
rm -f "$STATE/vms/x/vsock.sock"
socat -d -d "UNIX-LISTEN:$STATE/vms/x/vsock.sock,fork" \
	SYSTEM:"read l; echo 'OK 1'; echo held >>$T/held; exec cat >/dev/null" 2>"$T/socat.log" &
_ember_pids+=($!)
wait_until 10 "the holding listener" test -S "$STATE/vms/x/vsock.sock"
bg exec "$EMBERCTL" --socket "$SOCK" vm exec x --timeout 600 -- sleep 600
bg cp "$EMBERCTL" --socket "$SOCK" vm cp x:/etc/hostname "$T/hostname.out"
deadline=$((SECONDS + 30))
until [[ $(wc -l <"$T/held" 2>/dev/null || echo 0) -ge 2 ]]; do
	((SECONDS < deadline)) || fail "exec and cp did not both reach the agent socket: exec: $(cat "$T/out.exec") cp: $(cat "$T/out.cp") listener: $(tail -n 12 "$T/socat.log")"
	sleep 0.02	# poll interval, not synchronisation
done
sigterm_and_check "exec and cp" exec cp

note "SIGTERM with a stop pending (the guest ignores SendCtrlAltDel and SIGTERM)"
fc_start_emberd FC_DOUBLE_CTRLALTDEL_DELAY_MS=never FC_DOUBLE_IGNORE_SIGTERM=1
call_ok vm.create '{"name":"s","image":"mini","start":true}' >/dev/null
s_pid=$(pid_of s)
bg stop "$EMBERCTL" --socket "$SOCK" vm stop s --timeout 600
wait_status s stopping 10
sigterm_and_check "stop" stop
! gone "$s_pid" || fail "s's hypervisor (pid $s_pid) went with emberd"
pass "s's hypervisor outlives emberd"

note "SIGTERM with a start pending (its hypervisor's API accepts and never answers)"
# While $T/hold exists the "hypervisor" is a listener on its API socket
# that takes every request and answers none (the backend waits 5 s).
hold=$T/fc-hold
cat >"$hold" <<EOS
#!/bin/sh
[ -e $T/hold ] || exec $FC_DOUBLE "\$@"
exec socat "UNIX-LISTEN:\$2,fork" SYSTEM:"echo held >>$T/held-api; exec cat >/dev/null"
EOS
chmod +x "$hold"
printf 'firecracker:\n  binary: %s\n  require_kvm: false\n' "$hold" >"$CONFIG"
fc_start_emberd
call_ok vm.create '{"name":"h","image":"mini","start":false}' >/dev/null
touch "$T/hold"
bg start "$EMBERCTL" --socket "$SOCK" vm start h
wait_until 10 "h's start reaches its API ($(cat "$T/out.start"))" test -s "$T/held-api"
assert_eq starting "$(status_of h)" "h is starting while its API holds the request"
sigterm_and_check "start" start
rm -f "$T/hold"

note "SIGTERM together with a vm delete --force"
fc_start_emberd
call_ok vm.create '{"name":"d","image":"mini","start":true}' >/dev/null
wait_status d running 10
"$EMBERCTL" --socket "$SOCK" vm delete d --force >"$T/delete.out" 2>&1 &
del_pid=$!
_ember_pids+=("$del_pid")
kill -TERM "$EMBERD_PID"
wait_exit "$del_pid" "$GRACE_BOUND"
[[ -s $T/delete.out || $EXIT_STATUS -eq 0 ]] || fail "delete: no answer (status $EXIT_STATUS)"
wait_exit "$EMBERD_PID" "$GRACE_BOUND"
[[ $EXIT_STATUS -eq 0 ]] || fail "delete: emberd exited $EXIT_STATUS after SIGTERM"
! grep -q "Sanitizer" "$LOG" || fail "delete: sanitizer report: $(grep -A20 Sanitizer "$LOG" | head -40)"
pass "delete with SIGTERM: answered, emberd exited 0"

note "a new emberd finds the VMs as they were left"
printf 'firecracker:\n  binary: %s\n  require_kvm: false\n' "$FC_DOUBLE" >"$CONFIG"
fc_start_emberd
assert_eq running "$(status_of s)" "s (stopping when emberd went) is adopted as running"
assert_eq "$s_pid" "$(pid_of s)" "with the same pid"
ctl vm stop s --force >/dev/null || fail "vm stop s --force after the restart"
assert_eq stopped "$(status_of s)" "s stops under the new emberd"
inspect v1 >/dev/null
ctl vm delete v1 --force >/dev/null || fail "vm delete v1 --force after the restart"
stop_emberd
! grep -q "Sanitizer" "$LOG" || fail "sanitizer report: $(grep -A20 Sanitizer "$LOG" | head -40)"
pass "the restarted emberd stops and deletes them, and exits cleanly"
