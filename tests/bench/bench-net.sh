#!/usr/bin/env bash
# Networking figures under QEMU TCG (prints numbers, asserts nothing), in
# network namespaces of its own (tests/integration/net-lib.sh; no traffic
# leaves them):
#   1. TCP throughput guest -> outside and outside -> guest through the TAP
#      (network nat: NAT out, a published port in; guest -> outside also
#      from an httpd in the guest through a published port), next to QEMU user mode
#      (network user) in the same run. User mode's outside is 127.0.0.1 in
#      emberd's namespace (QEMU's slirp connects from there, as 10.0.2.2
#      in the guest); the qemu backend gives user mode no host forwarding,
#      so outside -> guest has no user-mode figure.
#   2. The time network setup adds to a VM start: vm start (the RPC, which
#      returns once the hypervisor runs) and vm start --wait (until the
#      agent answers) with --network nat against --network none: RUNS
#      plain starts each (interleaved), and the first WAIT_RUNS of them also
#      with --wait.
# TCG makes the guest the bottleneck: the throughput figures measure the
# emulated CPU as much as the path; compare them with each other. The
# guest sends with busybox nc, which writes in small chunks: 0.6-2.8 MiB/s
# both through the TAP and in user mode on a 2-core host (busier to
# quieter); busybox httpd's sendfile through the TAP and a published port
# gave 43 MiB/s guest -> outside, and outside -> guest (nc -e head in the
# guest) 3-12 MiB/s.
#
# Usage (as root, from a build directory's environment):
#   EMBERD=build/x/daemon/emberd EMBERCTL=build/x/client/emberctl \
#   EMBER_BUILD_DIR=build/x bash tests/bench/bench-net.sh [MIB] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/../integration" && pwd)
. "$here/qemu-lib.sh"
. "$here/net-lib.sh"
MIB=${1:-32}		# bytes per throughput run, in MiB
RUNS=${2:-10}		# starts per network mode
WAIT_RUNS=${WAIT_RUNS:-3}	# of which also timed to the agent (a TCG boot each)
BYTES=$((MIB * 1024 * 1024))
PY=$(command -v python3) || { echo "SKIP: python3 (the bench's TCP sink and source)"; exit 77; }
SINK_PORT=5001		# sinks outside (nat) and on emberd's loopback (user)
GUEST_PORT=5201		# the guest's sink; published on the same host port
HTTP_PORT=8080		# the guest's httpd (port 80), published

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# A one-connection TCP sink: reads BYTES bytes, prints "bytes seconds"
# timed from the first byte to the last.
cat >"$T/sink.py" <<'EOF'
import socket, sys, time
host, port, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(1)
s.settimeout(600)
c, _ = s.accept()
c.settimeout(600)
got, t0 = 0, None
while got < want:
    b = c.recv(1 << 20)
    if not b:
        break
    if t0 is None:
        t0 = time.monotonic()
    got += len(b)
print(got, time.monotonic() - (t0 or time.monotonic()), flush=True)
EOF
# A TCP source: connects, sends BYTES zero bytes, half-closes and waits for
# the receiver's "done"; prints "bytes seconds" from connect to "done".
cat >"$T/source.py" <<'EOF'
import socket, sys, time
host, port, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + 60
while True:
    try:
        c = socket.create_connection((host, port), timeout=10)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
c.settimeout(600)
t0 = time.monotonic()
chunk, sent = bytes(1 << 20), 0
while sent < want:
    sent += c.send(chunk[: min(len(chunk), want - sent)])
c.shutdown(socket.SHUT_WR)
reply = b""
while b"done" not in reply:
    b = c.recv(64)
    if not b:
        break
    reply += b
print(sent if b"done" in reply else 0, time.monotonic() - t0, flush=True)
EOF

# An HTTP GET of /blob that prints "body-bytes seconds", timed from the
# first byte of the reply to its end.
cat >"$T/fetch.py" <<'EOF'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
c = socket.create_connection((host, port), timeout=60)
c.settimeout(600)
c.sendall(b"GET /blob HTTP/1.0\r\nHost: guest\r\n\r\n")
data, t0 = bytearray(), None
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    if t0 is None:
        t0 = time.monotonic()
    data += b
head, _, body = bytes(data).partition(b"\r\n\r\n")
print(len(body), time.monotonic() - (t0 or time.monotonic()), flush=True)
EOF

# rate BYTES SECONDS: MiB/s and Mbit/s.
rate() {
	awk -v b="$1" -v s="$2" 'BEGIN { if (s <= 0 || b <= 0) { print "n/a"; exit }
	    printf "%7.1f MiB/s (%6.1f Mbit/s, %.2f s)", b / s / 1048576, b * 8 / s / 1e6, s }'
}

# guest_to NAME NS ADDR GUEST_ADDR: a sink in NS on ADDR, the guest sends.
guest_to() {
	local name=$1 ns=$2 addr=$3 gaddr=$4 out
	ip netns exec "$ns" "$PY" "$T/sink.py" "$addr" "$SINK_PORT" "$BYTES" >"$T/sink.out" &
	local sink=$!
	net_wait_listen "$ns" "$SINK_PORT" 10 || { echo "sink did not listen"; return 1; }
	if ! ctl vm exec "$name" --timeout 600 -- sh -c \
	    "dd if=/dev/zero bs=65536 count=$((BYTES / 65536)) 2>/dev/null | nc $gaddr $SINK_PORT" \
	    >"$T/send.out" 2>&1; then
		kill "$sink" 2>/dev/null || true
		wait "$sink" 2>/dev/null || true
		echo "the guest's sender failed: $(tail -n 1 "$T/send.out")"
		return 0
	fi
	wait "$sink" || true
	read -r got s <"$T/sink.out" || { echo "no figure"; return 0; }
	[[ $got == "$BYTES" ]] || { echo "incomplete ($got of $BYTES bytes)"; return 0; }
	rate "$got" "$s"
}

# from_guest_httpd NAME ADDR PORT: busybox httpd in the guest serves BYTES
# (sendfile from tmpfs, so the guest spends little CPU per byte); the
# outside namespace fetches them through the published PORT.
from_guest_httpd() {
	local name=$1 addr=$2 port=$3 got s
	ctl vm exec "$name" -- sh -c "mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/blob bs=65536 count=$((BYTES / 65536)) 2>/dev/null && httpd -p 80 -h /tmp/www" ||
	    { echo "cannot start the guest's httpd"; return 0; }
	read -r got s < <(in_outside "$PY" "$T/fetch.py" "$addr" "$port" 2>/dev/null) ||
	    { echo "no figure"; return 0; }
	[[ $got == "$BYTES" ]] || { echo "incomplete ($got of $BYTES bytes)"; return 0; }
	rate "$got" "$s"
}

# to_guest NAME ADDR PORT: the guest sinks BYTES and answers "done"; a
# source in the outside namespace sends to ADDR:PORT.
to_guest() {
	local name=$1 addr=$2 port=$3 got s
	ctl vm exec "$name" -- sh -c \
	    "setsid nc -l -p $GUEST_PORT -e sh -c 'head -c $BYTES >/dev/null; echo done' >/dev/null 2>&1 &" ||
	    { echo "cannot start the guest's sink"; return 0; }
	read -r got s < <(in_outside "$PY" "$T/source.py" "$addr" "$port" "$BYTES" 2>/dev/null) ||
	    { echo "no figure"; return 0; }
	[[ $got == "$BYTES" ]] || { echo "incomplete (no done from the guest)"; return 0; }
	rate "$got" "$s"
}

net_setup >/dev/null
ensure_image
start_emberd
import_image mini >/dev/null
if ! out=$(ctl vm create probe --image mini --network nat --no-start 2>&1); then
	echo "SKIP: this emberd/emberctl has no working --network nat: $out"
	exit 77
fi
ctl vm delete probe >/dev/null

echo "== throughput, $MIB MiB per run, TCG guest ($(nproc) host cores)"
ctl vm create tap --image mini --vsock --network nat --publish "$GUEST_PORT:$GUEST_PORT" \
    --publish "$HTTP_PORT:80" \
    --wait 300 >/dev/null || fail "vm create tap"
ctl vm create user --image mini --vsock --network user --wait 300 >/dev/null ||
    fail "vm create user"
# ember-mini has no DHCP client running and emberd passes no ember.net= in
# user mode: slirp's fixed addresses, by hand.
ctl vm exec user -- sh -c 'ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up &&
    ip route add default via 10.0.2.2' || fail "configuring eth0 in the user-mode VM"
printf '%-34s %s\n' "nat (TAP)  guest -> outside:" \
    "$(guest_to tap "$NS_OUTSIDE" "$NET_OUTSIDE_ADDR" "$NET_OUTSIDE_ADDR")"
printf '%-34s %s\n' "user mode  guest -> outside:" \
    "$(guest_to user "$NS_EMBERD" 127.0.0.1 10.0.2.2)"
printf '%-34s %s\n' "nat (TAP)  guest -> outside, httpd:" \
    "$(from_guest_httpd tap "$NET_EMBERD_ADDR" "$HTTP_PORT")"
printf '%-34s %s\n' "nat (TAP)  outside -> guest:" \
    "$(to_guest tap "$NET_EMBERD_ADDR" "$GUEST_PORT")"
printf '%-34s %s\n' "user mode  outside -> guest:" "not available (no host forwarding in the qemu backend's user mode)"
ctl vm delete --force tap >/dev/null
ctl vm delete --force user >/dev/null

echo "== network setup's share of vm start ($RUNS starts, $WAIT_RUNS with --wait, each mode; medians)"
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else printf "%.3f", v[int((NR + 1) / 2)] }'; }
for mode in none nat; do
	ctl vm create "s-$mode" --image mini --vsock --network "$mode" --no-start >/dev/null ||
	    fail "vm create s-$mode"
done
: >"$T/start-none" ; : >"$T/start-nat"; : >"$T/wait-none"; : >"$T/wait-nat"
for i in $(seq "$RUNS"); do
	for mode in none nat; do
		t0=$(now)
		ctl vm start "s-$mode" >/dev/null || fail "vm start s-$mode"
		t1=$(now)
		secs "$t0" "$t1" >>"$T/start-$mode"
		echo >>"$T/start-$mode"
		ctl vm stop --force "s-$mode" >/dev/null
		((i <= WAIT_RUNS)) || continue
		t0=$(now)
		if ctl vm start "s-$mode" --wait 300 >/dev/null; then
			secs "$t0" "$(now)" >>"$T/wait-$mode"
			echo >>"$T/wait-$mode"
		fi
		ctl vm stop --force "s-$mode" >/dev/null
	done
done
for mode in none nat; do
	printf 'network %-4s  vm start %s s   vm start --wait (agent up) %s s\n' "$mode" \
	    "$(median <"$T/start-$mode")" "$(median <"$T/wait-$mode")"
done
echo "(the difference of the vm start medians is the time network setup adds;"
echo " --wait adds a TCG boot, whose noise is larger than that difference)"
stop_emberd
