#!/usr/bin/env bash
# vsock connections across VM lifecycle events, under TCG, with a guest
# running ember-agent and ember.echo=5000:
#   - QMP stop/cont (vm pause/resume) with a connection open: data sent
#     while the VM is paused is echoed after the resume, the connection
#     goes on working, and new connections work;
#   - vm stop with connections open (mid-stream, idle): emberd closes every
#     host socket, and holds exactly as many fds as before the VM started.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/vsock-lib.sh"

ensure_agent_image
BOOT_ARGS="$BOOT_ARGS ember.echo=5000"
start_emberd
import_image mini
ctl vm create v1 --image mini --vsock --no-start >/dev/null || fail "vm create v1 --no-start"
fds_before=$(emberd_fds)
note "emberd holds $fds_before fds before v1 starts"
start_booted v1
S=$(vsock_of v1)
wait_agent v1

note "pause/resume with a connection open"
mkfifo "$T/ctl"
"$VSOCK_CLIENT" connect "$S" 5000 --bytes 262144 --rounds 3 --wait-stdin --timeout 120 \
    <"$T/ctl" >"$T/pause.out" 2>&1 &
cpid=$!
exec 7>"$T/ctl"
wait_file_line "$T/pause.out" 'round 1 ok' 60 || fail "round 1 before the pause: $(cat "$T/pause.out")"
pass "round 1 echoed before the pause"
ctl vm pause v1 >/dev/null || fail "vm pause v1"
assert_eq paused "$(field v1 .status)" "v1 is paused"
echo go >&7	# round 2 is sent while the guest is stopped
sleep 2	# test action: keep the VM paused with data in flight
grep -q 'round 2 ok' "$T/pause.out" && fail "round 2 was echoed by a paused VM: $(cat "$T/pause.out")"
kill -0 "$cpid" 2>/dev/null || fail "the client exited during the pause: $(cat "$T/pause.out")"
pass "nothing is echoed while the VM is paused, the connection stays open"
ctl vm resume v1 >/dev/null || fail "vm resume v1"
assert_eq running "$(field v1 .status)" "v1 runs again"
wait_file_line "$T/pause.out" 'round 2 ok' 60 || fail "round 2 after resume: $(cat "$T/pause.out")"
pass "the data sent during the pause was echoed after the resume"
echo go >&7
exec 7>&-
wait_exit "$cpid" 60
[[ $EXIT_STATUS == 0 ]] || fail "the client failed: $(cat "$T/pause.out")"
grep -q 'round 3 ok' "$T/pause.out" || fail "no round 3: $(cat "$T/pause.out")"
cat "$T/pause.out"
pass "the connection kept working after the resume (round 3)"
wait_agent v1 10
pass "a new connection after the resume answers a ping"

note "vm stop with connections open frees everything"
# Four held connections (idle after an echo round) plus one mid-stream.
"$VSOCK_CLIENT" connect "$S" 5000 --conns 4 --bytes 65536 --hold --timeout 120 \
    >"$T/hold.out" 2>&1 &
hpid=$!
wait_file_line "$T/hold.out" 'holding 4 connection' 60 || fail "held connections: $(cat "$T/hold.out")"
"$VSOCK_CLIENT" connect "$S" 5000 --bytes $((1024 * 1024 * 1024)) --timeout 120 \
    >"$T/stream.out" 2>&1 &
spid=$!
wait_file_line "$T/stream.out" 'accepted' 30 || fail "streaming connection: $(cat "$T/stream.out")"
printf 'CONNECT 1024\n' | timeout 60 socat -t 50 - "UNIX-CONNECT:$S" >"$T/idle.out" 2>&1 &
sopid=$!
wait_file_line "$T/idle.out" '^OK ' 30 || fail "idle socat connection: $(cat "$T/idle.out")"
fds_open=$(emberd_fds)
note "emberd holds $fds_open fds with v1 running and 6 connections open"
ctl vm stop v1 >/dev/null || fail "vm stop v1"
assert_eq stopped "$(field v1 .status)" "v1 stopped"
wait_exit "$hpid" 30
[[ $EXIT_STATUS == 0 ]] || fail "held connections were not all closed: $(cat "$T/hold.out")"
grep -q 'all 4 connection(s) closed by emberd' "$T/hold.out" || fail "$(cat "$T/hold.out")"
pass "the 4 held connections were closed by emberd"
wait_exit "$spid" 30
grep -qE 'FAIL: conn 0: (EOF|Connection reset|.*Broken pipe)' "$T/stream.out" ||
    fail "the streaming connection did not end with EOF or a reset: $(cat "$T/stream.out")"
pass "the streaming connection ended ($(grep FAIL "$T/stream.out" | sed 's/vsock-client: FAIL: //'))"
wait_exit "$sopid" 30
pass "the idle socat connection ended"
fds_after=$(emberd_fds)
[[ $fds_after == "$fds_before" ]] || {
	ls -l "/proc/$EMBERD_PID/fd" >&2
	fail "emberd holds $fds_after fds after v1 stopped, $fds_before before it started"
}
pass "emberd holds $fds_after fds after the stop, as before the start ($fds_open while running)"
[[ -e $S ]] && fail "$S still exists"

note "a second start serves vsock again"
start_booted v1
wait_agent v1
vclient connect "$S" 5000 --bytes 1048576 --timeout 120 || fail "echo after a restart"
ctl vm stop v1 >/dev/null || fail "vm stop v1"
fds_after=$(emberd_fds)
assert_eq "$fds_before" "$fds_after" "fd count after a second start and stop"
stop_emberd
echo "PASS"
