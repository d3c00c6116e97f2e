#!/usr/bin/env bash
# Host-initiated vsock through emberd's vhost-user-vsock device, end to end
# under TCG: one ember-mini guest with ember-agent and ember.echo=5000.
#   - CONNECT 1024 answers OK <hostport> (>= 2^30), then the agent's pong;
#   - 1 MiB each way through the echo port, checked byte for byte;
#   - CONNECT to a port nobody listens on in the guest: the socket closes
#     with no OK, well before the 2 s request timeout;
#   - 32 connections at once, each echoing its own 256 KiB;
#   - a host reader that stops reading for 5 s while 1 MiB is echoed loses
#     nothing.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/vsock-lib.sh"

ensure_agent_image
BOOT_ARGS="$BOOT_ARGS ember.echo=5000"
start_emberd
import_image mini
create_booted v1 --image mini --vsock
S=$(vsock_of v1)
[[ -S $S ]] || fail "no vsock socket at $S"
cid=$(field v1 .vsock.guest_cid)
[[ $cid -ge 3 ]] || fail "v1 has no guest CID ($cid)"
pass "v1 runs with CID $cid and $S"

note "CONNECT 1024 + ping"
wait_agent v1
grep -qE 'conn 0: OK [0-9]+' <<<"$AGENT_REPLY" || fail "no OK line: $AGENT_REPLY"
port=$(sed -n 's/.*conn 0: OK \([0-9]*\).*/\1/p' <<<"$AGENT_REPLY")
((port >= 1073741824)) || fail "host port $port is below 2^30"
echo "$AGENT_REPLY"
pass "CONNECT 1024 answered OK $port, then the agent's pong"
# The same with socat, as a user would type it.
out=$(printf 'CONNECT 1024\n{"op":"ping"}\n' | timeout 20 socat -t 10 - "UNIX-CONNECT:$S") ||
    fail "socat CONNECT 1024: $out"
head -n 1 <<<"$out" | grep -qE '^OK [0-9]+$' || fail "socat: first line is not OK: $out"
sed -n 2p <<<"$out" | jq -e '.ok == true and .pong == true' >/dev/null || fail "socat: no pong: $out"
pass "socat: OK line then pong ($(head -n 1 <<<"$out"))"

note "1 MiB each way through ember.echo port 5000"
vclient connect "$S" 5000 --bytes 1048576 --timeout 120 || fail "1 MiB echo"
pass "1 MiB sent and echoed back, checksums equal"

note "a refused port closes the host socket with no OK"
t0=$(date +%s%N)
vclient connect "$S" 4444 --expect-refused --timeout 10 || fail "CONNECT 4444 was not refused"
ms=$((($(date +%s%N) - t0) / 1000000))
((ms < 1800)) || fail "the refusal took $ms ms, as long as the request timeout"
pass "CONNECT 4444 (no listener in the guest): closed without OK in $ms ms"
out=$(printf 'CONNECT 4444\n' | timeout 10 socat -t 5 - "UNIX-CONNECT:$S")
[[ -z $out ]] || fail "socat CONNECT 4444 got '$out'"
pass "socat CONNECT 4444 reads nothing and sees EOF"

note "32 connections at once"
vclient connect "$S" 5000 --conns 32 --bytes 262144 --timeout 150 || fail "32 parallel echoes"
pass "32 connections each echoed their own 256 KiB, all verified"

note "a host reader that stops reading for 5 s"
vclient connect "$S" 5000 --bytes 1048576 --pause-after 65536 --pause-ms 5000 --timeout 120 ||
    fail "echo with a 5 s reader pause"
grep -q 'stops reading for 5000 ms' "$T/vclient.out" || fail "the client never paused"
pass "1 MiB echoed across a 5 s reader pause, nothing lost"

note "the agent still answers, and the VM stops cleanly"
wait_agent v1 10
ctl vm stop v1 >/dev/null || fail "vm stop v1"
[[ -e $S ]] && fail "$S still exists after the VM stopped"
pass "vsock.sock removed at stop"
grep -q 'vsock v1: tx ring broken\|malformed' "$LOG" && fail "the device complained: $(grep 'vsock v1' "$LOG" | tail -5)"
stop_emberd
echo "PASS"
