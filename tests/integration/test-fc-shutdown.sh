#!/usr/bin/env bash
# emberd's SIGTERM while clients wait on VMs that cannot finish (Firecracker
# double, so no guest is needed), all at once: a `vm create --vsock --wait`
# on a VM paused meanwhile (issue 12's heap-use-after-free at exit), `vm
# exec` and `vm cp` whose agent never answers, a stop whose guest ignores
# every request, a start whose hypervisor never answers its API, and a
# delete sent with the signal. After the 30 s grace period every client
# has an answer (those still waiting: an error saying emberd is shutting
# down), emberd exits 0, and under the ASan build nothing is reported; a
# new emberd finds the VMs as they were left.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

GRACE=30	# the daemon's grace period
BOUND=$((GRACE + 20))

# The hypervisor, per VM (argv: --api-sock PATH --id NAME): h's answers no
# API request while $T/hold exists (the backend waits 5 s, then fails the
# start); v1's guest has no agent; s's guest ignores SendCtrlAltDel and
# SIGTERM; the others run a scripted agent (FC_DOUBLE_AGENT_PORTS).
hv=$T/fc-per-vm
cat >"$hv" <<EOF
#!/bin/sh
[ "\$4" = h ] && [ -e $T/hold ] &&
	exec socat "UNIX-LISTEN:\$2,fork" SYSTEM:"echo held >>$T/held-api; exec cat >/dev/null"
case "\$4" in
v1) unset FC_DOUBLE_AGENT_PORTS ;;
s) export FC_DOUBLE_CTRLALTDEL_DELAY_MS=never FC_DOUBLE_IGNORE_SIGTERM=1 ;;
esac
exec $FC_DOUBLE "\$@"
EOF
chmod +x "$hv"
printf 'firecracker:\n  binary: %s\n  require_kvm: false\n' "$hv" >"$CONFIG"

# answered_with_error NAME [PATTERN]: client NAME exited non-zero, its
# output matching PATTERN (default: emberd is shutting down).
answered_with_error() {
	wait_exit "${BG[$1]}" "$BOUND"
	[[ $EXIT_STATUS -ne 0 ]] || fail "$1 succeeded across the SIGTERM: $(cat "$T/out.$1")"
	grep -Eq "${2:-shutting down}" "$T/out.$1" || fail "$1's answer: $(cat "$T/out.$1")"
	pass "$1 answered: $(head -c 200 "$T/out.$1" | tr '\n' ' ')"
}

fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024
make_image mini

note "clients left waiting on five VMs"
bg create "$EMBERCTL" --socket "$SOCK" vm create v1 --image mini --vsock --wait 600
wait_until 30 "v1 exists" test -f "$STATE/vms/v1/vm.json"
wait_status v1 running 30
ctl vm pause v1 >/dev/null || fail "vm pause v1"

timeout 60 "$EMBERCTL" --socket "$SOCK" vm create x --image mini --vsock --wait 30 >/dev/null ||
	fail "vm create x --wait"
# A listener that accepts CONNECT and holds every request replaces x's
# vsock socket (emberd dials it for each request).
rm -f "$STATE/vms/x/vsock.sock"
socat "UNIX-LISTEN:$STATE/vms/x/vsock.sock,fork" \
	SYSTEM:"read l; echo 'OK 1'; echo held >>$T/held; exec cat >/dev/null" &
_ember_pids+=($!)
wait_until 10 "the holding listener" test -S "$STATE/vms/x/vsock.sock"
bg exec "$EMBERCTL" --socket "$SOCK" vm exec x --timeout 600 -- sleep 600
bg cp "$EMBERCTL" --socket "$SOCK" vm cp x:/etc/hostname "$T/hostname.out"
deadline=$((SECONDS + 30))
until [[ $(wc -l <"$T/held" 2>/dev/null || echo 0) -ge 2 ]]; do
	((SECONDS < deadline)) || fail "exec and cp did not both reach the agent socket: exec: $(cat "$T/out.exec") cp: $(cat "$T/out.cp")"
	sleep 0.02	# poll interval, not synchronisation
done

call_ok vm.create '{"name":"s","image":"mini","start":true}' >/dev/null
s_pid=$(pid_of s)
bg stop "$EMBERCTL" --socket "$SOCK" vm stop s --timeout 600
wait_status s stopping 10

call_ok vm.create '{"name":"d","image":"mini","start":true}' >/dev/null
call_ok vm.create '{"name":"h","image":"mini","start":false}' >/dev/null

note "SIGTERM"
touch "$T/hold"
bg start "$EMBERCTL" --socket "$SOCK" vm start h
wait_until 10 "h's start reaches its API" test -s "$T/held-api"
t0=$SECONDS
kill -TERM "$EMBERD_PID"
bg delete "$EMBERCTL" --socket "$SOCK" vm delete d --force

answered_with_error start "machine-config|API|shutting down"
answered_with_error create
answered_with_error exec
answered_with_error cp
answered_with_error stop
wait_exit "${BG[delete]}" "$BOUND"
[[ -s $T/out.delete || $EXIT_STATUS -eq 0 ]] || fail "delete: no answer (status $EXIT_STATUS)"
pass "delete answered (status $EXIT_STATUS)"
wait_exit "$EMBERD_PID" "$BOUND"
[[ $EXIT_STATUS -eq 0 ]] || fail "emberd exited $EXIT_STATUS after SIGTERM"
! grep -q "Sanitizer" "$LOG" || fail "sanitizer report: $(grep -A20 Sanitizer "$LOG" | head -40)"
pass "emberd exited 0, $((SECONDS - t0)) s after the SIGTERM"
EMBERD_PID=
! gone "$s_pid" || fail "s's hypervisor (pid $s_pid) went with emberd"
pass "s's hypervisor outlives emberd"
rm -f "$T/hold"

note "a new emberd finds the VMs as they were left"
fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024
assert_eq paused "$(status_of v1)" "v1 is adopted paused"
assert_eq running "$(status_of s)" "s (stopping when emberd went) is adopted as running"
assert_eq "$s_pid" "$(pid_of s)" "with the same pid"
ctl vm stop s --force >/dev/null || fail "vm stop s --force after the restart"
assert_eq stopped "$(status_of s)" "s stops under the new emberd"
for vm in v1 x h; do
	ctl vm delete "$vm" --force >/dev/null || fail "vm delete $vm --force after the restart"
done
stop_emberd
! grep -q "Sanitizer" "$LOG" || fail "sanitizer report: $(grep -A20 Sanitizer "$LOG" | head -40)"
pass "the restarted emberd stops and deletes them, and exits cleanly"
