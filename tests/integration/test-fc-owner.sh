#!/usr/bin/env bash
# A Firecracker VM of a socket_group user runs its Firecracker (the double)
# as that user, so what Firecracker reaches by path (a guest's connection to
# vsock.sock_<port>, the files and TAP it opens) it reaches with the owner's
# rights only. uid 65534 (A) creates and starts an FC VM; uid 65533 (B) is
# another user:
#   - the double runs as uid/gid 65534 with no_new_privs; root's VM still
#     runs as root;
#   - the guest (the double, on SIGUSR1) reaches A's own vsock.sock_7100
#     listener, but not a root-only 0600 socket behind a symlink A planted
#     at vsock.sock_7101 (the connect fails, the root socket sees nothing);
#   - vsock.sock is emberd's again (0600, A may connect, B may not), the
#     agent answers emberd and A, firecracker.sock is the double's (A's);
#   - pause, resume, stop, start, kill -9 of emberd and re-adoption work;
#     a symlink A puts in place of firecracker.sock while emberd is down is
#     never spoken to (pause fails, the root socket sees nothing) and the
#     stop falls back to SIGTERM;
#   - with network "nat" (in a network namespace this test makes, when it
#     can), the double attaches A's TAP as uid 65534, and B cannot.
set -euo pipefail

NAT=1
if [[ -z ${EMBER_NET_TEST_NS:-} ]]; then
	NAT=0
	if [[ $(id -u) == 0 ]] && command -v unshare >/dev/null && command -v nft >/dev/null &&
	    command -v ip >/dev/null && command -v curl >/dev/null && [[ -c /dev/net/tun ]] &&
	    unshare -n true 2>/dev/null; then
		# The network part runs in a fresh network namespace: the host's
		# interfaces and ruleset are never touched.
		exec env EMBER_NET_TEST_NS=1 unshare -n bash "$0" "$@"
	fi
fi
if ((NAT)); then
	ip link set lo up
	nft list ruleset >/dev/null 2>&1 || NAT=0
fi

. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"
VSOCK_CLIENT=$BUILD/tests/fakes/vsock-client
[[ -x $VSOCK_CLIENT ]] || fail "$VSOCK_CLIENT not built"
socket_group_setup emfco
trap '_fc_cleanup; groupdel "$GROUP" 2>/dev/null || true' EXIT

UA=65534
UB=65533
printf 'socket_group: %s\nlog_level: debug\n' "$GROUP" >>"$CONFIG"
if ((NAT)); then
	printf 'nameserver 192.0.2.53\n' >"$T/resolv.conf"
	printf 'network:\n  pool: 10.100.0.0/16\n  resolv_conf: %s\n' "$T/resolv.conf" >>"$CONFIG"
fi

# as UID CMD...: CMD as UID, a member of the socket group only.
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --groups="$GROUP" -- "$@"; }
ctl_as() { local u=$1; shift; as "$u" "$EMBERCTL" --socket "$SOCK" "$@"; }
console() { cat "$(vmdir "$1")/console.log" 2>/dev/null || true; }
console_has() { console "$1" | grep -q -- "$2"; }
file_has() { grep -q -- "$2" "$1" 2>/dev/null; }
# ids PID: "ruid euid suid fsuid / rgid egid sgid fsgid" of a process.
ids() { awk '/^Uid:/ {u=$2" "$3" "$4" "$5} /^Gid:/ {g=$2" "$3" "$4" "$5} END {print u" / "g}' "/proc/$1/status"; }

fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024 FC_DOUBLE_G2H_PORTS=7100,7101
make_image mini

note "uid $UA creates its VM"
out=$(ctl_as "$UA" vm create own --image mini --vsock --no-start 2>&1) ||
    fail "uid $UA vm create own: $out"
D=$(vmdir own)
S=$D/vsock.sock
as "$UA" test -w "$D" -a -x "$D" ||
    { grep -i 'ACL' "$LOG"; echo "SKIP: the filesystem of $T keeps no POSIX ACLs"; exit 77; }

note "uid $UA starts it: the double runs as uid $UA"
out=$(ctl_as "$UA" vm start own 2>&1) || fail "uid $UA vm start own: $(console own | tail -n 5) $out"
wait_status own running
pid=$(pid_of own)
assert_eq "$UA $UA $UA $UA / $UA $UA $UA $UA" "$(ids "$pid")" "Firecracker (pid $pid) runs as uid and gid $UA (real, effective, saved, fs)"
assert_eq "$UA" "$(ps -o uid= -p "$pid" | tr -d ' ')" "ps shows uid $UA"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || fail "no_new_privs is not set"
pass "no_new_privs is set"
line=$(console own | grep 'running as uid') || fail "the double did not say whom it runs as"
[[ $line == *"running as uid $UA gid $UA groups "* ]] || fail "the double says: $line"
[[ $line != *"groups 0"* && $line != *",0"* && $line != *"$GROUP"* ]] || fail "the double has root's group: $line"
pass "the double says: ${line#*fc-double: }"
assert_eq "$UA" "$(stat -c %u "$D/firecracker.sock")" "firecracker.sock is the double's (uid $UA)"

note "a root-only service, a symlink to it and the owner's own listener"
mkdir -m 0711 "$T/secret"
"$VSOCK_CLIENT" listen "$T/secret/svc.sock" --reply SECRET --timeout 300 >"$T/secret.out" 2>&1 &
secret_pid=$!
_ember_pids+=("$secret_pid")
wait_until 10 "the root-only listener" file_has "$T/secret.out" 'listening on'
chmod 0600 "$T/secret/svc.sock"
as "$UA" ln -s "$T/secret/svc.sock" "${S}_7101" || fail "uid $UA cannot plant ${S}_7101"
as "$UA" "$VSOCK_CLIENT" listen "${S}_7100" --reply hi-owner --timeout 200 >"$T/owner.out" 2>&1 &
owner_pid=$!
_ember_pids+=("$owner_pid")
wait_until 10 "uid $UA's listener" file_has "$T/owner.out" 'listening on'
pass "uid $UA planted vsock.sock_7101 -> a root-only 0600 socket and listens on vsock.sock_7100"

kill -USR1 "$pid"	# the double's guest connects to ports 7100 and 7101

note "guest -> host: the owner's listener yes, a planted symlink no"
wait_until 15 "the guest's connection to 7101" console_has own 'guest connection to port 7101: [rf]'
console_has own 'guest connection to port 7100: [rf]' ||
    wait_until 15 "the guest's connection to 7100" console_has own 'guest connection to port 7100: [af]'
console_has own "guest connection to port 7100: answered 'hi-owner'" ||
    fail "7100: $(console own | grep 'port 7100')"
wait_exit "$owner_pid" 20
file_has "$T/owner.out" "received 'hello from the guest on port 7100'" || fail "A's listener: $(cat "$T/owner.out")"
pass "the guest reached uid $UA's listener: $(console own | grep 'port 7100: answered' | sed 's/.*fc-double: //')"
line=$(console own | grep 'guest connection to port 7101:')
grep -q 'refused: Permission denied' <<<"$line" || fail "7101: $line"
file_has "$T/secret.out" 'accepted\|received' && fail "the root-only socket saw a connection: $(cat "$T/secret.out")"
pass "the symlink to a root-only socket was not reached: ${line#*fc-double: }"

note "vsock.sock: emberd's, the owner and emberd reach the agent, B does not"
assert_eq "0 660" "$(stat -c '%u %a' "$S")" "vsock.sock is emberd's again, 0600 plus the owner's ACL entry (the mask shows as group rw)"
out=$(as "$UA" "$VSOCK_CLIENT" connect "$S" 1024 --line '{"op":"ping"}' --timeout 20 2>&1) ||
    fail "uid $UA cannot reach its VM's agent: $out"
grep -q '"pong":true' <<<"$out" || fail "uid $UA's ping got: $out"
pass "uid $UA connects to vsock.sock and the agent answers"
err=$(as "$UB" "$VSOCK_CLIENT" connect "$S" 1024 --line '{"op":"ping"}' --timeout 5 2>&1) &&
    fail "uid $UB reached A's vsock.sock: $err"
grep -qi 'permission denied' <<<"$err" || fail "uid $UB failed otherwise: $err"
pass "uid $UB cannot connect to vsock.sock (EACCES)"
agent_ready() { [[ $(inspect own | jq -r '.agent.state') == ready ]]; }
wait_until 20 "emberd's agent client reaches the agent" agent_ready
pass "emberd's agent client reaches the agent"
out=$(ctl_as "$UA" vm exec own -- echo hi 2>&1) || fail "uid $UA vm exec: $out"
assert_eq "echo hi" "$out" "uid $UA vm exec goes through"

note "the root disk: root's, the owner may read and write it"
assert_eq "0" "$(stat -c %u "$D/rootfs.img")" "rootfs.img stays root's"
as "$UA" test -r "$D/rootfs.img" -a -w "$D/rootfs.img" || fail "uid $UA cannot use rootfs.img"
pass "uid $UA may read and write rootfs.img"

note "pause, resume; kill -9 of emberd and re-adoption"
assert_jq "$(ctl_as "$UA" --json vm pause own)" '.status == "paused"' "uid $UA pauses own"
assert_jq "$(ctl_as "$UA" --json vm resume own)" '.status == "running"' "uid $UA resumes own"
crash_emberd
gone "$pid" && fail "the double died with emberd"
fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024 FC_DOUBLE_G2H_PORTS=7100,7101
assert_jq "$(inspect own)" ".status == \"running\" and .pid == $pid" "own re-adopted (pid $pid)"
assert_jq "$(ctl_as "$UA" --json vm pause own)" '.status == "paused"' "uid $UA pauses own after the restart"
assert_jq "$(ctl_as "$UA" --json vm resume own)" '.status == "running"' "uid $UA resumes own after the restart"
assert_jq "$(jq -c -s '.[-1]' "$(reqlog own)")" '.path == "/vm" and .body == {state: "Resumed"} and .status == 204' \
    "PATCH /vm Resumed reached the double"
assert_jq "$(ctl_as "$UA" --json vm stop own)" '.status == "stopped" and .pid == 0' "uid $UA stops own"
gone "$pid" || fail "the double (pid $pid) still runs"
assert_sockets_gone own

note "a firecracker.sock the owner swaps while emberd is down is never spoken to"
"$VSOCK_CLIENT" listen "$T/secret/api.sock" --reply 'HTTP/1.1 204 No Content' --timeout 300 >"$T/api.out" 2>&1 &
api_pid=$!
_ember_pids+=("$api_pid")
wait_until 10 "the root-only API listener" file_has "$T/api.out" 'listening on'
chmod 0600 "$T/secret/api.sock"
out=$(ctl_as "$UA" vm start own 2>&1) || fail "uid $UA vm start own (again): $out"
pid=$(pid_of own)
assert_eq "$UA" "$(ps -o uid= -p "$pid" | tr -d ' ')" "started again, as uid $UA"
crash_emberd
as "$UA" rm -f "$D/firecracker.sock" || fail "uid $UA cannot remove its double's socket"
as "$UA" ln -s "$T/secret/api.sock" "$D/firecracker.sock" || fail "uid $UA cannot plant firecracker.sock"
fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024 FC_DOUBLE_G2H_PORTS=7100,7101
assert_jq "$(inspect own)" ".status == \"running\" and .pid == $pid" "own re-adopted (pid $pid)"
out=$(ctl_as "$UA" vm pause own 2>&1) && fail "a pause through the planted firecracker.sock succeeded: $out"
pass "pause refused: $out"
assert_jq "$(ctl_as "$UA" --json vm stop own)" '.status == "stopped" and .pid == 0' "the stop still works (SIGTERM)"
gone "$pid" || fail "the double (pid $pid) still runs"
file_has "$T/api.out" 'accepted\|received' && fail "the root-only API socket saw a connection: $(cat "$T/api.out")"
pass "the root-only socket behind the planted firecracker.sock saw no connection"

note "root's VM still runs as root"
ctl vm create rootvm --image mini --vsock >/dev/null || fail "vm create rootvm"
assert_eq "0" "$(ps -o uid= -p "$(pid_of rootvm)" | tr -d ' ')" "root's Firecracker runs as root"
ctl vm delete rootvm --force >/dev/null || fail "vm delete rootvm"

if ((NAT)); then
	note "network nat: the owner's double attaches the TAP, another user cannot"
	out=$(ctl_as "$UA" vm create n1 --image mini --network nat 2>&1) || fail "uid $UA nat VM: $(console n1 | tail -n 5) $out"
	wait_status n1 running
	tap=$(inspect n1 | jq -r '.network.tap')
	npid=$(pid_of n1)
	assert_eq "$UA" "$(ps -o uid= -p "$npid" | tr -d ' ')" "n1's double runs as uid $UA"
	assert_jq "$(jq -c 'select(.path == "/network-interfaces/eth0")' "$(reqlog n1)")" '.status == 204' \
	    "the double as uid $UA attached $tap"
	ip -d link show "$tap" | grep -Eq "user (nobody|$UA) group (nogroup|$UA)" ||
	    fail "$tap's owner: $(ip -d link show "$tap")"
	pass "$tap belongs to uid and gid $UA: $(ip -d link show "$tap" | grep -o 'user [a-z0-9]* group [a-z0-9]*')"
	# B's own double, with a /dev/net/tun node B may open (in a private
	# mount namespace: the host's may be root's only), so that only the
	# TAP's owner check stands between B and A's TAP.
	mkdir -m 0700 "$T/b"
	chown "$UB:$UB" "$T/b"
	sock=$T/b/fc.sock
	tun_dev="c $((16#$(stat -c %t /dev/net/tun))) $((16#$(stat -c %T /dev/net/tun)))"
	unshare -m sh -c 'mount --make-rprivate / && mount -t tmpfs -o mode=0755 tmpfs /dev/net &&
	    mknod -m 0600 /dev/net/tun $1 && chown "$2" /dev/net/tun && u=$2 && shift 2 &&
	    exec setpriv --reuid="$u" --regid="$u" --clear-groups -- "$@"' \
	    sh "$tun_dev" "$UB" "$FC_DOUBLE" --api-sock "$sock" >>"$LOG" 2>&1 &
	bpid=$!
	_ember_pids+=("$bpid")
	wait_until 10 "uid $UB's double" test -S "$sock"
	body=$(curl -s --unix-socket "$sock" -X PUT http://localhost/network-interfaces/eth0 \
	    -H 'Content-Type: application/json' \
	    -d "{\"iface_id\":\"eth0\",\"host_dev_name\":\"$tap\",\"guest_mac\":\"02:00:00:00:00:01\"}")
	grep -q 'Operation not permitted' <<<"$body" || fail "uid $UB attaching $tap: $body"
	pass "uid $UB cannot attach $tap (EPERM): $(jq -r .fault_message <<<"$body")"
	{ kill_mine -KILL "$bpid"; wait "$bpid"; } 2>/dev/null || true
	out=$(ctl_as "$UA" vm delete n1 --force 2>&1) || fail "uid $UA vm delete n1: $out"
	gone "$npid" || fail "n1's double still runs"
else
	echo "SKIP (part): no network namespace, nft, ip or curl here; the TAP is not exercised"
fi

note "uid $UA deletes its VM"
out=$(ctl_as "$UA" vm delete own 2>&1) || fail "uid $UA vm delete own: $out"
[[ ! -e $D ]] || fail "$D is still there: $(ls -la "$D")"
kill_mine "$secret_pid" "$api_pid"
echo "PASS"
