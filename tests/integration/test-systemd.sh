#!/usr/bin/env bash
# emberd under a service manager, without one running: (1) a test
# NOTIFY_SOCKET (socat receiving datagrams) sees READY=1 with STATUS= once the
# control socket answers, RELOADING=1 then READY=1 around SIGHUP and
# STOPPING=1 at SIGTERM, in that order; (2) under systemd-socket-activate
# emberd serves requests on the inherited socket, says so, and leaves the
# socket file in place when it exits; (3) WATCHDOG_USEC brings WATCHDOG=1
# pings, and WATCHDOG_PID naming another process brings none.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v perl >/dev/null || { echo "SKIP: perl not installed"; exit 77; }

NOTIFY=$T/notify.sock
DGRAMS=$T/notify.raw
socat_pid=

# A datagram listener. socat -v writes a header line before every datagram
# it reads; messages() turns that stream back into one line per datagram,
# the datagram's own newlines shown as '|'.
start_listener() {
	rm -f "$NOTIFY" "$DGRAMS"
	socat -u -v "UNIX-RECV:$NOTIFY" OPEN:/dev/null 2>"$DGRAMS" &
	socat_pid=$!
	_ember_pids+=("$socat_pid")
	local deadline=$((SECONDS + 5))
	until [[ -S $NOTIFY ]]; do
		((SECONDS < deadline)) || fail "socat did not create $NOTIFY"
		sleep 0.02
	done
}
stop_listener() {
	kill "$socat_pid" 2>/dev/null || true
	wait "$socat_pid" 2>/dev/null || true
}
messages() {
	perl -0777 -ne '
		my @m = split /> \d{4}\/\d\d\/\d\d [\d:.]+ +length=\d+ from=\d+ to=\d+\n/;
		shift @m;
		for (@m) { s/\n/|/g; print "$_\n"; }' "$DGRAMS"
}
# wait_message REGEX [SECONDS]: until a datagram matches.
wait_message() {
	local deadline=$((SECONDS + ${2:-10}))
	until messages | grep -Eq "$1"; do
		((SECONDS < deadline)) || { messages | sed 's/^/  datagram: /' >&2
			fail "no datagram matching /$1/ within ${2:-10} s"; }
		sleep 0.02
	done
}

note "1. notifications to NOTIFY_SOCKET"
start_listener
export NOTIFY_SOCKET=$NOTIFY
spawn_emberd --state-dir "$STATE" --socket "$SOCK"
EMBERD_PID=$SPAWNED_PID
unset NOTIFY_SOCKET
wait_message '^READY=1'
# READY=1 promises the socket is listening and state is loaded: the very
# first request after it must be answered.
r=$(call daemon.info) || fail "daemon.info right after READY=1: no reply"
assert_eq "$EMBERD_PID" "$(jqr "$r" .result.pid)" "control socket answers once READY=1 arrived"
messages | grep -Eq '^STATUS=0 VMs running, 0 CIDs in use$' ||
	fail "no STATUS= summary: $(messages | tr '\n' ' ')"
pass "STATUS= summary sent"
create web true >/dev/null
kill -HUP "$EMBERD_PID"
wait_message '^RELOADING=1'
wait_message '^STATUS=0 VMs running, 1 CID in use$'
kill -TERM "$EMBERD_PID"
wait_exit "$EMBERD_PID"
[[ $EXIT_STATUS -eq 0 ]] || fail "emberd exited $EXIT_STATUS after SIGTERM"
stop_listener
seq=$(messages | grep -Eo '^(READY|RELOADING|STOPPING)=1' | tr '\n' ' ')
assert_eq "READY=1 RELOADING=1 READY=1 STOPPING=1 " "$seq" "notifications in order"
messages | grep -Eq '^RELOADING=1\|MONOTONIC_USEC=[0-9]+' ||
	fail "RELOADING=1 without MONOTONIC_USEC: $(messages | grep RELOADING)"
pass "RELOADING=1 carries MONOTONIC_USEC="
! grep -q 'cannot notify' "$LOG" || fail "emberd could not send a notification"

note "1b. abstract-namespace NOTIFY_SOCKET"
abs="@ember-test-$$-$RANDOM"
socat -u -v "ABSTRACT-RECV:${abs#@}" OPEN:/dev/null 2>"$DGRAMS" &
socat_pid=$!
_ember_pids+=("$socat_pid")
deadline=$((SECONDS + 5))
until grep -q "@${abs#@}\$" /proc/net/unix; do	# bound yet?
	((SECONDS < deadline)) || fail "socat did not bind $abs"
	sleep 0.02
done
NOTIFY_SOCKET=$abs spawn_emberd --state-dir "$STATE" --socket "$SOCK"
EMBERD_PID=$SPAWNED_PID
wait_message '^READY=1'
pass "READY=1 reaches an abstract-namespace socket"
stop_emberd
stop_listener

if command -v systemd-socket-activate >/dev/null; then
	note "2. socket activation"
	ASOCK=$T/activated.sock
	echo "=== systemd-socket-activate emberd" >>"$LOG"
	systemd-socket-activate -l "$ASOCK" "$EMBERD" --state-dir "$STATE" \
	    --socket "$T/unused.sock" 2>>"$LOG" &
	EMBERD_PID=$!	# systemd-socket-activate execs emberd in place
	_ember_pids+=("$EMBERD_PID")
	deadline=$((SECONDS + 10))
	until [[ -S $ASOCK ]]; do
		((SECONDS < deadline)) || fail "systemd-socket-activate did not create $ASOCK"
		sleep 0.02
	done
	# The first connection starts emberd; it must answer on that socket.
	r=$(rpc_to "$ASOCK" '{"jsonrpc":"2.0","id":1,"method":"vm.list"}') ||
		fail "vm.list through the activated socket: no reply"
	assert_jq "$r" '.result.vms | map(.name) == ["web"]' "vm.list through the activated socket"
	r=$(rpc_to "$ASOCK" '{"jsonrpc":"2.0","id":2,"method":"daemon.info"}')
	assert_eq "$ASOCK" "$(jqr "$r" .result.socket)" "daemon.info reports the inherited socket"
	assert_eq "$EMBERD_PID" "$(jqr "$r" .result.pid)" "emberd runs as the activated pid"
	grep -q 'using the control socket inherited from the service manager' "$LOG" ||
		fail "emberd did not log that it used the inherited socket"
	pass "emberd logs the inherited socket"
	[[ ! -e $T/unused.sock ]] || fail "emberd bound --socket although it was socket-activated"
	pass "--socket not bound when activated"
	stop_emberd
	[[ -S $ASOCK ]] || fail "emberd removed the socket it inherited"
	pass "the inherited socket file stays after exit"
else
	echo "SKIP (part 2): systemd-socket-activate not installed (Debian package systemd)"
fi

note "3. watchdog"
start_listener
NOTIFY_SOCKET=$NOTIFY WATCHDOG_USEC=200000 spawn_emberd --state-dir "$STATE" --socket "$SOCK"
EMBERD_PID=$SPAWNED_PID
wait_message '^WATCHDOG=1' 5
pass "WATCHDOG=1 sent when WATCHDOG_USEC is set"
stop_emberd
stop_listener

start_listener
NOTIFY_SOCKET=$NOTIFY WATCHDOG_USEC=100000 WATCHDOG_PID=1 \
    spawn_emberd --state-dir "$STATE" --socket "$SOCK"
EMBERD_PID=$SPAWNED_PID
wait_message '^READY=1'
sleep 0.5	# five watchdog periods: enough for a ping that should not come
! messages | grep -q '^WATCHDOG=1' || fail "WATCHDOG=1 sent although WATCHDOG_PID is another process"
pass "no WATCHDOG=1 when WATCHDOG_PID names another process"
stop_emberd
stop_listener

echo "all systemd integration checks passed"
